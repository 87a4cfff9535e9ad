"""`tradestack capacity ...`: static failure-domain capacity check of a topology."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from ..capacity import CapacityReport, check_capacity
from ..capacity.measured import Comparison, compare, load_measured
from ..capacity.observed import ObservedRow, judge_observed, load_peak, required_with
from ..errors import InputError
from ..exitcodes import ExitCode
from ..topology import load_topology
from .edge import err, out, print_json, want_json

app = typer.Typer(no_args_is_help=True, help="Check that capacity survives failures.")


@app.command()
def check(
    ctx: typer.Context,
    file: Path | None = typer.Argument(None, help="Topology YAML file (with --live: the stack's own by default).",
                                       show_default=False),
    depth: int = typer.Option(1, "--depth", min=1, max=2,
                              help="1: every single risk group fails; 2: also every pair."),
    fail: list[str] = typer.Option([], "--fail", metavar="GROUP[,GROUP...]",
                                   help="Check only this set of failed risk groups (repeat for more "
                                        "scenarios), e.g. --fail carrier:ct,carrier:cm."),
    failing_only: bool = typer.Option(False, "--failing-only",
                                      help="In --json, list only failing scenarios (large topologies)."),
    max_rows: int = typer.Option(40, "--max-rows", min=1, help="Failing scenarios shown in the table."),
    measured: Path | None = typer.Option(None, "--measured", metavar="FILE",
                                         help="Also compare each service's declared per-instance capacity with "
                                              "what `capacity verify --write-measured` measured; declaring more "
                                              "than was measured fails."),
    observed: Path | None = typer.Option(None, "--observed", metavar="FILE",
                                         help="Also require every failure scenario to keep the peak clients were "
                                              "observed to reach (a peak file from `capacity peak --write`) x "
                                              "the topology's observed_multiple."),
    live: bool = typer.Option(False, "--live", help="Judge what the stack's Kubernetes clusters run now: ready "
                                                   "replicas instead of declared placement, and each replica's CPU "
                                                   "request against its declared capacity (needs --stack)."),
    stack: str | None = typer.Option(None, "--stack", "-s", help="With --live: the deployed stack to read."),
    json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Check every failure scenario against peak x headroom; list deficits and single points of failure.

    A scenario is a set of failed risk groups (site:, carrier:, facility:, power:, upstream: ...).
    Depth 1 checks the intact topology and every single group; depth 2 adds every pair.

    Examples:

      [bold]tradestack capacity check infra/topologies/lab.yaml[/]

      [bold]tradestack capacity check infra/topologies/lab.yaml --depth 2 --json --failing-only[/]

      [bold]tradestack capacity check infra/topologies/lab.yaml --fail carrier:ct,carrier:cm[/]

      [bold]tradestack capacity check infra/topologies/lab.yaml --measured measured.yaml[/]

      [bold]tradestack capacity check infra/topologies/lab.yaml --observed peak.yaml[/]  (observed x multiple)

      [bold]tradestack capacity check --live --stack prod[/]  (what the site clusters run now)

    Exit 0 when every scenario passes, 1 when any fails, 2 for unusable input.
    """
    want_json(ctx, json)
    if live:
        if observed is not None:
            raise InputError("--observed applies to a topology's declared placement, not to --live")
        _check_live(file, stack, depth, failing_only, max_rows, json)
    if file is None:
        raise InputError("give a topology file (or --live --stack NAME)")
    if stack is not None:
        raise InputError("--stack is for --live")
    topology = load_topology(file)
    scenarios = [[g.strip() for g in item.split(",") if g.strip()] for item in fail] or None
    peak = load_peak(observed) if observed else None
    report = check_capacity(topology, depth, scenarios=scenarios,
                            required=required_with(topology, peak) if peak else None)
    rows = compare(topology, load_measured(measured)) if measured else None
    seen = judge_observed(topology, peak, report) if peak else None
    ok = report.ok and all(r.ok for r in rows or []) and all(r.ok for r in seen or [])
    if json:
        doc = {**report.to_dict(failing_only=failing_only), "ok": ok}
        if rows is not None:
            doc["measured"] = {"file": str(measured), "ok": all(r.ok for r in rows),
                               "services": [asdict(r) for r in rows]}
        if peak is not None and seen is not None:
            doc["observed"] = {"file": str(observed), "source": peak.source, "multiple": topology.observed_multiple,
                               "window": {"from": peak.window_from.isoformat(), "to": peak.window_to.isoformat()},
                               "ok": all(r.ok for r in seen),
                               "metrics": [{**asdict(r), "at": r.at.isoformat()} for r in seen]}
        print_json(doc)
    else:
        _render(report, max_rows)
        if rows is not None:
            _render_measured(rows, measured)
        if peak is not None and seen is not None:
            _render_observed(seen, observed, topology.observed_multiple)
    raise typer.Exit(ExitCode.OK if ok else ExitCode.FAILED)


