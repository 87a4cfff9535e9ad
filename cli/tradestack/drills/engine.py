"""The drill engine: preflight, load, baseline, inject, observe, restore, steady state, reconcile, verdict.

Modelled on Chaos Toolkit's journal: what happens is recorded, not raised through the run. A failed
step is data in the report; restore always runs (on failure, on an abort condition, on Ctrl-C or
SIGTERM); the verdict is computed from what was recorded.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import signal
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TradestackError
from ..paths import state_dir
from ..refstack.ledger import Ledger
from ..substrates import Process, Substrate, open_stack
from ..topology.model import Topology
from . import actions, figures, model
from .steady import steady_problems, wait_steady

SAMPLE_S = 0.5
STEADY_TIMEOUT_S = 180.0
LOAD_CEILING_S = 600.0  # beyond the planned load: the longest restores may take before clients stop on their own


class DrillRefused(TradestackError):
    """The drill did not start: the stack is not steady, another drill runs, or drills are not allowed."""


class DrillEvents:
    """Progress callbacks with no-op defaults; the engine guards each call, so a broken handler
    (a progress bar, a log) can never break a drill or skip a restore."""

    def phase(self, name: str, detail: str = "") -> None: ...

    def sample(self, sample: figures.Sample) -> None: ...


@dataclass
class Step:
    name: str
    started: float
    ended: float | None = None
    ok: bool | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "started": self.started, "ended": self.ended, "ok": self.ok, "detail": self.detail}


@dataclass
class Journal:
    steps: list[Step] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    interrupted: str | None = None      # SIGINT / SIGTERM
    aborted: str | None = None          # an abort condition held

    @contextmanager
    def step(self, name: str) -> Iterator[Step]:
        s = Step(name, time.time())
        self.steps.append(s)
        try:
            yield s
            s.ok = True
        except KeyboardInterrupt:
            s.ok, s.detail = False, "interrupted"
            raise
        except Exception as exc:  # a failed step is data in the report
            s.ok, s.detail = False, f"{type(exc).__name__}: {exc}"
        finally:
            s.ended = time.time()


@dataclass(frozen=True)
class DrillPlan:
    drill: model.Drill
    stack: str
    rate: float
    load_s: float
    steps: list[str]
    disposable: bool = False          # the substrate may always be broken (a lab)
    drills_allowed: bool = False      # the stack's own configuration allows drills

    def describe(self) -> dict[str, Any]:
        return {"drill": self.drill.name, "stack": self.stack, "rate": self.rate, "load_s": self.load_s,
                "steps": self.steps}


def authorize(disposable: bool, yes: bool, drills_allowed: bool) -> None:
    """A disposable stack (a lab) may always be broken; any other only with --yes and its own setting allowing
    drills."""
    if disposable:
        return
    if not drills_allowed:
        raise DrillRefused("this stack does not allow drills (set tradestack:allowDrills true in its config)")
    if not yes:
        raise DrillRefused("this is not a lab stack: confirm with --yes")


def plan(drill: model.Drill, stack: str) -> DrillPlan:
    """What the drill will do on this stack, checked against it, touching nothing."""
    substrate = open_stack(stack)
    for fault in drill.faults:
        actions.check(fault, substrate)
    rate = _rate(drill, substrate)
    sessions, refresh = load_shape(drill.load, substrate.topology)
    load_s = drill.timing.baseline_s + drill.fault_window_s + drill.timing.recovery_s
    steps = [f"preflight: stack {stack} is steady (routing, database leader and sync standby, VIPs, programs)",
             f"load: {rate:g} orders/s over {sessions} sessions (each refreshing its balance every "
             f"{refresh:g} s) against " + ", ".join(substrate.endpoints())
             + f", from the baseline until {drill.timing.recovery_s:g} s after every fault is restored "
               f"(about {load_s:g} s when restores are quick)",
             f"baseline: {drill.timing.baseline_s:g} s"]
    for f in sorted(drill.faults, key=lambda f: f.at_s):
        start = drill.timing.baseline_s + f.at_s
        steps.append(f"at +{start:g} s for {f.duration_s:g} s: {actions.describe(f)}")
    steps += ["restore every fault (always: also on failure, abort, Ctrl-C, SIGTERM)",
              f"wait up to {STEADY_TIMEOUT_S:g} s for steady state",
              f"reconcile the clients' ledger with the database (settle {drill.timing.settle_s:g} s)",
              "verdict against: " + ", ".join(f"{k}={v}" for k, v in drill.expect.model_dump().items())]
    return DrillPlan(drill, stack, rate, load_s, steps, substrate.disposable, substrate.drills_allowed)


def _rate(drill: model.Drill, substrate: Substrate) -> float:
    return round(substrate.topology.peak.get("orders_per_second", 100) * drill.load.peak_fraction, 2)


def load_shape(load: model.Load, topology: Topology) -> tuple[int, float]:
    """(sessions, balance refresh interval) of a drill's clients: its own, else the topology's peak sessions
    scaled like its order rate, each refreshing as often as the topology declares (pure)."""
    sessions = load.sessions or max(1, round(topology.peak.get("sessions", 64) * load.peak_fraction))
    return sessions, load.refresh_s or topology.session_refresh_s


@contextmanager
def stack_lock(stack: str) -> Iterator[None]:
    """One drill per stack at a time (a file lock: released by the kernel if we die)."""
    directory = state_dir() / "stacks" / stack
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "drill.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DrillRefused(f"another drill is running on stack {stack!r}") from None
        yield


class Observer(threading.Thread):
    """Samples the control plane every SAMPLE_S: database leader, VIP holders, breakers, the substrate's signals."""

    def __init__(self, substrate: Substrate, on_sample: Callable[[figures.Sample], None]):
        super().__init__(daemon=True, name="drill-observer")
        self.substrate, self.on_sample = substrate, on_sample
        self.samples: list[figures.Sample] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            t = time.time()
            try:
                sub = self.substrate
                breakers = sub.breakers()
                leader, holders, signals = sub.database_leader(), sub.vip_holders(), sub.signals()
                # stamped when the probes are done: a probe that ran into a fault must not count as before it
                sample = figures.Sample(time.time(), leader, holders,
                                        sum(s != "closed" for r in breakers.values() for s in r.values()), signals)
            except Exception:  # an observation that fails is a gap in the timeline, not a failed drill
                continue
            self.samples.append(sample)
            self.on_sample(sample)
            self.stopping.wait(max(0.0, SAMPLE_S - (time.time() - t)))


