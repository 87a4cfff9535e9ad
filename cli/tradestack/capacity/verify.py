"""Measured capacity: drive the deployed stack at peak x headroom, with every site up and with each
site cut off in turn, and compare what it carried with what the topology declares.

The dynamic twin of `capacity check`: the static check trusts the declared per-instance capacity;
this one measures it, through the same client path (VIPs over the carriers) real apps use.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import ports
from ..drills import actions
from ..drills.policy import DrillPolicy, Reach
from ..drills.policy import authorize as policy_authorize
from ..drills.session import session
from ..drills.steady import wait_steady
from ..polling import until_clear
from ..substrates import Substrate, open_stack
from ..substrates.faults import LinkDown
from .measured import CARRIED_SHARE, MeasuredCapacity, ScenarioFigure, derive

LATENCY_BOUND_MS = 250.0   # a scenario passes when it carried its target (CARRIED_SHARE) with p99 at or under this
ANSWERED_SHARE = 0.999     # ... and this share of the sessions' balance-screen refreshes answered live
SERVE_WITHIN_S = 90.0      # a cut site's survivors must serve within this before they are measured
STEADY_WITHIN_S = 120.0    # before anything is measured, the stack must be steady (as before a drill; else nothing
                           # is measured: a stack still settling, or already broken, says nothing of its capacity)
WARMUP_S = 15.0            # unmeasured load first, in each scenario: the sessions connect, pools and caches warm


@dataclass
class Measurement:
    scenario: str            # "all sites up" or "site X down"
    target_per_s: float
    acked_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    throttled: int           # 429 answers: back-pressure, not failure
    server_errors: int
    unknown: int
    ok: bool
    detail: str = ""
    cut_site: str | None = None
    sessions: int = 0
    refreshes_answered: float | None = None  # share of balance-screen refreshes answered live
    warmup_p99_ms: float | None = None       # p99 while the sessions were connecting (not judged)

    @property
    def within_bound(self) -> bool:
        return self.p99_ms is not None and self.p99_ms <= LATENCY_BOUND_MS

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def judge(scenario: str, target: float, duration_s: float, summary: dict[str, Any], cut_site: str | None = None,
          sessions: int = 0) -> Measurement:
    """One load run's summary against its target (pure)."""
    if not summary.get("ok", True) or "acked" not in summary:
        return Measurement(scenario, target, 0.0, None, None, 0, 0, 0, False,
                           f"the load generator failed: {summary.get('error', 'no summary')}", cut_site, sessions)
    latency = summary.get("latency_ms") or {}
    acked_per_s = round(summary["acked"] / duration_s, 2)
    p99 = latency.get("p99")
    views = sum(int(summary.get(f"assets_{v}", 0)) for v in ("ok", "stale", "unavailable", "bad"))
    answered = round(int(summary.get("assets_ok", 0)) / views, 5) if views else None
    held = answered is None or answered >= ANSWERED_SHARE
    ok = acked_per_s >= CARRIED_SHARE * target and p99 is not None and p99 <= LATENCY_BOUND_MS and held
    why = [] if ok else [f"carried {acked_per_s:g}/s of {target:g}/s" if acked_per_s < CARRIED_SHARE * target
                         else "", f"p99 {p99} ms > {LATENCY_BOUND_MS:g} ms" if p99 is None or p99 > LATENCY_BOUND_MS
                         else "", "" if held else f"balance screens answered {answered:.2%} < {ANSWERED_SHARE:.1%}"]
    warmup = (summary.get("warmup") or {}).get("latency_ms") or {}
    return Measurement(scenario, target, acked_per_s, latency.get("p50"), p99, int(summary.get("throttled", 0)),
                       int(summary.get("server_errors", 0)), int(summary.get("unknown", 0)), ok,
                       "; ".join(w for w in why if w), cut_site, sessions, answered, warmup.get("p99"))