def _check_live(file: Path | None, stack: str | None, depth: int, failing_only: bool, max_rows: int,
                json: bool) -> None:
    from ..capacity.live import check_live, observed
    from ..substrates import registry

    if stack is None:
        raise InputError("--live reads a deployed stack's clusters: give --stack NAME")
    opened = registry.open_stack(stack)
    views = opened.clusters.view() if opened.clusters else {}
    if not views:
        raise InputError(f"stack {stack!r} runs no Kubernetes clusters: nothing for --live to read")
    topology = load_topology(file) if file is not None else opened.topology
    result = check_live(topology, observed(views), depth, opened.clusters.services if opened.clusters else None)
    if json:
        print_json({**result.report.to_dict(failing_only=failing_only), "ok": result.ok,
                    "live": {"stack": stack, "ready": result.ready, "declared": result.declared,
                             "problems": [asdict(p) for p in result.problems]}})
    else:
        table = Table("service", *sorted(views), title=f"ready replicas in {stack}'s clusters (declared)",
                      title_justify="left")
        for service, declared in sorted(result.declared.items()):
            table.add_row(service, *(f"{result.ready[service].get(site, 0)} ({declared.get(site, 0)})"
                                     for site in sorted(views)))
        out.print(table)
        _render(result.report, max_rows)
        for p in result.problems:
            out.print(f"[bold red]FAIL[/] {escape(p.message)}", highlight=False)
    raise typer.Exit(ExitCode.OK if result.ok else ExitCode.FAILED)


def _render_observed(rows: list[ObservedRow], path: Path | None, multiple: float) -> None:
    table = Table("metric", "observed peak", "at", "x multiple", "declared peak x headroom", "least kept", "",
                  title=f"surviving capacity vs the observed peak ({path})", title_justify="left")
    for r in rows:
        table.add_row(r.metric, f"{r.observed:g}", f"{r.at:%Y-%m-%d %H:%M:%S}", f"{r.needed:g}",
                      "-" if r.declared_required is None else f"{r.declared_required:g}",
                      "-" if r.worst_available is None else f"{r.worst_available:g} ({r.worst_service})",
                      "[green]ok[/]" if r.ok else f"[red]FAIL[/] {escape(r.detail)}")
    out.print(table)
    bad = [r for r in rows if not r.ok]
    out.print(f"[bold green]PASS[/]: every scenario keeps the observed peak x {multiple:g}" if not bad else
              f"[bold red]FAIL[/]: {len(bad)} metric(s) below the observed peak x {multiple:g} in some scenario: "
              + "; ".join(escape(r.detail) for r in bad), highlight=False)


