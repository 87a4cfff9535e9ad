"""A drill's figures, computed from what clients recorded and what the observer saw (pure).

Times are seconds since the epoch; figures are seconds relative to the first injection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

CLEAN_LATENCY_MS = 1000.0   # an order answered slower than this was not "served" from the client's view
SUSTAIN_S = 3.0             # service counts as recovered once this long passes with only clean orders


@dataclass(frozen=True)
class ClientOrder:
    sent: float            # first send, epoch seconds
    latency_ms: float
    outcome: str           # acked | rejected | refused | unknown
    attempts: int
    endpoint: str

    @property
    def clean(self) -> bool:
        """Served at once: acknowledged on the first attempt within the latency bound."""
        return self.outcome == "acked" and self.attempts == 1 and self.latency_ms <= CLEAN_LATENCY_MS

    @property
    def answered(self) -> float:
        return self.sent + self.latency_ms / 1000


@dataclass(frozen=True)
class Sample:
    t: float
    leader: str | None
    vip_holders: dict[str, str | None]
    breakers_open: int            # venue breakers not closed, over every router
    signals: dict[str, int]       # the substrate's own counters, e.g. BGP sessions Established (a withdrawn path)


@dataclass(frozen=True)
class Window:
    injected: float               # first fault applied
    restored: float               # last fault undone
    ended: float                  # load ended


@dataclass
class Figures:
    detection_s: float | None = None           # first visible reaction of the system after injection
    recovery_s: float | None = None            # injection to sustained clean service (None: never)
    no_leader_s: float = 0.0                   # time without a database leader
    vip_moves: dict[str, float] = field(default_factory=dict)   # site -> injection to new holder
    orders: int = 0
    client_errors: int = 0                     # orders not served at once (retried, refused, failed)
    error_rate: float = 0.0
    latency_p99_ms: dict[str, float | None] = field(default_factory=dict)   # before / during / after
    served_by: dict[str, int] = field(default_factory=dict)                 # endpoint -> acked orders
    # site -> its cluster's reaction (not_ready_s, evicted_s, replacement_ready_s), for clusters that reacted
    kubernetes: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**({"kubernetes": {site: {k: _r(v) for k, v in f.items()} for site, f in self.kubernetes.items()}}
                   if self.kubernetes else {}),"detection_s": _r(self.detection_s), "recovery_s": _r(self.recovery_s),
                "no_leader_s": _r(self.no_leader_s), "vip_moves_s": {k: _r(v) for k, v in self.vip_moves.items()},
                "orders": self.orders, "client_errors": self.client_errors, "error_rate": round(self.error_rate, 4),
                "latency_p99_ms": {k: _r(v) for k, v in self.latency_p99_ms.items()}, "served_by": self.served_by}


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))]


def recovery(orders: list[ClientOrder], injected: float, ended: float) -> float | None:
    """Seconds from injection until clients were served cleanly for good: the last unclean order sent
    after injection was answered then. 0 when clients never noticed; None when service never came back
    (an unclean order within SUSTAIN_S of the end of the load)."""
    after = [o for o in orders if o.answered >= injected]
    unclean = [o for o in after if not o.clean]
    if not unclean:
        return 0.0
    last = max(o.answered for o in unclean)
    if last > ended - SUSTAIN_S or not any(o.clean and o.sent > last for o in after):
        return None
    return last - injected


def detection(samples: list[Sample], injected: float) -> float | None:
    """First sample after injection that differs from the last one before it in leader, VIP holders,
    open breakers or the substrate's signals (e.g. BGP sessions): when the system visibly reacted."""
    before = [s for s in samples if s.t <= injected]
    if not before:
        return None
    base = before[-1]
    for s in samples:
        if s.t > injected and (s.leader != base.leader or s.vip_holders != base.vip_holders
                               or s.breakers_open != base.breakers_open
                               or s.signals != base.signals):
            return s.t - injected
    return None


def no_leader(samples: list[Sample]) -> float:
    """Total time the observer saw no database leader (each sample stands until the next)."""
    total = 0.0
    for cur, nxt in zip(samples, samples[1:]):
        if cur.leader is None:
            total += nxt.t - cur.t
    return total