def survivors_not_serving(stack: Substrate, cut: str) -> list[str]:
    """Empty once the sites that are not cut off serve: a database primary among them (Patroni's word, asked
    from one of their routers) whose commits no longer wait for a synchronous standby in the cut site, and a VIP
    of theirs that answers ready to the clients; else why not.

    The second condition is what a client sees: with a cut-off synchronous standby the primary answers
    /primary at once, but every commit waits until its WAL sender times out and Patroni drops that standby
    from synchronous_standby_names (wal_sender_timeout plus a loop, ~6 s in the lab)."""
    probe = next((r for r in stack.of("router") if r.site != cut), None)
    if probe is not None:
        survivors = [db for db in stack.of("orderdb") if db.site != cut]
        if not any(stack.http(probe.name, "GET", f"http://{db.lan_address}:{ports.PATRONI}/primary",
                              timeout=0.5)[0] == 200 for db in survivors):
            return [f"no database primary outside {cut} yet"]
        waited_on = sync_standbys_in(stack.probe.cluster_members(probe.name, survivors),
                                     {h.name: h.site for h in stack.hosts.values()}, cut)
        if waited_on:
            return [f"commits still wait for synchronous standby {', '.join(waited_on)} in {cut}"]
    answers = []
    for site in sorted(stack.vips):
        if site != cut:
            code, body = stack.probe.vip_readiness(site)
            if code == 200:
                return []
            said = _answer(f"{site}:", code, body)
            if code and not body:  # the load balancer's own page: no gateway up behind it; ask them past it
                said += " from its load balancer, whose gateways answer: " + ", ".join(
                    _answer(g.name.removeprefix(f"{stack.name}-"), *stack.probe.gateway_readiness(g))
                    for g in stack.of("gateway") if g.site == site)
            answers.append(said)
    return [f"no site but {cut} answers ready on its VIP ({'; '.join(answers)})"]


def _answer(who: str, code: int, body: Any) -> str:
    return f"{who} {code or 'no answer'}" + (f" {json.dumps(body, sort_keys=True)}" if body else "")


def sync_standbys_in(members: list[dict[str, Any]], sites: Mapping[str, str | None], cut: str) -> list[str]:
    """The synchronous standbys (Patroni's /sync key, whatever their last recorded state) that sit in `cut`."""
    return sorted(m["name"] for m in members if m.get("role") == "sync_standby" and sites.get(m.get("name", "")) == cut)


def scenarios(stack: Substrate) -> list[str | None]:
    """None (every site up), then each site that serves clients or holds data, one at a time."""
    sites = [s.name for s in stack.topology.sites if any(h.site == s.name for h in stack.hosts.values())]
    return [None, *sites]


def authorize(stack: str, *, only: list[str] | None = None, duration_s: float = 20.0, warmup_s: float = WARMUP_S,
              yes: bool = False, now: Any = None) -> None:
    """Cutting sites off is a drill: a stack that is not a lab must allow drills, be within a change window for
    the whole run and a blast radius of one site, and the operator must confirm (DrillRefused, nothing touched)."""
    stack_ = open_stack(stack)
    cut = [s for s in scenarios(stack_) if s is not None and (only is None or s in only)]
    runs = len([s for s in scenarios(stack_) if only is None or (s or "all") in only])
    policy = DrillPolicy() if stack_.disposable else DrillPolicy.from_config(stack_.config())
    # one site at a time: the blast radius is one site; the run lasts each scenario's load and a failover's wait
    policy_authorize(stack_.disposable, policy, Reach(sites=frozenset(cut[:1])),
                     runs * (warmup_s + duration_s) + len(cut) * (SERVE_WITHIN_S + 180), yes, now)


