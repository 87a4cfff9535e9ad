"""`tradestack refstack ...`: run the reference trading stack, drive load through it, reconcile."""

from __future__ import annotations

import enum
import signal
import sys
import threading
from collections.abc import Callable
from json import dumps
from pathlib import Path

import typer
from rich.table import Table

from ..errors import TradestackError
from ..refstack.config import Admission
from ..refstack.local import LocalRefStack
from .edge import err, out, print_json, want_json

app = typer.Typer(no_args_is_help=True, help="The reference trading stack: gateway, router, venue simulators, "
                                             "load generator.")
JsonOpt = typer.Option(False, "--json", help="Print one JSON document on stdout.")


class Kind(str, enum.Enum):
    gateway = "gateway"
    router = "router"
    venue = "venue"


@app.command()
def serve(kind: Kind = typer.Argument(..., help="Which component."),
          config: Path = typer.Option(..., "--config", "-c", help="YAML or JSON configuration file.")) -> None:
    """Run one component in the foreground until SIGTERM or Ctrl-C (what supervisors start).

    Example: [bold]tradestack refstack serve gateway --config gateway.yaml[/]
    """
    from ..refstack.service import serve_component

    serve_component(kind.value, config)


@app.command()
def run(ctx: typer.Context,
        accounts: int = typer.Option(1000, min=1, max=1_000_000, help="Accounts to create (acct-00000 ...)."),
        orders_per_second: float = typer.Option(400.0, min=1, help="Gateway admission: sustained order rate."),
        max_in_flight: int = typer.Option(64, min=1, help="Gateway admission: requests in flight."),
        keep: bool = typer.Option(False, "--keep", help="Keep the database and logs after stopping."),
        json: bool = JsonOpt) -> None:
    """Start PostgreSQL, two venue simulators, a router and a gateway on loopback; Ctrl-C stops them all.

    Example: [bold]tradestack refstack run[/], then in another shell
    [bold]tradestack refstack load --endpoint http://127.0.0.1:PORT --rate 200 --duration 10[/]
    """
    want_json(ctx, json)
    stack = LocalRefStack(accounts=accounts, keep=keep,
                          admission=Admission(orders_per_second=orders_per_second, max_in_flight=max_in_flight),
                          on_step=lambda msg: err.print(f"[dim]{msg}…[/]"))
    stopped = threading.Event()
    # both said explicitly, as `refstack load` and the drills do: a process started as a script's background
    # job inherits SIGINT ignored, and Ctrl-C (or a SIGINT sent to it) must still stop everything
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    try:
        stack.start()
        endpoints = stack.endpoints()
        if json:
            print_json({"ok": True, **endpoints})
        else:
            _render(endpoints)
            err.print("[green]running[/]; Ctrl-C stops everything")
        while not stopped.wait(0.5):
            dead = [s.name for s in stack.services.values() if s.process.poll() is not None]
            if dead:
                err.print(f"[red]stopped unexpectedly:[/] {', '.join(dead)} (logs in {stack.workdir})")
                raise typer.Exit(1)
    finally:
        err.print("[dim]stopping…[/]")
        stack.stop()


def _render(endpoints: dict[str, object]) -> None:
    table = Table("component", "endpoint", title="reference stack on loopback")
    table.add_row("database", str(endpoints["database"]))
    for kind in ("gateways", "routers"):
        for name, url in endpoints[kind].items():  # type: ignore[attr-defined]
            table.add_row(name, url)
    for name, venue in endpoints["venues"].items():  # type: ignore[attr-defined]
        table.add_row(f"venue {name}", f"orders {venue['orders']}, admin {venue['admin']}")
    table.add_row("logs", str(endpoints["logs"]))
    out.print(table)


@app.command()
def migrate(ctx: typer.Context,
            dsn: str = typer.Option(..., "--dsn", envvar="TRADESTACK_DSN",
                                    help="Database to prepare (or $TRADESTACK_DSN, which keeps a password out of "
                                         "the process list)."),
            seed_accounts: int = typer.Option(0, "--seed-accounts", min=0, help="Create acct-00000.. up to N."),
            json: bool = JsonOpt) -> None:
    """Create the schema (idempotent) and seed accounts; reports whether anything changed.

    Example: [bold]TRADESTACK_DSN="host=... dbname=tradestack" tradestack refstack migrate --seed-accounts 1000[/]
    """
    import psycopg

    from ..refstack.schema import migrate as create_schema
    from ..refstack.schema import seed_accounts as seed

    want_json(ctx, json)
    try:
        created = create_schema(dsn)
        seeded = seed(dsn, seed_accounts) if seed_accounts else 0
    except psycopg.Error as exc:
        raise TradestackError(f"cannot prepare the database: {str(exc).strip().splitlines()[0]}") from None
    document = {"ok": True, "changed": bool(created or seeded), "schema_created": created, "accounts_created": seeded}
    if json:
        print_json(document)
    else:
        out.print(f"schema {'created' if created else 'up to date'}; {seeded} accounts created")


