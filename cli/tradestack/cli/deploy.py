"""`tradestack deploy`: the trading stack onto a stack's hosts (ansible-runner, live progress)."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..exitcodes import ExitCode
from .edge import err, out, print_json, want_json


class _Events:
    """Runner events -> one live line: the current task and how many hosts are done with it."""

    def __init__(self, progress: Progress, task: Any):
        self.progress, self.task = progress, task
        self.name, self.done, self.changed, self.failed = "starting", 0, 0, 0

    def __call__(self, event: dict[str, Any]) -> None:
        kind, data = event.get("event", ""), event.get("event_data") or {}
        if kind == "playbook_on_task_start":
            self.name, self.done = data.get("task", "?"), 0
        elif kind in ("runner_on_ok", "runner_on_skipped", "runner_on_failed", "runner_on_unreachable"):
            self.done += 1
            self.changed += bool((data.get("res") or {}).get("changed"))
            self.failed += kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors")
        self.progress.update(self.task, description=f"{escape(self.name)} [dim]({self.done} hosts; "
                                                    f"{self.changed} changed, {self.failed} failed so far)[/]")


def deploy(ctx: typer.Context,
           stack: str = typer.Option("lab", "--stack", "-s", help="Stack whose hosts to deploy to."),
           limit: str = typer.Option(None, "--limit", "-l", help="Only these hosts (Ansible pattern)."),
           tags: str = typer.Option(None, "--tags", "-t", help="Only tasks with these tags."),
           check: bool = typer.Option(False, "--check", help="Say what would change; change nothing."),
           json: bool = typer.Option(False, "--json", help="Print one JSON summary on stdout.")) -> None:
    """Deploy etcd, PostgreSQL + Patroni, HAProxy + keepalived and the trading services to a stack.

    Secrets come from the stack's encrypted configuration and never appear in output or artifacts;
    runner artifacts are kept per run under ~/.tradestack/stacks/STACK/deploys/.

    Example: [bold]sudo tradestack deploy --stack lab[/]   then   [bold]tradestack status --stack lab[/]
    """
    from ..deploy import run

    want_json(ctx, json)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                  transient=True) as progress:
        task = progress.add_task("preparing", total=None)
        planned = run.plan(stack, limit=limit, tags=tags, check=check,
                           on_step=lambda s: progress.update(task, description=s))
        result = run.apply(planned, _Events(progress, task),
                           on_step=lambda s: progress.update(task, description=escape(s)))
    hosts = {h: vars(s) for h, s in sorted(result.hosts.items())}
    document = {"ok": result.ok, "stack": stack, "check": check, "status": result.status, "rc": result.rc,
                "changed": result.changed, "hosts": hosts,
                "failures": [vars(f) for f in result.failures], "artifacts": str(result.artifacts),
                **({"workloads": result.workloads} if result.workloads is not None else {})}
    if json:
        print_json(document)
    else:
        table = Table("host", "ok", "changed", "failed", "unreachable",
                      title=f"deploy {'--check ' if check else ''}{stack}: {result.status}")
        for host, s in hosts.items():
            table.add_row(host, str(s["ok"]), str(s["changed"]), str(s["failed"]), str(s["unreachable"]),
                          style="red" if s["failed"] or s["unreachable"] else None)
        out.print(table)
        if result.workloads is not None:
            parts = ", ".join(f"{n} {op}" for op, n in sorted(result.workloads["changes"].items()))
            out.print(f"workloads: {parts} (image {result.workloads['image']})", highlight=False)
        for failure in result.failures:
            err.print(f"[bold red]{'unreachable' if failure.unreachable else 'failed'}:[/] {escape(failure.host)}\n"
                      f"  task: {escape(failure.task)}\n  {escape(failure.message)}", highlight=False)
        if not hosts and not result.ok:
            err.print(f"[bold red]the playbook did not run[/] (status {result.status}, rc {result.rc}); "
                      f"see {result.artifacts}/stdout", highlight=False)
        err.print(f"artifacts: {result.artifacts}", highlight=False)
    if not result.ok:
        raise typer.Exit(ExitCode.FAILED)


def status(ctx: typer.Context,
           stack: str = typer.Option("lab", "--stack", "-s", help="Deployed stack to look at."),
           json: bool = typer.Option(False, "--json", help="Print one JSON document on stdout.")) -> None:
    """One view of a deployed stack: per site the hosts and their programs, the VIP holder and the
    carriers; the Patroni leader and synchronous standby with lag; etcd members and leader; the alerts the
    stack's Prometheus hold (firing and pending).

    Exit 1 when something is down (a program not running, no leader, no sync standby, no VIP holder, a critical
    alert firing, no Prometheus answering).

    Example: [bold]sudo tradestack status --stack lab[/]
    """
    from ..deploy.status import collect, problems

    want_json(ctx, json)
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                  transient=True) as progress:
        task = progress.add_task("reading the stack", total=None)
        view = collect(stack, on_step=lambda s: progress.update(task, description=s))
    issues = problems(view)
    if json:
        print_json({"ok": not issues, "problems": issues, **view})
    else:
        _render_status(view, issues)
    if issues:
        raise typer.Exit(ExitCode.FAILED)


def _render_status(view: dict[str, Any], issues: list[str]) -> None:
    table = Table("site", "host", "service", "programs", title=f"stack {view['stack']}")
    for site, info in view["sites"].items():
        for host, h in info["hosts"].items():
            progs = ", ".join(f"{p} {'[green]' if s == 'running' else '[red]'}{s}[/]" for p, s in h["programs"].items())
            table.add_row(f"{site} ({info['role']})", host, h["service"], progs if h["reachable"] else "[red]unreachable[/]")
    for host, h in view["outside"].items():
        progs = ", ".join(f"{p} {s}" for p, s in h["programs"].items())
        table.add_row("outside", host, h["service"], progs if h["reachable"] else "[red]unreachable[/]")
    out.print(table)
    for site, info in view["sites"].items():
        carriers = ", ".join(f"{c} {'up' if up else 'DOWN'}" for c, up in info["carriers"].items())
        vip = info["vip"]
        vip_text = f"VIP {vip['address']} on {vip['holder'] or '[red]nobody[/]'}" if vip else "no VIP"
        out.print(f"[bold]{site}[/]: {vip_text}; carriers: {carriers}")
    db = view["database"]
    lags = ", ".join(f"{m['name']} {m['role']} lag {m['lag']}" for m in db["members"])
    out.print(f"[bold]database[/]: leader {db['leader']}, sync standby {', '.join(db['sync_standby']) or 'none'} ({lags})")
    etcd = view["consensus"]
    out.print(f"[bold]etcd[/]: {len(etcd['members'])} members, leader {etcd['leader']}")
    for site, c in (view.get("clusters") or {}).items():
        if c["error"]:
            out.print(f"[bold]{site} cluster[/]: [red]{escape(c['error'])}[/]", highlight=False)
            continue
        nodes = ", ".join(f"{n} {'Ready' if ok else '[red]NotReady[/]'}" for n, ok in c["nodes"].items())
        services = ", ".join(f"{name} {s['ready']}/{s['replicas']} ready, {s['disruptions_allowed']} disruption(s) "
                             "allowed" for name, s in c["services"].items())
        out.print(f"[bold]{site} cluster[/]: nodes {nodes}; {services or 'no services'}", highlight=False)
    monitoring = view.get("monitoring") or {}
    if monitoring.get("prometheus"):
        alerts = monitoring["alerts"]
        out.print(f"[bold]monitoring[/]: {len(monitoring['answered'])} of {len(monitoring['prometheus'])} "
                  f"Prometheus answered; {sum(a['state'] == 'firing' for a in alerts)} alert(s) firing",
                  highlight=False)
        for a in alerts:
            where = ", ".join(f"{k}={v}" for k, v in sorted(a["labels"].items()) if k not in ("job", "instance"))
            colour = "red" if a["severity"] == "critical" else "yellow"
            line = f"  [{colour}]{a['state']}[/] {a['alert']} ({a['severity']}) since {a['since']}"
            line += (f" ({escape(where)})" if where else "") + (f": {escape(a['summary'])}" if a["summary"] else "")
            out.print(line, highlight=False)
    for issue in issues:
        err.print(f"[bold red]problem:[/] {escape(issue)}", highlight=False)
