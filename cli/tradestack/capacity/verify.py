"""Measured capacity: drive the deployed stack at peak x headroom, with every site up and with each
site cut off in turn, and compare what it carried with what the topology declares.

The dynamic twin of `capacity check`: the static check trusts the declared per-instance capacity;
this one measures it, through the same client path (VIPs over the carriers) real apps use.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..drills import actions
from ..drills.engine import stack_lock, wait_steady
from ..drills.lab import Lab
from ..lab.stack import LabStack
from ..topology import load_topology
from .measured import MeasuredCapacity, ScenarioFigure, derive

CARRIED_SHARE = 0.95       # a scenario passes when clients got at least this share of the target acked
LATENCY_BOUND_MS = 250.0   # ... with p99 latency of acknowledged orders at or under this


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
    ok = acked_per_s >= CARRIED_SHARE * target and p99 is not None and p99 <= LATENCY_BOUND_MS
    why = [] if ok else [f"carried {acked_per_s:g}/s of {target:g}/s" if acked_per_s < CARRIED_SHARE * target
                         else "", f"p99 {p99} ms > {LATENCY_BOUND_MS:g} ms" if p99 is None or p99 > LATENCY_BOUND_MS
                         else ""]
    return Measurement(scenario, target, acked_per_s, latency.get("p50"), p99, int(summary.get("throttled", 0)),
                       int(summary.get("server_errors", 0)), int(summary.get("unknown", 0)), ok,
                       "; ".join(w for w in why if w), cut_site, sessions)


def scenarios(lab: Lab) -> list[str | None]:
    """None (every site up), then each site that serves clients or holds data, one at a time."""
    sites = [s.name for s in lab.topology.sites if any(h.site == s.name for h in lab.hosts.values())]
    return [None, *sites]


def verify(stack: str, *, fraction: float = 1.0, duration_s: float = 20.0, sessions: int = 64,
           only: list[str] | None = None,
           on_step: Callable[[str], None] = lambda s: None) -> list[Measurement]:
    """Measure each scenario in turn; every cut site is restored (and the stack steady) before the next."""
    lab = Lab(LabStack(stack))
    topology = lab.topology
    target = round(topology.required("orders_per_second") * fraction, 2)
    chosen = [s for s in scenarios(lab) if only is None or (s or "all") in only]
    results: list[Measurement] = []
    with stack_lock(stack):
        for site in chosen:
            name = "all sites up" if site is None else f"site {site} down"
            on_step(f"{name}: {target:g} orders/s for {duration_s:g} s")
            if site is not None:
                lab.links_down(f"site:{site}", True)
            try:
                if site is not None:
                    time.sleep(5)  # let clients, BGP and (if it was there) the database leader move first
                ledger = lab.ledger_dir / f"capacity-{site or 'all'}.sqlite"
                proc = actions.start_load(lab, ledger, target, duration_s, sessions, 0.0, 0.0)
                summary = actions.finish_load(proc, timeout=duration_s + 60)
                results.append(judge(name, target, duration_s, summary, site, sessions))
            finally:
                if site is not None:
                    on_step(f"{name}: restoring")
                    lab.links_down(f"site:{site}", False)
                    lab.wait_routing(30)
                    left = wait_steady(lab, 180)
                    if left:
                        results[-1:] = [_with_detail(m, "not steady after restore: " + "; ".join(left[:3]))
                                        for m in results[-1:]]
    return results


def _with_detail(m: Measurement, text: str) -> Measurement:
    m.ok, m.detail = False, "; ".join(x for x in (m.detail, text) if x)
    return m


def measured_capacity(stack: str, results: list[Measurement]) -> MeasuredCapacity:
    """The measured-capacity file's content for these results (what `--write-measured` writes)."""
    topology = load_topology(LabStack(stack).topology_path())
    figures = [ScenarioFigure(scenario=m.scenario, cut_site=m.cut_site, target_per_s=m.target_per_s,
                              acked_per_s=m.acked_per_s, p99_ms=m.p99_ms, within_bound=m.within_bound,
                              sessions=m.sessions) for m in results]
    return derive(topology, stack, figures, LATENCY_BOUND_MS)
