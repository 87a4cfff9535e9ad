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


class GuardedGroup(TyperGroup):
    """Root command group: translates tradestack errors, Ctrl-C and bugs into exit codes."""

    def invoke(self, ctx: typer.Context) -> Any:
        ctx.ensure_object(dict)  # shared with sub-commands, so want_json() is seen here
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise  # typer's own: usage errors, --help, explicit exits
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
            err.print("[yellow]interrupted[/]")
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        except Exception as exc:  # a bug: keep the traceback, show one line
            log = _write_debug_log(exc)
            err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}\n"
                      f"The traceback is in {log}; please attach it to a bug report.", highlight=False)
            raise typer.Exit(ExitCode.INTERNAL) from None


def _report(ctx: typer.Context, exc: TradestackError, label: str, code: ExitCode) -> None:
    lines = [str(p) for p in exc.problems] if isinstance(exc, InputError) else [str(exc)]
    if (ctx.obj or {}).get("json"):
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
