"""`tradestack drill ...`: failover drills on a deployed stack, their history and reports."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..exitcodes import ExitCode
from .edge import err, out, print_json, want_json

app = typer.Typer(no_args_is_help=True, help="Failover drills: break the stack on purpose, under client load, "
                                             "and measure what clients saw. Restore always runs.")

StackOpt = typer.Option("lab", "--stack", "-s", help="Deployed stack to drill.")
JsonOpt = typer.Option(False, "--json", help="Print one JSON document on stdout.")


@app.command("list")
def list_(ctx: typer.Context, json: bool = JsonOpt) -> None:
    """The built-in drill catalogue.

    Example: [bold]tradestack drill list[/]
    """
    from ..drills import files

    want_json(ctx, json)
    drills = [(files.load_drill(path), "any") for path in files.catalogue().values()]
    drills += [(files.load_drill(path), "kubernetes") for path in files.cluster_catalogue().values()]
    drills += [(files.load_drill(path), "systemd hosts") for path in files.systemd_catalogue().values()]
    if json:
        print_json({"ok": True, "drills": [{"name": d.name, "description": d.description.strip(), "substrate": on,
                                            "faults": [f.describe() for f in d.faults],
                                            "expect": d.expect.model_dump()} for d, on in drills]})
        return
    table = Table("drill", "faults", "expects", "stacks", title="drill catalogue")
    for d, on in drills:
        bound = f"recovery <= {d.expect.max_recovery_s:g} s, " if d.expect.max_recovery_s else ""
        table.add_row(d.name, "; ".join(f.describe() for f in d.faults),
                      f"{bound}lost <= {d.expect.max_acked_lost}", "every" if on == "any" else on)
    out.print(table)


class _Progress:
    """Engine events -> one live line (phase and detail) plus the latest observation."""

    def __init__(self, progress: Progress, task: Any):
        self.progress, self.task, self.text = progress, task, "starting"

    def phase(self, name: str, detail: str = "") -> None:
        self.text = f"[bold]{escape(name)}[/]: {escape(detail)}"
        self.progress.update(self.task, description=self.text)
        err.print(f"[dim]{dt.datetime.now():%H:%M:%S}[/] {self.text}", highlight=False)

    def sample(self, sample: Any) -> None:
        holders = ", ".join(f"{s}:{(h or 'none').rsplit('-', 2)[-2:][0] if h else 'none'}"
                            for s, h in sample.vip_holders.items())
        self.progress.update(self.task, description=f"{self.text}  [dim](db leader {sample.leader or 'NONE'}; "
                                                    f"VIPs {holders}; open breakers {sample.breakers_open})[/]")


@app.command()
def run(ctx: typer.Context,
        drill: str = typer.Argument(..., help="A catalogue drill name (see `drill list`) or a drill file."),
        stack: str = StackOpt,
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan; touch nothing."),
        yes: bool = typer.Option(False, "--yes", "-y", help="Required to drill a stack that is not a lab."),
        json: bool = JsonOpt) -> None:
    """Run a drill: preflight, load, baseline, inject, observe, restore, steady state, reconcile, verdict.

    Restore always runs: on failure, on an abort condition, on Ctrl-C and SIGTERM. Exit 0 when every
    expectation held, 1 when one did not (or the stack was not steady to begin with), 130 when
    interrupted (after restoring). Reports (JSON, HTML with a timeline plot) are kept per run.

    Example: [bold]sudo tradestack drill run db-primary-crash --stack lab[/]
    """
    from ..drills import engine, files, history, report
    from ..evidence import keeper

    want_json(ctx, json)
    chosen = files.resolve(drill)
    planned = engine.plan(chosen, stack)
    if dry_run:
        if json:
            print_json({"ok": True, "dry_run": True, **planned.describe()})
        else:
            out.print(f"[bold]drill {chosen.name}[/] on stack {stack} would:")
            for i, step in enumerate(planned.steps, 1):
                out.print(f"  {i}. {escape(step)}", highlight=False)
        return
    engine.authorize(planned, yes)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                  transient=True) as progress:
        events = _Progress(progress, progress.add_task("starting", total=None))
        result = engine.run(planned, events)
    document = result.to_dict()
    paths = report.write(document, history.drills_dir(stack) / result.run_id)
    history.record(document)
    kept = keeper.keep(stack, "drill", result.run_id, {p.name: p for p in paths.values()})
    if json:
        print_json({"ok": result.verdict == "pass", **_summary(document), "reports": {k: str(v) for k, v in paths.items()},
                    "evidence": {"record": kept.seq, "signer": kept.signer}})
    else:
        _render(document)
        err.print(f"report: {paths['html']}\nevidence: record {kept.seq} of {stack}, signed {kept.signer}",
                  highlight=False)
    if result.verdict == "interrupted":
        raise typer.Exit(ExitCode.INTERRUPTED)
    if result.verdict != "pass":
        raise typer.Exit(ExitCode.FAILED)


def _summary(document: dict[str, Any]) -> dict[str, Any]:
    keep = ("run", "drill", "stack", "verdict", "checks", "figures", "load", "spike", "interrupted", "aborted",
            "journal", "marks", "alerts")
    return {k: document.get(k) for k in keep}


def _render(document: dict[str, Any]) -> None:
    colour = "green" if document["verdict"] == "pass" else "red"
    out.print(f"[bold]{document['drill']}[/] on {document['stack']} (run {document['run']}): "
              f"[bold {colour}]{document['verdict'].upper()}[/]", highlight=False)
    table = Table("check", "expected", "actual", "")
    for c in document["checks"]:
        table.add_row(c["check"], str(c["expected"]), str(c["actual"]),
                      "[green]pass[/]" if c["ok"] else "[red]FAIL[/]")
    out.print(table)
    figures = document.get("figures") or {}
    if figures:
        out.print("figures: " + ", ".join(f"{k} {v}" for k, v in figures.items() if k not in ("served_by", "load")),
                  highlight=False)
        load = figures.get("load") or {}
        if load:
            out.print("clients: " + "; ".join(f"{phase} {p['sent']}/{p['planned']} orders, {p['sessions_held']}/"
                                              f"{p['sessions_planned']} sessions" for phase, p in load.items()),
                      highlight=False)
    heard = document.get("alerts")
    if heard:
        paged = ", ".join(f"{a['alert']} notified {_s(a['notified_s'])} after the fault, resolved "
                          f"{_s(a['resolved_s'])} after the restore" for a in heard["expected"]) or "none expected"
        others = ", ".join(f"{a['alert']} ({_s(a['notified_s'])})" for a in heard["unexpected"]) or "none"
        out.print(f"on-call: {heard['notifications']} notification(s); {paged}; also sent: {others}",
                  highlight=False)


def _s(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:g} s"


@app.command("history")
def history_(ctx: typer.Context, stack: str = StackOpt,
             drill: str = typer.Option(None, "--drill", help="Only runs of this drill."),
             json: bool = JsonOpt) -> None:
    """Every drill run on a stack, newest first.

    Example: [bold]tradestack drill history --stack lab[/]
    """
    from ..drills import history

    want_json(ctx, json)
    rows = history.runs(stack, drill)
    if json:
        print_json({"ok": True, "stack": stack, "runs": [r.to_dict() for r in rows]})
        return
    table = Table("run", "drill", "started (UTC)", "verdict", "recovery s", "acked lost", title=f"drills on {stack}")
    for r in rows:
        table.add_row(r.run, r.drill, f"{dt.datetime.fromtimestamp(r.started, dt.timezone.utc):%Y-%m-%d %H:%M:%S}",
                      r.verdict, "" if r.recovery_s is None else f"{r.recovery_s:g}",
                      "" if r.acked_lost is None else str(r.acked_lost))
    out.print(table)


@app.command("report")
def report_(ctx: typer.Context, run: str = typer.Argument(..., help="Run id (see `drill history`)."),
            stack: str = StackOpt,
            out_dir: Path = typer.Option(None, "--out", help="Write report.json, report.html and timeline.png here."),
            json: bool = JsonOpt) -> None:
    """One drill run's report: verdict, checks and figures; `--out` writes the HTML report with its plot.

    Example: [bold]tradestack drill report 20261123T120000Z-db-primary-crash --out reports/drill[/]
    """
    from ..drills import history, report

    want_json(ctx, json)
    document = history.load(stack, run)
    paths = report.write(document, out_dir) if out_dir else None
    if json:
        print_json({"ok": document["verdict"] == "pass", **document,
                    **({"reports": {k: str(v) for k, v in paths.items()}} if paths else {})})
    else:
        _render(document)
        if paths:
            err.print(f"report: {paths['html']}", highlight=False)