@dataclass
class DrillResult:
    run_id: str
    plan: DrillPlan
    journal: Journal
    figures: figures.Figures | None
    reconciliation: dict[str, Any] | None
    verdict: str                       # pass | fail | interrupted
    checks: list[dict[str, Any]]
    timeline: list[dict[str, Any]]
    samples: list[figures.Sample]
    load: dict[str, Any] | None
    spike: dict[str, Any] | None
    started: float
    ended: float

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run_id, "drill": self.plan.drill.name, "stack": self.plan.stack,
                "description": self.plan.drill.description, "verdict": self.verdict, "checks": self.checks,
                "figures": self.figures.to_dict() if self.figures else None,
                "reconciliation": self.reconciliation, "load": self.load, "spike": self.spike,
                "started": self.started, "ended": self.ended, "plan": self.plan.describe(),
                "marks": {k: round(v - self.started, 3) for k, v in self.journal.marks.items()},
                "journal": [s.to_dict() for s in self.journal.steps], "interrupted": self.journal.interrupted,
                "aborted": self.journal.aborted, "timeline": self.timeline,
                "samples": [{"t": round(s.t - self.started, 3), "leader": s.leader, "vip_holders": s.vip_holders,
                             "breakers_open": s.breakers_open, "signals": s.signals}
                            for s in self.samples]}


def _guard(call: Callable[..., None], *args: Any) -> None:
    try:
        call(*args)
    except Exception:  # a broken handler must never break a drill
        pass


@contextmanager
def _signals_raise() -> Iterator[None]:
    """SIGTERM and SIGINT raise KeyboardInterrupt for the duration of the run (both end in restore)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    # SIGINT too, explicitly: a process started in the background of a shell inherits SIGINT ignored,
    # and a drill must stop (and restore) when it is told to
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, on_term),
                signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def _signals_deferred(journal: Journal) -> Iterator[None]:
    """While restoring, a second Ctrl-C or SIGTERM is noted, not obeyed: a half-done restore is worse."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def note(signum: int, frame: Any) -> None:
        journal.interrupted = journal.interrupted or signal.Signals(signum).name

    old = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