@app.command()
def peak(
    ctx: typer.Context,
    stack: str | None = typer.Option(None, "--stack", "-s", help="A deployed stack: its own Prometheus (one per "
                                     "data site; per metric the highest any of them saw)."),
    prometheus: str | None = typer.Option(None, "--prometheus", metavar="URL",
                                          help="Or an estate's Prometheus (its recording rules: infra/monitoring/"
                                               "rules)."),
    window: str = typer.Option("30d", "--window", help="How far back to look: 30d, 12h, 2w ..."),
    write: Path | None = typer.Option(None, "--write", metavar="FILE",
                                      help="Write what was found as a peak file, for `capacity check --observed`."),
    json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """The peak clients were observed to reach: the most orders/s and concurrent sessions over the window (the
    stack's client totals; drills, `capacity verify` and other traffic of the toolkit's own are left out), when
    each happened, and the span the data covers.

    Exit 0 with both figures found over the whole window; 1 when a figure has no data or the data covers less
    than the window (Prometheus keeps 15 days unless told otherwise); the file is written either way.

    Example: [bold]tradestack capacity peak --stack lab --window 30d --write peak.yaml[/]
    """
    import time

    from ..adapters.prometheus import Prometheus
    from ..capacity.observed import dump_peak, find_peak, parse_window, peak_across

    want_json(ctx, json)
    if (stack is None) == (prometheus is None):
        raise InputError("give --stack NAME (its own Prometheus) or --prometheus URL")
    seconds = parse_window(window)
    now = time.time()
    if prometheus is not None:
        found = find_peak(Prometheus(prometheus), prometheus, seconds, now)
    else:
        from ..substrates import registry

        urls = registry.open_stack(stack).prometheus_urls()
        if not urls:
            raise InputError(f"stack {stack!r} has no monitoring hosts (a `kind: monitoring` service); "
                             f"give --prometheus URL")
        found, unanswered = peak_across({url: Prometheus(url) for url in urls}, seconds, now)
        for message in unanswered:  # one site's Prometheus away: the others' history is the stack's
            err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False)
    source = found.source
    if write is not None:
        write.parent.mkdir(parents=True, exist_ok=True)
        write.write_text(dump_peak(found))
    problems = found.problems()
    if json:
        print_json({"ok": found.ok, **found.model_dump(mode="json"), "covered_s": found.covered_s,
                    "problems": problems, **({"file": str(write)} if write else {})})
    else:
        table = Table("metric", "peak", "at (UTC)", "series", title=f"observed peak over {window} ({source})",
                      title_justify="left")
        for metric, figure in found.figures.items():
            table.add_row(metric, f"{figure.value:g}", f"{figure.at:%Y-%m-%d %H:%M:%S}", figure.series)
        out.print(table)
        if found.covered_from is not None:
            out.print(f"data from {found.covered_from:%Y-%m-%d %H:%M:%S} to {found.covered_to:%Y-%m-%d %H:%M:%S} "
                      f"UTC", highlight=False)
        for problem in problems:
            out.print(f"[bold red]FAIL[/] {escape(problem)}", highlight=False)
        if write is not None:
            out.print(f"written to {write}", highlight=False)
    raise typer.Exit(ExitCode.OK if found.ok else ExitCode.FAILED)


def _render_measured(rows: list[Comparison], path: Path | None) -> None:
    table = Table("service", "metric", "declared / instance", "measured / instance", "",
                  title=f"declared vs measured ({path})", title_justify="left")
    for r in rows:
        table.add_row(r.service, r.metric, f"{r.declared:g}" if r.declared is not None else "-",
                      f"{r.measured:g}" if r.measured is not None else "not measured",
                      "[green]ok[/]" if r.ok else f"[red]FAIL[/] {escape(r.detail)}")
    out.print(table)
    bad = [r for r in rows if not r.ok]
    out.print("[bold green]PASS[/]: nothing declared beyond what was measured" if not bad else
              f"[bold red]FAIL[/]: {len(bad)} declared figure(s) beyond what was measured", highlight=False)