def verify(stack: str, *, fraction: float = 1.0, duration_s: float = 20.0, sessions: int | None = None,
           only: list[str] | None = None, warmup_s: float = WARMUP_S,
           on_step: Callable[[str], None] = lambda s: None) -> list[Measurement]:
    """Measure each scenario in turn, in the drills' frame (drills/session.py: the stack's lock, a steady stack
    to begin with, every cut undone whatever happens, Ctrl-C and SIGTERM ending in restore); every cut site is
    restored, and the stack steady again, before the next.

    Clients: the required order rate (peak x headroom x `fraction`) over the required sessions (likewise), each
    session holding its connection and refreshing its balance screen as often as the topology declares. Each
    scenario's load runs `warmup_s` first, not measured, in the same client process: the sessions open their
    connections then and hold them into the measured window (what is measured is sessions held, not a thousand
    apps connecting at once, which on this machine slows every order for the first seconds: that figure is kept
    apart, as `warmup_p99_ms`), and pools and caches are warm."""
    scenario = [""]

    def phase(name: str, detail: str = "") -> None:
        label = "restoring" if name == "restore" else name
        on_step(": ".join(x for x in (scenario[0], label, detail) if x))

    results: list[Measurement] = []
    with session(stack, steady_within_s=STEADY_WITHIN_S, phase=phase, what="capacity verify") as run_:
        lab = run_.substrate
        topology = lab.topology
        target = round(topology.required("orders_per_second") * fraction, 2)
        if sessions is None:
            sessions = max(1, round(topology.required("sessions") * fraction)) if "sessions" in topology.peak else 64
        refresh = topology.session_refresh_s
        for site in [s for s in scenarios(lab) if only is None or (s or "all") in only]:
            name = scenario[0] = "all sites up" if site is None else f"site {site} down"
            on_step(f"{name}: {target:g} orders/s over {sessions} sessions for {duration_s:g} s"
                    + (f" after {warmup_s:g} s of the same load, not measured" if warmup_s > 0 else ""))

            def steady_again(cut: str | None = site) -> None:
                if cut is None or run_.journal.interrupted:
                    return
                left = wait_steady(lab, 180)
                if left:
                    results[-1:] = [_with_detail(m, "not steady after restore: " + "; ".join(left[:3]))
                                    for m in results[-1:]]

            with run_.running(steady_again):
                left: list[str] = []  # why the survivors of a cut did not serve yet
                if site is not None:
                    # measured once the survivors serve: the failover itself is the drills' part
                    if run_.inject(LinkDown(kind="link-down", group=f"site:{site}")) is None:
                        failed = run_.journal.steps[-1]
                        results.append(_with_detail(Measurement(name, target, 0.0, None, None, 0, 0, 0, False,
                                                                cut_site=site, sessions=sessions),
                                                    f"the site could not be cut off: {failed.detail}"))
                        continue
                    waited = time.monotonic()
                    left = until_clear(lambda: survivors_not_serving(lab, site), SERVE_WITHIN_S, interval=1.0)
                    on_step(f"{name}: survivors serve after {time.monotonic() - waited:.0f} s; "
                            f"{target:g} orders/s for {duration_s:g} s" if not left else f"{name}: {left[0]}")
                ledger = lab.work_dir / f"capacity-{site or 'all'}.sqlite"
                proc = actions.start_load(lab, ledger, target, duration_s, sessions, 0.0, 0.0, assets_every_s=refresh,
                                          warmup_s=warmup_s)
                summary = actions.finish_load(proc, timeout=warmup_s + duration_s + 60, stop_on_interrupt=True)
                results.append(judge(name, target, duration_s, summary, site, sessions))
                if left:  # measured anyway, and the verdict says why it may have carried nothing
                    results[-1:] = [_with_detail(results[-1], f"survivors did not serve within {SERVE_WITHIN_S:g} s "
                                                              f"of the cut: {left[0]}")]
            if run_.journal.interrupted:
                raise KeyboardInterrupt(run_.journal.interrupted)
    return results


def _with_detail(m: Measurement, text: str) -> Measurement:
    m.ok, m.detail = False, "; ".join(x for x in (m.detail, text) if x)
    return m


def measured_capacity(stack: str, results: list[Measurement]) -> MeasuredCapacity:
    """The measured-capacity file's content for these results (what `--write-measured` writes)."""
    topology = open_stack(stack).topology
    figures = [ScenarioFigure(scenario=m.scenario, cut_site=m.cut_site, target_per_s=m.target_per_s,
                              acked_per_s=m.acked_per_s, p99_ms=m.p99_ms, within_bound=m.within_bound,
                              sessions=m.sessions if (m.refreshes_answered or 0) >= ANSWERED_SHARE else 0)
               for m in results]
    return derive(topology, stack, figures, LATENCY_BOUND_MS, sessions_measured=True)