def run(p: DrillPlan, events: DrillEvents | None = None) -> DrillResult:
    """Run a planned drill on its stack. Never raises for what happens during the drill: it is recorded.
    Raises DrillRefused before touching anything when the stack is not steady or busy."""
    events = events or DrillEvents()
    drill = p.drill
    with stack_lock(p.stack):
        substrate = open_stack(p.stack)
        _guard(events.phase, "preflight", "checking the stack is steady")
        problems = steady_problems(substrate)
        if problems:
            raise DrillRefused("the stack is not in its steady state: " + "; ".join(problems[:8]))
        started = time.time()
        run_id = f"{dt.datetime.fromtimestamp(started, dt.timezone.utc):%Y%m%dT%H%M%SZ}-{drill.name}"
        journal = Journal()
        ledgers = substrate.work_dir
        ledger = ledgers / f"{run_id}.sqlite"
        peak_rate = substrate.topology.peak.get("orders_per_second", 100)
        spike = next((actions.SpikeLoad(substrate, ledgers / f"{run_id}-spike.sqlite",
                                        round(peak_rate * f.multiplier, 2), f.duration_s,
                                        # closed-loop clients: enough of them to offer the rate at ~0.25 s a turn
                                        max(32, min(2000, int(peak_rate * f.multiplier / 4))))
                      for f in drill.faults if isinstance(f, model.LoadSpike)), None)
        observer = Observer(substrate, lambda s: _guard(events.sample, s))
        applied: list[actions.Action] = []
        load_proc: Process | None = None
        load_summary: dict[str, Any] | None = None
        with _signals_raise():
            try:
                with journal.step("start load"):
                    # runs until stopped below, recovery_s after the restores (a ceiling in case we never get there)
                    sessions, refresh = load_shape(drill.load, substrate.topology)
                    load_proc = actions.start_load(substrate, ledger, p.rate, p.load_s + LOAD_CEILING_S, sessions,
                                                   drill.load.overnight_share, drill.load.limit_share,
                                                   assets_every_s=refresh)
                observer.start()
                journal.marks["load_started"] = time.time()
                _guard(events.phase, "baseline", f"{drill.timing.baseline_s:g} s of load before any fault")
                _sleep_until(journal.marks["load_started"] + drill.timing.baseline_s)
                _inject_and_hold(drill, substrate, journal, applied, events, ledger, spike)
            except KeyboardInterrupt as exc:
                journal.interrupted = str(exc) or "SIGINT"
            finally:
                with _signals_deferred(journal):
                    _guard(events.phase, "restore", f"undoing {len(applied)} fault(s)")
                    _restore_all(applied, journal, events)
                    journal.marks["restored"] = time.time()
                    if load_proc is not None:
                        if not journal.interrupted and not journal.aborted:
                            _guard(events.phase, "recovery", f"{drill.timing.recovery_s:g} s of load after the restore")
                            _observe_until(journal.marks["restored"] + drill.timing.recovery_s, journal)
                        _guard(events.phase, "load", "stopping the clients")
                        load_summary = actions.finish_load(load_proc, timeout=60, stop=True)
                    journal.marks["load_ended"] = time.time()
                    observer.stopping.set()
                    observer.join(timeout=10)
                    _guard(events.phase, "steady state", "waiting for the stack to be steady again")
                    with journal.step("steady state after the drill") as s:
                        left = wait_steady(substrate, STEADY_TIMEOUT_S)
                        if left:
                            raise RuntimeError("; ".join(left[:8]))
                        s.detail = "steady"
        reconciliation = None
        if not journal.interrupted:
            _guard(events.phase, "reconcile", "comparing the clients' ledger with the database")
            with journal.step("reconcile") as s:
                reconciliation = _reconcile(substrate, [ledger] + ([spike.ledger] if spike else []),
                                            drill.timing.settle_s)
                s.detail = "ok" if reconciliation.get("ok") else "differences found"
        orders = _client_orders(substrate, ledger)
        window = figures.Window(journal.marks.get("injected", journal.marks.get("load_ended", started)),
                                journal.marks.get("restored", time.time()),
                                journal.marks.get("load_ended", time.time()))
        figs = figures.compute(orders, observer.samples, window) if orders else None
        checks = verdict_checks(drill, figs, reconciliation, journal, spike.summary if spike else None)
        verdict = "interrupted" if journal.interrupted else ("pass" if all(c["ok"] for c in checks) else "fail")
        return DrillResult(run_id, p, journal, figs, reconciliation, verdict, checks,
                           figures.timeline(orders, journal.marks.get("load_started", started)), observer.samples,
                           load_summary, spike.summary if spike else None, started, time.time())


