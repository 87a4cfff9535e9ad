"""The drill engine: preflight, load, baseline, inject, observe, restore, steady state, reconcile, verdict.

Modelled on Chaos Toolkit's journal: what happens is recorded, not raised through the run. A failed
step is data in the report; restore always runs (on failure, on an abort condition, on Ctrl-C or
SIGTERM); the verdict is computed from what was recorded.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__, ports
from ..refstack.ledger import Ledger
from ..substrates import Substrate, faults, open_stack
from ..topology.model import Topology
from . import actions, alerts, figures, model
from .clients import STARTUP_S, Clients
from .errors import DrillRefused
from .journal import Journal
from .observer import Observer
from .pager import Pager
from .policy import DrillPolicy, Reach, reach
from .policy import authorize as policy_authorize
from .reconcile import reconcile
from .session import FaultSession, guarded, session
from .steady import wait_steady
from .verdict import abort_reason, load_problems, verdict_checks, watch_problems

STEADY_TIMEOUT_S = 180.0
# Before a drill: how long a stack may take to become steady (a drill right after another meets a stack still
# settling: BGP sessions re-established, a standby catching up) before the drill is refused with what is wrong
PREFLIGHT_STEADY_S = 90.0
LOAD_CEILING_S = 600.0  # beyond the planned load: the longest restores may take before clients stop on their own

__all__ = ["DrillEvents", "DrillPlan", "DrillRefused", "DrillResult", "authorize", "load_shape", "plan",
           "planned_rate", "run"]


class DrillEvents:
    """Progress callbacks with no-op defaults; the engine guards each call, so a broken handler
    (a progress bar, a log) can never break a drill or skip a restore."""

    def phase(self, name: str, detail: str = "") -> None: ...

    def sample(self, sample: figures.Sample) -> None: ...


@dataclass(frozen=True)
class DrillPlan:
    drill: model.Drill
    stack: str
    rate: float
    load_s: float
    steps: list[str]
    disposable: bool = False          # the substrate may always be broken (a lab): no policy applies
    policy: DrillPolicy = DrillPolicy()
    reach: Reach = Reach()

    sessions: int = 0
    # the stack as the plan opened it, which the run uses rather than opening it again (over a second each)
    substrate: Substrate | None = field(default=None, compare=False, repr=False)

    def describe(self) -> dict[str, Any]:
        return {"drill": self.drill.name, "stack": self.stack, "rate": self.rate, "sessions": self.sessions,
                "load_s": self.load_s, "steps": self.steps}


def authorize(p: DrillPlan, yes: bool, now: dt.datetime | None = None) -> None:
    """A disposable stack (a lab) may always be broken; any other only as its own policy allows (drills allowed,
    within a change window, within the blast radius), and with --yes."""
    policy_authorize(p.disposable, p.policy, p.reach, p.load_s, yes, now)


def plan(drill: model.Drill, stack: str) -> DrillPlan:
    """What the drill will do on this stack, checked against it, touching nothing."""
    substrate = open_stack(stack)
    for fault in drill.faults:
        actions.check(fault, substrate)
    rate = planned_rate(drill, substrate.topology)
    sessions, refresh = load_shape(drill.load, substrate.topology)
    load_s = drill.timing.baseline_s + drill.fault_window_s + drill.timing.recovery_s
    touched = reach(drill, substrate.topology, substrate.hosts, stack, substrate.fault_map)
    policy = DrillPolicy() if substrate.disposable else DrillPolicy.from_config(substrate.config())
    steps = [f"preflight: stack {stack} is steady (routing, database leader and sync standby, VIPs, programs)",
             f"load: {rate:g} orders/s over {sessions} sessions (each refreshing its balance every "
             f"{refresh:g} s) against " + ", ".join(substrate.endpoints())
             + f", from the baseline until {drill.timing.recovery_s:g} s after every fault is restored "
               f"(about {load_s:g} s when restores are quick)",
             f"clients seen sending within {STARTUP_S:g} s, else the drill stops without touching the stack; "
             "watched until stopped (a load generator that dies or goes silent stops the drill and fails it)",
             f"baseline: {drill.timing.baseline_s:g} s"]
    for f in sorted(drill.faults, key=lambda f: f.at_s):
        start = drill.timing.baseline_s + f.at_s
        steps.append(f"at +{start:g} s for {f.duration_s:g} s: {f.describe()}")
        if not isinstance(f, faults.LoadSpike):
            steps += [f"    {line}" for line in substrate.dry_run(f)]
    steps.insert(1, _alert_step(drill, substrate))
    steps += ["restore every fault (always: also on failure, abort, Ctrl-C, SIGTERM)",
              f"wait up to {STEADY_TIMEOUT_S:g} s for steady state",
              f"reconcile the clients' ledger with the database (settle {drill.timing.settle_s:g} s)",
              "verdict against: " + ", ".join(f"{k}={v}" for k, v in drill.expect.model_dump().items())]
    if not substrate.disposable:
        refusal = policy.refusal(dt.datetime.now(dt.timezone.utc), touched, load_s)
        steps.insert(0, f"policy: {'refused now: ' + refusal if refusal else 'allowed now'} (touches "
                        f"{len(touched.hosts)} host(s), sites {', '.join(sorted(touched.sites)) or 'none'})")
    return DrillPlan(drill, stack, rate, load_s, steps, substrate.disposable, policy, touched, sessions, substrate)


def _alert_step(drill: model.Drill, substrate: Substrate) -> str:
    if not substrate.of("monitoring"):
        return ("alerts: the stack has no monitoring hosts: nothing is paged"
                + (", so every alert the drill expects fails" if drill.alerts else ""))
    expected = "; ".join(f"{a.alert} notified within {a.notified_within_s:g} s of the fault, resolved within "
                         f"{a.resolved_within_s:g} s of the restore" for a in drill.alerts) or "none declared"
    return (f"alerts: what Alertmanager sends the on-call, received on {substrate.clients_host} port "
            f"{ports.ALERT_WEBHOOK}; expected: {expected}; any other is reported")


def planned_rate(drill: model.Drill, topology: Topology) -> float:
    """The drill's clients' order rate on this topology: its share of the declared peak (pure)."""
    return round(topology.peak.get("orders_per_second", 100) * drill.load.peak_fraction, 2)


def load_shape(load: model.Load, topology: Topology) -> tuple[int, float]:
    """(sessions, balance refresh interval) of a drill's clients: its own, else the topology's peak sessions
    scaled like its order rate, each refreshing as often as the topology declares (pure)."""
    sessions = load.sessions or max(1, round(topology.peak.get("sessions", 64) * load.peak_fraction))
    return sessions, load.refresh_s or topology.session_refresh_s


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

    peak: dict[str, float] | None = None   # the topology's declared peak when the drill ran
    alerts: dict[str, Any] | None = None   # what the on-call was sent (drills/alerts.py); None: no monitoring

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run_id, "drill": self.plan.drill.name, "stack": self.plan.stack,
                "description": self.plan.drill.description, "definition_digest": self.plan.drill.digest,
                "tool": f"tradestack {__version__}", "peak": self.peak, "verdict": self.verdict, "checks": self.checks,
                "figures": self.figures.to_dict() if self.figures else None,
                "reconciliation": self.reconciliation, "load": self.load, "spike": self.spike,
                "started": self.started, "ended": self.ended, "plan": self.plan.describe(),
                "marks": {k: round(v - self.started, 3) for k, v in self.journal.marks.items()},
                "journal": [s.to_dict() for s in self.journal.steps], "interrupted": self.journal.interrupted,
                "aborted": self.journal.aborted, "timeline": self.timeline, "alerts": self.alerts,
                "samples": [{"t": round(s.t - self.started, 3), "leader": s.leader, "vip_holders": s.vip_holders,
                             "breakers_open": s.breakers_open, "signals": s.signals}
                            for s in self.samples]}


def run(p: DrillPlan, events: DrillEvents | None = None) -> DrillResult:
    """Run a planned drill on its stack. Never raises for what happens during the drill: it is recorded.
    Raises DrillRefused before touching anything when the stack is not steady or busy."""
    events = events or DrillEvents()
    drill = p.drill
    with session(p.stack, steady_within_s=PREFLIGHT_STEADY_S, phase=events.phase, opened=p.substrate) as run_:
        substrate, journal = run_.substrate, run_.journal
        started = time.time()
        run_id = f"{dt.datetime.fromtimestamp(started, dt.timezone.utc):%Y%m%dT%H%M%SZ}-{drill.name}"
        ledgers = substrate.work_dir
        ledger = ledgers / f"{run_id}.sqlite"
        peak_rate = substrate.topology.peak.get("orders_per_second", 100)
        spike = next((actions.SpikeLoad(substrate, ledgers / f"{run_id}-spike.sqlite",
                                        round(peak_rate * f.multiplier, 2), f.duration_s,
                                        # closed-loop clients: enough of them to offer the rate at ~0.25 s a turn
                                        max(32, min(2000, int(peak_rate * f.multiplier / 4))))
                      for f in drill.faults if isinstance(f, faults.LoadSpike)), None)
        observer = Observer(substrate, guarded(events.sample))
        clients: Clients | None = None
        load_summary: dict[str, Any] | None = None
        sessions, refresh = load_shape(drill.load, substrate.topology)
        pager = Pager.start(substrate, ledgers / f"{run_id}-alerts.jsonl", journal)
        gateway_pages: dict[str, dict[str, str | None]] = {}  # before / after: each gateway's metrics page
        promotions: list[tuple[float, str]] = []  # Patroni's leader changes, read after the load

        def wind_down() -> None:
            """After every fault is undone: the recovery window's load, the clients stopped, steady again."""
            nonlocal load_summary
            if clients is not None:
                if not journal.interrupted and not journal.aborted and clients.sending:
                    run_.phase("recovery", f"{drill.timing.recovery_s:g} s of load after the restore")
                    _run_clients_until(journal.marks["restored"] + drill.timing.recovery_s, clients, journal)
                run_.phase("load", "stopping the clients")
                clients.trouble()  # a death or silence not yet seen is seen now, before the stop
                clients.stopped = True
                journal.marks["load_stopping"] = time.time()
                load_summary = actions.finish_load(clients.proc, timeout=60, stop=True)
                clients.poll()
                gateway_pages["after"] = substrate.probe.gateway_metrics()
                promotions.extend(substrate.probe.promotions() or [])  # unread: no promotion seen
            journal.marks["load_ended"] = time.time()
            observer.stopping.set()
            observer.join(timeout=10)
            run_.phase("steady state", "waiting for the stack to be steady again")
            with journal.step("steady state after the drill") as s:
                left = wait_steady(substrate, STEADY_TIMEOUT_S)
                if left:
                    raise RuntimeError("; ".join(left[:8]))
                s.detail = "steady"
            if pager is not None:
                run_.phase("alerts", "waiting for the on-call's resolved notifications")
                pager.wait_resolved(drill.alerts, journal.marks.get("restored"))

        try:
            with run_.running(wind_down):
                gateway_pages["before"] = substrate.probe.gateway_metrics()
                with journal.step("start load"):
                    # runs until stopped below, recovery_s after the restores (a ceiling in case we never get there)
                    clients = Clients(actions.start_load(substrate, ledger, p.rate, p.load_s + LOAD_CEILING_S,
                                                         sessions, drill.load.overnight_share, drill.load.limit_share,
                                                         assets_every_s=refresh))
                observer.start()
                journal.marks["load_started"] = time.time()
                if clients is not None:
                    run_.phase("load", "waiting for the clients to send their first orders")
                    with journal.step("clients sending before any fault") as s:
                        why = clients.wait_sending()
                        if why:  # nothing is touched: a drill without clients proves nothing
                            raise RuntimeError(why)
                        s.detail = f"first orders reported {time.time() - clients.started:.1f} s after the start"
                        # the baseline begins with the clients' sessions connected (what it is judged on)
                        held = clients.wait_connected(figures.LOAD_SHARE)
                        if held is not None:
                            s.detail += f"; {held:.0%} of the sessions connected {time.time() - clients.started:.1f} s"
                            s.detail += " after the start"
                if clients is not None and clients.sending:
                    journal.marks["clients_sending"] = time.time()
                    run_.phase("baseline", f"{drill.timing.baseline_s:g} s of load before any fault")
                    baseline_end = journal.marks["clients_sending"] + drill.timing.baseline_s
                    if _run_clients_until(baseline_end, clients, journal):
                        _inject_and_hold(drill, run_, clients, spike)
                    if clients.failure and not journal.aborted:
                        journal.aborted = f"the clients stopped: {clients.failure}"
                        run_.phase("abort", journal.aborted)
        finally:
            heard = pager.stop() if pager is not None else None
        reconciliation = None
        if not journal.interrupted and clients is not None and clients.sending:
            run_.phase("reconcile", "comparing the clients' ledger with the database")
            with journal.step("reconcile") as s:
                reconciliation = reconcile(substrate, [ledger] + ([spike.ledger] if spike else []),
                                            drill.timing.settle_s)
                s.detail = "ok" if reconciliation.get("ok") else "differences found"
        orders = _client_orders(substrate, ledger)
        window = figures.Window(journal.marks.get("injected", journal.marks.get("load_ended", started)),
                                journal.marks.get("restored", time.time()),
                                journal.marks.get("load_stopping", journal.marks.get("load_ended", time.time())),
                                journal.marks.get("clients_sending"))
        parked = (figures.parking(gateway_pages["before"], gateway_pages["after"])
                  if {"before", "after"} <= set(gateway_pages) else None)
        figs = (figures.compute(orders, observer.samples, window, clients.reports if clients else [], p.rate, sessions,
                                parked) if orders else None)
        if figs is not None:
            promoted = next((t for t, _ in promotions if t >= window.injected), None)
            figs.promoted_s = None if promoted is None else promoted - window.injected
            figs.first_answer_s = figures.first_answers(gateway_pages.get("after", {}), promoted, window.injected)
        checks = verdict_checks(drill, figs, reconciliation, journal, spike.summary if spike else None,
                                load=load_problems(clients, load_summary, figs, window),
                                watch=watch_problems(observer, window))
        heard_figures = None
        if pager is not None and "injected" in journal.marks:
            heard_figures = alerts.judge(drill.alerts, heard or [], window.injected, window.restored,
                                         journal.marks.get("load_started", started))
        checks += alerts.checks(heard_figures, drill.alerts, _unjudged(pager, journal))
        verdict = "interrupted" if journal.interrupted else ("pass" if all(c["ok"] for c in checks) else "fail")
        return DrillResult(run_id, p, journal, figs, reconciliation, verdict, checks,
                           figures.timeline(orders, journal.marks.get("load_started", started)), observer.samples,
                           load_summary, spike.summary if spike else None, started, time.time(),
                           dict(substrate.topology.peak), heard_figures.to_dict() if heard_figures else None)