def _render(report: CapacityReport, max_rows: int) -> None:
    failing = report.failing
    if failing.size:
        table = Table(title=f"Failing scenarios ({failing.size} of {report.scenario_count})",
                      title_justify="left", show_lines=True)
        table.add_column("scenario (failed risk groups)", ratio=3)
        table.add_column("service", ratio=2)
        table.add_column("reason", ratio=3)
        table.add_column("metric", ratio=2)
        table.add_column("required", justify="right", ratio=1)
        table.add_column("available", justify="right", ratio=1)
        for i in failing[:max_rows]:
            scenario = report.scenario(int(i))
            down = ", ".join(report.down_sites(int(i))) or "none"
            label = (" +\n".join(scenario.failed) or "(intact)") + f"\n[dim]sites down: {down}[/]"
            for name, result in scenario.failing_services.items():
                short = [(m, v) for m, v in result.metrics.items() if not v.ok] or [("", None)]
                for metric, value in short:
                    reason = f"{result.reason.value}\n[dim]{escape(result.detail or '')}[/]" if result.reason else ""
                    table.add_row(label, name, reason, metric,
                                  f"{value.required:g}" if value else "",
                                  f"{value.available:g}" if value else "")
                    label = ""
        out.print(table)
        if failing.size > max_rows:
            out.print(f"... and {failing.size - max_rows} more failing scenarios "
                      "(raise --max-rows, or use --json)")

    spofs = ", ".join(report.spofs) if report.spofs else "none"
    out.print(f"Single points of failure: {spofs}", highlight=False)
    if report.ok:
        out.print(f"[bold green]PASS[/]: all {report.scenario_count} scenarios (depth {report.depth}) keep "
                  f"every service at peak x headroom", highlight=False)
    else:
        out.print(f"[bold red]FAIL[/]: {failing.size} of {report.scenario_count} scenarios "
                  f"(depth {report.depth}) leave a service down or short", highlight=False)