def _observe_until(t: float, journal: Journal) -> None:
    """Let clients run until `t`; a Ctrl-C or SIGTERM (noted while restoring) cuts it short."""
    while time.time() < t and not journal.interrupted:
        time.sleep(min(0.2, max(0.0, t - time.time())))


def _sleep_until(t: float) -> None:
    while (left := t - time.time()) > 0:
        time.sleep(min(left, 0.2))


def _inject_and_hold(drill: model.Drill, substrate: Substrate, journal: Journal, applied: list[actions.Action],
                     events: DrillEvents, ledger: Path, spike: actions.SpikeLoad | None) -> None:
    """Inject each fault at its time, undo it when its duration is over, watch the abort condition."""
    t0 = time.time()
    schedule = sorted(drill.faults, key=lambda f: f.at_s)
    pending = list(schedule)
    active: list[tuple[float, actions.Action]] = []
    while pending or active:
        now = time.time() - t0
        while pending and pending[0].at_s <= now:
            fault = pending.pop(0)
            with journal.step(f"inject: {actions.describe(fault)}") as s:
                action = actions.prepare(fault, substrate, spike=spike)
                s.detail = action.text
                applied.append(action)
                journal.marks.setdefault("injected", time.time())  # the fault starts biting as it is applied
                action.inject()
                active.append((t0 + fault.at_s + fault.duration_s, action))
                _guard(events.phase, "fault", action.text)
        for due, action in list(active):
            if time.time() >= due:
                active.remove((due, action))
                _restore_one(action, journal, events)
                applied.remove(action)
        reason = _abort_reason(drill, substrate, ledger)
        if reason:
            journal.aborted = reason
            _guard(events.phase, "abort", reason)
            return
        time.sleep(0.2)


def _restore_one(action: actions.Action, journal: Journal, events: DrillEvents) -> None:
    _guard(events.phase, "restore", action.text)
    with journal.step(f"restore: {action.text}"):
        action.restore(lambda text: _guard(events.phase, "restore", text))


def _restore_all(applied: list[actions.Action], journal: Journal, events: DrillEvents) -> None:
    """Undo whatever is still applied, newest first; every restore is tried even if one fails."""
    for action in reversed(list(applied)):
        _restore_one(action, journal, events)
        applied.remove(action)


def _abort_reason(drill: model.Drill, substrate: Substrate, ledger: Path) -> str | None:
    """Clients failing at or above the abort error rate for the whole abort window."""
    if drill.abort.error_rate >= 1.0:
        return None
    ledger = substrate.fetch(substrate.clients_host, ledger)
    if not ledger.exists():
        return None
    since = time.time() - drill.abort.for_s
    try:
        with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=1) as conn:
            rows = conn.execute("SELECT first_sent, outcome, attempts, latency_ms FROM orders WHERE first_sent >= ?",
                                (since,)).fetchall()
            oldest = conn.execute("SELECT min(first_sent) FROM orders").fetchone()[0]
    except sqlite3.Error:
        return None
    if not rows or oldest is None or oldest > since:
        return None
    bad = sum(1 for _, outcome, attempts, latency in rows
              if not figures.ClientOrder(0, latency, outcome, attempts, "").clean)
    rate = bad / len(rows)
    if rate >= drill.abort.error_rate:
        return f"client error rate {rate:.0%} >= {drill.abort.error_rate:.0%} for {drill.abort.for_s:g} s"
    return None


def _client_orders(substrate: Substrate, ledger: Path) -> list[figures.ClientOrder]:
    ledger = substrate.fetch(substrate.clients_host, ledger)
    if not ledger.exists():
        return []
    book = Ledger(ledger)
    try:
        return [figures.ClientOrder(o.first_sent, o.latency_ms, o.outcome, o.attempts, o.endpoint)
                for o in book.orders()]
    finally:
        book.close()


