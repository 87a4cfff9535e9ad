"""The one place where errors become messages and exit codes."""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import traceback
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from ..errors import EnvironmentProblem, InputError, TradestackError
from ..exitcodes import ExitCode
from ..paths import logs_dir

# Not a terminal (a pipeline's log, a file): rich would lay tables out in 80 columns and fold every cell;
# 160 keeps a report's table one row per line. COLUMNS, when set, still wins.
LOG_WIDTH = 160


def _console(stderr: bool) -> Console:
    """The stream is looked up at each write (not bound here), so a test's captured stdout is honoured."""
    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() or os.environ.get("COLUMNS") else LOG_WIDTH
    return Console(stderr=stderr, soft_wrap=True, width=width)


out = _console(stderr=False)  # results: stdout
err = _console(stderr=True)  # messages, progress: stderr


def want_json(ctx: typer.Context, value: bool) -> None:
    """Remember that this invocation asked for JSON, so errors are rendered as JSON too."""
    ctx.ensure_object(dict)["json"] = bool(value)


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def _json_asked(ctx: typer.Context) -> bool:
    """--json was asked for: by the command (want_json), or among the words given to it (a usage error stops
    before the command has read them)."""
    return bool((ctx.obj or {}).get("json") or (ctx.obj or {}).get("json_word"))


class GuardedGroup(TyperGroup):
    """Root command group: translates tradestack errors, Ctrl-C and bugs into exit codes; with --json, every
    outcome prints its JSON document on stdout."""

    def invoke(self, ctx: typer.Context) -> Any:
        # shared with sub-commands, so want_json() is seen here; the words are read now (click consumes them)
        ctx.ensure_object(dict)["json_word"] = "--json" in [*(getattr(ctx, "_protected_args", None) or []), *ctx.args]
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise  # --help, explicit exits
        except typer.TyperException as exc:  # a usage error: typer prints it with the usage and exits 2
            if _json_asked(ctx) and hasattr(exc, "format_message"):
                print_json({"ok": False, "exit_code": int(getattr(exc, "exit_code", ExitCode.BAD_INPUT)),
                            "errors": [exc.format_message()]})
            raise
        except InputError as exc:
            _report(ctx, exc, "error", ExitCode.BAD_INPUT)
        except EnvironmentProblem as exc:
            _report(ctx, exc, "cannot run here", ExitCode.ENVIRONMENT)
        except TradestackError as exc:
            _report(ctx, exc, "error", ExitCode.FAILED)
        except BrokenPipeError:  # `tradestack ... | head`: the reader left; not an error of ours
            sys.stderr.close()
            raise typer.Exit(ExitCode.OK) from None
        except KeyboardInterrupt:
            if _json_asked(ctx):
                print_json({"ok": False, "exit_code": int(ExitCode.INTERRUPTED), "errors": ["interrupted"]})
            err.print("[yellow]interrupted[/]")
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        except Exception as exc:  # a bug: keep the traceback, show one line
            log = _write_debug_log(exc)
            if _json_asked(ctx):
                print_json({"ok": False, "exit_code": int(ExitCode.INTERNAL),
                            "errors": [f"internal error: {type(exc).__name__}: {exc}"], "debug_log": log})
            err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}\n"
                      f"The traceback is in {log}; please attach it to a bug report.", highlight=False)
            raise typer.Exit(ExitCode.INTERNAL) from None


def _report(ctx: typer.Context, exc: TradestackError, label: str, code: ExitCode) -> None:
    lines = [str(p) for p in exc.problems] if isinstance(exc, InputError) else [str(exc)]
    if _json_asked(ctx):
        print_json({"ok": False, "exit_code": int(code), "errors": lines})
    if len(lines) == 1:
        err.print(f"[bold red]{label}:[/] {escape(lines[0])}", highlight=False)
    else:
        err.print(f"[bold red]{label}:[/] {len(lines)} problems", highlight=False)
        for line in lines:
            err.print(f"  - {line}", highlight=False, markup=False)
    raise typer.Exit(code)


def _write_debug_log(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(exc))
    try:
        directory = logs_dir()
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"debug-{dt.datetime.now():%Y%m%d-%H%M%S-%f}.log"
        path.write_text(f"argv: {sys.argv}\n\n{text}", encoding="utf-8")
        return str(path)
    except OSError:
        sys.stderr.write(text)
        return "the output above"