def vip_moves(samples: list[Sample], injected: float) -> dict[str, float]:
    """Per site whose VIP changed hands after injection: seconds until the new holder had it."""
    before = [s for s in samples if s.t <= injected]
    if not before:
        return {}
    base = before[-1].vip_holders
    moves: dict[str, float] = {}
    for s in samples:
        if s.t <= injected:
            continue
        for site, holder in s.vip_holders.items():
            if site not in moves and holder is not None and holder != base.get(site):
                moves[site] = s.t - injected
    return moves


def kubernetes(samples: list[Sample], injected: float) -> dict[str, dict[str, float | None]]:
    """Per site cluster that reacted after injection, read from the substrate's `k8s.SITE.*` signals: seconds
    until its node was NotReady, until its pods were evicted (marked for deletion), and until a replacement
    created after injection was ready with as many pods ready as before (None: not within the drill). Creation
    times are whole seconds: a pod created in the second of the injection counts as a replacement."""
    before = [s for s in samples if s.t <= injected]
    if not before:
        return {}
    base = before[-1].signals
    sites = sorted(k.split(".")[1] for k in base if k.startswith("k8s.") and k.endswith(".nodes_ready"))
    found: dict[str, dict[str, float | None]] = {}
    for site in sites:
        def key(what: str) -> str:
            return f"k8s.{site}.{what}"
        not_ready: float | None = None
        evicted: float | None = None
        replaced: float | None = None
        for s in samples:
            if s.t <= injected or key("nodes_ready") not in s.signals:
                continue
            now = s.signals
            if not_ready is None and now[key("nodes_ready")] < base[key("nodes_ready")]:
                not_ready = s.t - injected
            if evicted is None and now.get(key("pods_evicted"), 0) > base.get(key("pods_evicted"), 0):
                evicted = s.t - injected
            if (replaced is None and (not_ready is not None or evicted is not None)
                    and now.get(key("newest_ready"), 0) >= math.floor(injected)
                    and now.get(key("pods_ready"), 0) >= base.get(key("pods_ready"), 0)):
                replaced = s.t - injected
        if not_ready is not None or evicted is not None:
            found[site] = {"not_ready_s": not_ready, "evicted_s": evicted, "replacement_ready_s": replaced}
    return found


def compute(orders: list[ClientOrder], samples: list[Sample], window: Window) -> Figures:
    f = Figures()
    f.orders = len(orders)
    f.client_errors = sum(1 for o in orders if not o.clean)
    f.error_rate = f.client_errors / f.orders if f.orders else 0.0
    phases = {"before": [o for o in orders if o.sent < window.injected],
              "during": [o for o in orders if window.injected <= o.sent < window.restored],
              "after": [o for o in orders if o.sent >= window.restored]}
    f.latency_p99_ms = {k: percentile([o.latency_ms for o in v if o.outcome == "acked"], 0.99)
                        for k, v in phases.items()}
    for o in orders:
        if o.outcome == "acked":
            f.served_by[o.endpoint] = f.served_by.get(o.endpoint, 0) + 1
    f.recovery_s = recovery(orders, window.injected, window.ended)
    f.detection_s = detection(samples, window.injected)
    f.no_leader_s = no_leader(samples)
    f.vip_moves = vip_moves(samples, window.injected)
    f.kubernetes = kubernetes(samples, window.injected)
    return f


def timeline(orders: list[ClientOrder], start: float, bin_s: float = 0.5) -> list[dict[str, Any]]:
    """Per bin of send time: orders acked, not served at once, and p99 latency of the acked."""
    if not orders:
        return []
    bins: dict[int, list[ClientOrder]] = {}
    for o in orders:
        bins.setdefault(int((o.sent - start) // bin_s), []).append(o)
    return continuous([{"t": round(k * bin_s, 3), "acked": sum(o.outcome == "acked" for o in v),
                        "errors": sum(not o.clean for o in v),
                        "p99_ms": _r(percentile([o.latency_ms for o in v if o.outcome == "acked"], 0.99))}
                       for k, v in sorted(bins.items())], bin_s)


def continuous(rows: list[dict[str, Any]], bin_s: float = 0.5) -> list[dict[str, Any]]:
    """A bin in which nothing was sent (every client waiting on an answer) is a bin of zero orders, not a
    straight line drawn from the bin before it to the bin after."""
    if not rows:
        return []
    have = {round(r["t"] / bin_s): r for r in rows}
    first, last = min(have), max(have)
    return [have.get(k) or {"t": round(k * bin_s, 3), "acked": 0, "errors": 0, "p99_ms": None}
            for k in range(first, last + 1)]