def _unjudged(pager: Pager | None, journal: Journal) -> str | None:
    """Why what the on-call was sent cannot be judged (None: it can)."""
    if pager is None:
        return "the stack has no monitoring hosts: nobody was paged"
    if pager.failure:
        return pager.failure
    if "injected" not in journal.marks:
        return "no fault was injected"
    return None


def _run_clients_until(t: float, clients: Clients, journal: Journal) -> bool:
    """Let the clients run until `t`, watching them; False as soon as they stop running as they should (they
    died or went silent: what follows would prove nothing) or a Ctrl-C or SIGTERM noted while restoring."""
    while time.time() < t and not journal.interrupted:
        if clients.trouble():
            return False
        time.sleep(min(0.2, max(0.0, t - time.time())))
    return not journal.interrupted


def _inject_and_hold(drill: model.Drill, run_: FaultSession, clients: Clients,
                     spike: actions.SpikeLoad | None) -> None:
    """Inject each fault at its time, undo it when its duration is over, watch the abort condition and the
    clients (a drill whose clients died or went silent stops and restores at once)."""
    t0 = time.time()
    pending = sorted(drill.faults, key=lambda f: f.at_s)
    active: list[tuple[float, actions.Action]] = []
    while (pending or active) and not run_.journal.interrupted:  # a signal whose exception was lost is noted
        now = time.time() - t0
        while pending and pending[0].at_s <= now:
            fault = pending.pop(0)
            done = run_.inject(fault, spike)
            if done is not None:
                action, biting = done
                # held for its whole duration from when it bit: a fault cut short ends before what it was meant to
                # show (an eviction, say)
                active.append((biting + fault.duration_s, action))
        for due, action in list(active):
            if time.time() >= due:
                active.remove((due, action))
                run_.restore(action)
        if clients.trouble():
            return
        reason = abort_reason(drill, clients)
        if reason:
            run_.journal.aborted = reason
            run_.phase("abort", reason)
            return
        time.sleep(0.2)


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