def _reconcile(substrate: Substrate, ledgers: list[Path], settle_s: float) -> dict[str, Any]:
    """The reference stack's reconciliation, run where the database proxy is (a live router host)."""
    vantage = substrate.database_vantage().name
    merged: dict[str, Any] = {}
    for path in ledgers:
        if not substrate.fetch(substrate.clients_host, path).exists():
            continue
        done = substrate.run(vantage, [*substrate.tool_argv(vantage), "refstack", "reconcile", "--ledger", str(path),
                                       "--settle", f"{settle_s:g}", "--json",
                                       *[a for url in substrate.venue_admins() for a in ("--venue-admin", url)]],
                             timeout=settle_s + 300, env={"PATH": "/usr/bin:/bin", "TRADESTACK_DSN": substrate.db_dsn()})
        try:
            report = json.loads(done.stdout)
        except ValueError:
            raise RuntimeError(f"reconcile failed: {done.why()}") from None
        merged = report if not merged else _merge(merged, report)
    return merged


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two reconciliations as one: counts add up, samples are kept from the first."""
    out = dict(a)
    out["ok"] = a.get("ok", False) and b.get("ok", False)
    for key, value in b.items():
        if isinstance(value, dict) and "count" in value:
            out[key] = {"count": a.get(key, {}).get("count", 0) + value["count"],
                        "sample": (a.get(key, {}).get("sample") or []) + value["sample"][:5]}
        elif isinstance(value, int) and key != "ok" and not isinstance(value, bool):
            out[key] = a.get(key, 0) + value
    out["duplicates"] = {"database": a["duplicates"]["database"] + b["duplicates"]["database"],
                         "venues": {"count": a["duplicates"]["venues"]["count"] + b["duplicates"]["venues"]["count"],
                                    "sample": a["duplicates"]["venues"]["sample"]}}
    return out


def verdict_checks(drill: model.Drill, figs: figures.Figures | None, rec: dict[str, Any] | None,
                   journal: Journal, spike: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Each expectation (and the engine's own: restores and steady state) as {check, expected, actual, ok}."""
    e = drill.expect
    checks: list[dict[str, Any]] = []

    def add(name: str, expected: Any, actual: Any, ok: bool) -> None:
        actual = round(actual, 3) if isinstance(actual, float) else actual
        checks.append({"check": name, "expected": expected, "actual": actual, "ok": bool(ok)})

    failed = [s.name for s in journal.steps if s.ok is False]
    add("every step and restore succeeded", "no failed step", failed or "none failed", not failed)
    if journal.aborted:
        add("no abort condition", "none", journal.aborted, False)
    if e.max_recovery_s is not None:
        actual = figs.recovery_s if figs else None
        add("recovery time (s)", f"<= {e.max_recovery_s:g}", actual if actual is not None else "never recovered",
            actual is not None and actual <= e.max_recovery_s)
    if e.max_error_rate is not None:
        rate = figs.error_rate if figs else None
        add("client error rate", f"<= {e.max_error_rate:g}", rate, rate is not None and rate <= e.max_error_rate)
    if spike is not None:  # overload must be refused fast (429), never time out or fail
        bad = int(spike.get("server_errors", 0)) + int(spike.get("unknown", 0)) if spike.get("ok") else None
        add("load spike answered with 429s, no 5xx or timeouts", "0 of either",
            bad if bad is not None else f"spike load failed: {spike.get('error')}", bad == 0)
    if rec is None:
        add("reconciliation ran", "yes", "no", False)
        return checks
    lost = rec["acked_missing"]["count"] + rec["acked_id_mismatch"]["count"]
    add("acknowledged orders lost", f"<= {e.max_acked_lost}", lost, lost <= e.max_acked_lost)
    dupes = rec["duplicates"]["database"] + rec["duplicates"]["venues"]["count"]
    add("duplicate orders", f"<= {e.max_duplicates}", dupes, dupes <= e.max_duplicates)
    wrong = rec["bad_balances_seen"]["count"] + rec["wrong_balances"]["count"]
    add("wrong or zero balances shown", f"<= {e.wrong_balances}", wrong, wrong <= e.wrong_balances)
    # a fill or cancel the system of record missed leaves the account's cash and positions wrong
    missed = rec["venue_mismatch"]["count"]
    add("every order as its venue's book says", 0, missed, missed == 0)
    if e.every_order_accounted:
        open_ = rec["unsettled"]["count"] + rec["silently_ended"]["count"] + rec["not_placed_but_present"]["count"]
        add("every order accounted for (none pending, none ended without a reason)", 0, open_, open_ == 0)
    return checks