@app.command()
def verify(
    ctx: typer.Context,
    stack: str = typer.Option("lab", "--stack", "-s", help="Deployed stack to measure."),
    fraction: float = typer.Option(1.0, "--fraction", min=0.001, max=10,
                                   help="Share of peak x headroom to drive (1 = the full requirement)."),
    duration: float = typer.Option(20.0, "--duration", min=1, max=3600, help="Seconds of load per scenario."),
    sessions: int | None = typer.Option(None, "--sessions", min=1, max=20_000,
                                        help="Concurrent client sessions, each holding its connection and "
                                             "refreshing its balance screen as the topology declares "
                                             "[default: the topology's peak sessions x headroom x fraction]."),
    warmup: float = typer.Option(15.0, "--warmup", min=0, max=600,
                                 help="Seconds of the same load before each scenario's measured window, by "
                                      "the same clients: the sessions connect then and hold on (not measured)."),
    only: list[str] = typer.Option([], "--only", metavar="all|SITE",
                                   help="Only these scenarios: `all` (every site up) or a site to cut off."),
    write_measured: Path | None = typer.Option(None, "--write-measured", metavar="FILE",
                                               help="Write what one instance of each service was measured to "
                                                    "carry, for `capacity check --measured FILE`."),
    yes: bool = typer.Option(False, "--yes", help="Confirm cutting sites off a stack that is not a lab (its "
                                                  "drill policy must allow it too: allowDrills, change windows)."),
    json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
) -> None:
    """Measure what the deployed stack carries at peak x headroom: with every site up, then with each site
    cut off in turn (restored, and steady again, before the next). The dynamic twin of `capacity check`.

    A scenario passes when clients got at least 95% of the target acknowledged with p99 <= 250 ms and 99.9% of
    their balance-screen refreshes answered live. A cut site is measured once the survivors serve (a database
    primary and a VIP among them): how fast they get there is what the drills measure.
    Exit 0 when every scenario passes, 1 when one does not (or it was refused: a stack that is not steady, or
    one that is not a lab whose drill policy does not allow it now; cutting a site off is a drill).

    With --write-measured FILE, what one instance of each service carried (the most any scenario within the
    latency bound showed: the stack's acknowledged rate over the instances alive, never rounded to the target) is
    written there, for `capacity check --measured FILE`; it is written even when a scenario fails (that is a
    measurement too). A figure whose scenario carried all it was offered is marked capped by the offered load.

    Example: [bold]sudo tradestack capacity verify --stack lab --duration 30 --write-measured measured.yaml[/]
    """
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from ..capacity.measured import dump_measured
    from ..capacity.verify import authorize, measured_capacity, verify as run_verify
    from .edge import err

    want_json(ctx, json)
    authorize(stack, only=only or None, duration_s=duration, warmup_s=warmup, yes=yes)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                  transient=True) as progress:
        task = progress.add_task("preparing", total=None)

        def step(text: str) -> None:  # a live line, and a line per step that stays (a pipeline's log shows them)
            progress.update(task, description=escape(text))
            err.print(f"[dim]{dt.datetime.now():%H:%M:%S}[/] {escape(text)}", highlight=False)

        results = run_verify(stack, fraction=fraction, duration_s=duration, sessions=sessions, only=only or None,
                             warmup_s=warmup, on_step=step)
    ok = all(m.ok for m in results)
    measured = None
    if write_measured is not None:
        measured = measured_capacity(stack, results)
        write_measured.parent.mkdir(parents=True, exist_ok=True)
        write_measured.write_text(dump_measured(measured))
    document = {"ok": ok, "stack": stack, "scenarios": [m.to_dict() for m in results],
                **({"measured_file": str(write_measured),
                    "measured": {name: {"orders_per_second": f.orders_per_second, "sessions": f.sessions,
                                        "capped_by_offered_load": f.capped_by_offered_load}
                                 for name, f in measured.services.items()}} if measured else {})}
    kept, folder = _keep_evidence(stack, document, write_measured)
    if json:
        print_json({**document, "evidence": {"record": kept.seq, "signer": kept.signer, "folder": str(folder)}})
    else:
        table = Table("scenario", "target/s", "acked/s", "p50 ms", "p99 ms", "sessions", "screens", "429s", "5xx",
                      "unknown", "", title=f"measured capacity of {stack}",
                      caption="warm-up p99 (sessions connecting, not judged): "
                              + ", ".join(f"{m.scenario} {m.warmup_p99_ms} ms" for m in results
                                          if m.warmup_p99_ms is not None) if warmup > 0 else None)
        for m in results:
            table.add_row(m.scenario, f"{m.target_per_s:g}", f"{m.acked_per_s:g}", str(m.p50_ms), str(m.p99_ms),
                          str(m.sessions), "-" if m.refreshes_answered is None else f"{m.refreshes_answered:.2%}",
                          str(m.throttled), str(m.server_errors), str(m.unknown),
                          "[green]pass[/]" if m.ok else f"[red]FAIL[/] {escape(m.detail)}")
        out.print(table)
        if measured is not None:
            out.print(f"per instance, written to {write_measured}: " + ", ".join(
                f"{name} {f.orders_per_second:g}/s" + (" (capped by the offered load)" if f.capped_by_offered_load
                                                       else "") for name, f in measured.services.items()),
                highlight=False)
        err.print(f"evidence: record {kept.seq} of {stack}, signed {kept.signer} ({folder}/verify.json)",
                  highlight=False)
    raise typer.Exit(ExitCode.OK if ok else ExitCode.FAILED)


def _keep_evidence(stack: str, document: dict, measured: Path | None) -> tuple[Any, Path]:
    """The verify's result as a file of the stack's state (capacity/STACK/TIME/verify.json), kept as an evidence
    record with the measured file, when one was written."""
    import json as json_
    import shutil

    from ..evidence import keeper
    from ..paths import state_dir

    folder = state_dir() / "capacity" / stack / dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    folder.mkdir(parents=True)
    (folder / "verify.json").write_text(json_.dumps(document, indent=2) + "\n")
    if measured is not None:
        shutil.copy(measured, folder / "measured.yaml")
    files = {p.name: p for p in sorted(folder.iterdir())}
    return keeper.keep(stack, "capacity", folder.name, files), folder