@app.command()
def load(ctx: typer.Context,
         endpoint: list[str] = typer.Option(..., "--endpoint", "-e",
                                            help="Gateway base URL; repeat for every site and carrier."),
         rate: float = typer.Option(100.0, min=0.1, help="Orders per second, all sessions together."),
         duration: float = typer.Option(10.0, min=0.1, help="Seconds of load."),
         warmup: float = typer.Option(0.0, min=0, help="Seconds of the same load first, in the ledger but not in "
                                                       "the figures (the sessions connect then and hold on)."),
         sessions: int = typer.Option(20, min=1, max=100_000, help="Concurrent client sessions."),
         accounts: int = typer.Option(1000, min=1, help="Accounts acct-00000.. to spread orders over."),
         overnight: float = typer.Option(0.0, min=0, max=1, help="Share of overnight-session orders."),
         limit: float = typer.Option(0.0, min=0, max=1, help="Share of limit orders (they rest at the venue)."),
         assets_every: float = typer.Option(1.0, "--assets-every", min=0,
                                            help="Each session refreshes its balance screen this often, in "
                                                 "seconds (0: never)."),
         ledger: Path = typer.Option(Path("ledger.sqlite"), "--ledger", help="SQLite ledger to write."),
         as_clients: bool = typer.Option(False, "--as-clients",
                                         help="Send the orders as clients do, without the toolkit's origin header: "
                                              "the load then counts in the stack's observed peak (`capacity "
                                              "peak`). For standing in for real clients only."),
         json: bool = JsonOpt) -> None:
    """Drive orders through the gateways like broker apps do; record every order in a ledger.

    SIGTERM (or Ctrl-C) ends the run early and cleanly: orders in flight are answered and recorded, the
    summary is printed as for a full run (`planned` then covers the time it ran). With --json, progress is
    one JSON line on stderr twice a second (`{"progress": {t, sent, answered, served_at_once, connected,
    sessions}}`), which is what a drill watches.

    Example: [bold]tradestack refstack load -e http://127.0.0.1:8080 --rate 200 --duration 30[/]
    """
    import asyncio

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from ..refstack.loadgen import LoadPlan, LoadStats, run_load

    want_json(ctx, json)
    bad = [e for e in endpoint if not e.startswith(("http://", "https://"))]
    if bad:
        raise typer.BadParameter(f"not an http(s) URL: {', '.join(bad)}", param_hint="--endpoint")
    plan = LoadPlan(endpoints=tuple(e.rstrip("/") for e in endpoint), rate=rate, duration_s=duration,
                    warmup_s=warmup, sessions=sessions, accounts=accounts, overnight_share=overnight,
                    limit_share=limit, assets_every_s=assets_every,
                    origin="client" if as_clients else "toolkit")

    async def until_told(show: Callable[[LoadStats], None]) -> tuple[str, LoadStats]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        return await run_load(plan, ledger, show, stop)

    if json:  # a program reads this run: a progress report a line on stderr, twice a second (what drills watch)
        def report(stats: LoadStats) -> None:
            sys.stderr.write(dumps({"progress": stats.progress()}) + "\n")
            sys.stderr.flush()
        run_id, stats = asyncio.run(until_told(report))
    else:
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[line]}"),
                      TimeElapsedColumn(), console=err, transient=True) as progress:
            task = progress.add_task("load", total=int(rate * duration), line="")  # the measured part

            def show(stats: LoadStats) -> None:
                progress.update(task, completed=stats.sent, line=f"acked {stats.acked}  429 {stats.throttled}  "
                                                                  f"unknown {stats.unknown}")
            run_id, stats = asyncio.run(until_told(show))
    summary = {"run": run_id, "ledger": str(ledger), **stats.summary()}
    if json:
        print_json({"ok": True, **summary})
        return
    table = Table("", "value", title=f"load run {run_id}")
    for key, value in summary.items():
        table.add_row(key, str(value))
    out.print(table)


@app.command()
def reconcile(ctx: typer.Context,
              ledger: Path = typer.Option(Path("ledger.sqlite"), "--ledger", help="The load generator's ledger."),
              dsn: str = typer.Option(..., "--dsn", envvar="TRADESTACK_DSN",
                                      help="System of record, e.g. 'host=127.0.0.1 port=5432 user=tradestack "
                                           "dbname=tradestack' (or $TRADESTACK_DSN)."),
              venue: list[str] = typer.Option([], "--venue-admin", help="Venue admin URL (for duplicate checks)."),
              settle: float = typer.Option(15.0, min=0, help="Seconds to wait for orders still being routed."),
              json: bool = JsonOpt) -> None:
    """Compare the ledger with the system of record; exit 1 if any order was lost, doubled or left unsettled.

    Example: [bold]tradestack refstack reconcile --ledger ledger.sqlite --dsn "host=127.0.0.1 port=5432 ..."[/]
    """
    from ..refstack.reconcile import reconcile as run_reconcile

    want_json(ctx, json)
    report = run_reconcile(ledger, dsn, venue, settle)
    document = report.to_dict()
    if json:
        print_json(document)
    else:
        table = Table("check", "result", title="reconciliation: " + ("[green]ok[/]" if report.ok else "[red]FAILED[/]"))
        for key, value in document.items():
            if key != "ok":
                table.add_row(key, str(value))
        out.print(table)
    if not report.ok:
        raise typer.Exit(1)


@app.command("alert-sink")
def alert_sink(listen: str = typer.Option(..., "--listen", metavar="ADDRESS:PORT",
                                          help="Where Alertmanager's webhook posts (playbooks/roles/monitoring)."),
               log: Path = typer.Option(..., "--log", help="JSON lines file: one per notification, with when it "
                                                           "arrived.")) -> None:
    """Receive Alertmanager's notifications as the on-call's pager would, logging each with when it arrived,
    until SIGTERM or Ctrl-C (what a drill runs on the clients host to time the page).

    Example: [bold]tradestack refstack alert-sink --listen 198.19.0.1:9095 --log alerts.jsonl[/]
    """
    from ..refstack.alertsink import serve

    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(f"not ADDRESS:PORT: {listen!r}", param_hint="--listen")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    def ready(line: str) -> None:  # what a drill waits for on stderr before it breaks anything
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    try:
        serve(host, int(port), log, stop, ready)
    except OSError as exc:
        raise TradestackError(f"cannot receive on {listen}: {exc.strerror or exc}") from None
