"""`tradestack audit ...`: compliance controls checked on a deployed stack with pytest-testinfra."""

from __future__ import annotations

import enum
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from ..exitcodes import ExitCode
from .edge import err, out, print_json, want_json

app = typer.Typer(no_args_is_help=True, help="Compliance audit: controls checked on the hosts themselves, "
                                             "reports an auditor can file (JUnit, JSON, HTML, SHA-256 manifest).")

JsonOpt = typer.Option(False, "--json", help="Print one JSON document on stdout.")


class Severity(str, enum.Enum):
    high = "high"
    medium = "medium"
    low = "low"


@app.command()
def controls(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """The controls catalogue: id, severity, title and the rules each supports.

    Example: [bold]tradestack audit controls[/]
    """
    from ..audit import catalogue

    want_json(ctx, json)
    items = catalogue.controls()
    if json:
        print_json({"ok": True, "controls": [c.model_dump() for c in items]})
        return
    table = Table("id", "severity", "title", "rules", title="compliance controls")
    for c in items:
        table.add_row(c.id, c.severity, c.title, "; ".join(c.refs))
    out.print(table)


@app.command()
def run(ctx: typer.Context,
        stack: str = typer.Option("lab", "--stack", "-s", help="Deployed stack to audit."),
        only: str = typer.Option(None, "--controls", help="Comma-separated control ids (default: all)."),
        out_dir: Path = typer.Option(Path("audit-report"), "--out", help="Folder for the reports."),
        workers: int = typer.Option(4, "--workers", min=1, max=64, help="Hosts checked in parallel."),
        max_age: float = typer.Option(30.0, "--evidence-max-age", min=0.01,
                                      help="Days a passing drill run counts as evidence (EVD-01)."),
        fail_on: Severity = typer.Option(Severity.high, "--fail-on",
                                         help="Exit 1 when a control of this severity or above fails."),
        json: bool = JsonOpt) -> None:
    """Check every control on the stack's hosts (over SSH, from its Ansible inventory) and write junit.xml,
    audit.json, audit.html and manifest.sha256 to --out.

    The headline is PASS only when every control passed, each having judged something; otherwise it names each
    failing control and its severity ("FAIL: EVD-01 (medium)"). A control with nothing to judge fails. Exit 1
    when a control of --fail-on's severity or above failed (default high), 0 otherwise; 2 for unusable input.
    EVD-01 fails for every catalogue drill without a run that counts as evidence.

    Example: [bold]sudo tradestack audit run --stack lab --out reports/audit --fail-on medium[/]
    """
    from ..audit import run as audit_run
    from ..evidence import keeper

    want_json(ctx, json)
    ids = [i.strip() for i in only.split(",") if i.strip()] if only else None
    result = audit_run.run(stack, out_dir, controls=ids, workers=workers, max_age_days=max_age,
                           fail_on=fail_on.value, on_step=lambda s: err.print(f"[dim]{escape(s)}[/]", highlight=False))
    kept = keeper.keep(stack, "audit", str(out_dir.resolve()), {p.name: p for p in result.artifacts.values()})
    if json:
        print_json({"ok": result.ok, **result.summary, "controls": result.controls,
                    "artifacts": {k: str(v) for k, v in result.artifacts.items()},
                    "evidence": {"record": kept.seq, "signer": kept.signer}})
    else:
        table = Table("control", "severity", "verdict", "findings", title=f"audit of {stack}")
        colour = {"pass": "green", "fail": "red"}
        for c in audit_run.failing(result.controls) + [c for c in result.controls if c["verdict"] == "pass"]:
            table.add_row(c["id"], c["severity"], f"[{colour[c['verdict']]}]{c['verdict']}[/]",
                          escape("; ".join(c["failed"][:3])))
        out.print(table)
        headline = result.summary["headline"]
        out.print(f"[bold {'green' if headline == 'PASS' else 'red'}]{escape(headline)}[/]", highlight=False)
        err.print(f"reports: {out_dir}/ (audit.html, audit.json, junit.xml, manifest.sha256)\n"
                  f"evidence: record {kept.seq} of {stack}, signed {kept.signer}", highlight=False)
    if not result.ok:
        raise typer.Exit(ExitCode.FAILED)
