"""A drill's figures, computed from what clients recorded and what the observer saw (pure).

Times are seconds since the epoch; figures are seconds relative to the first injection.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from ..refstack.ledger import SERVED_AT_ONCE_MS as CLEAN_LATENCY_MS  # slower than this was not "served"
from .clients import Report

SUSTAIN_S = 3.0             # service counts as recovered once this long passes with only clean orders; as long
                            # without a clean answer is not service either
LOAD_SHARE = 0.95           # before the fault and after the restore: orders sent and sessions held vs planned
WATCH_SHARE = 0.90          # the share of the drill the observer's samples must cover
# a moment counts as watched when a sample was taken within this before it: the observer asks every 0.5 s, but over
# SSH at peak a sample of a dozen hosts takes 2-3 s (measured through the hosts substrate), and slower is a blind spot
WATCH_GAP_S = 5.0


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
    ended: float                  # load ended (told to stop)
    start: float | None = None    # clients seen sending (the baseline begins)


@dataclass(frozen=True)
class PhaseLoad:
    """What the clients offered in one phase of a drill against what was planned for it."""

    seconds: float
    planned: int                  # orders: the drill's rate x the phase's length
    sent: int                     # orders first sent in the phase (the clients' ledger)
    sessions_planned: int
    sessions_held: int | None     # sessions connected at the phase's end (the clients' last report by then)

    def shortfalls(self) -> list[str]:
        """What falls short of LOAD_SHARE of the plan (nothing to judge is a shortfall too)."""
        if self.planned < 1:
            return [f"nothing planned in {self.seconds:.1f} s"]
        out = []
        if self.sent < math.floor(LOAD_SHARE * self.planned):  # floor: an order at the phase's edge is no shortfall
            out.append(f"sent {self.sent} of {self.planned} planned orders ({self.sent / self.planned:.0%})")
        if self.sessions_held is None:
            out.append("no progress report from the clients")
        elif self.sessions_held < LOAD_SHARE * self.sessions_planned:
            out.append(f"held {self.sessions_held} of {self.sessions_planned} sessions")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 3), "planned": self.planned, "sent": self.sent,
                "sessions_planned": self.sessions_planned, "sessions_held": self.sessions_held}


def phase_load(orders: list[ClientOrder], reports: list[Report], start: float, end: float, rate: float,
               sessions: int) -> PhaseLoad:
    """The clients' load in [start, end): orders sent by the ledger, sessions held by their last report by its end
    (reports come twice a second; a phase may be shorter)."""
    by_end = [r for r in reports if r.t <= end]
    return PhaseLoad(max(0.0, end - start), int(rate * max(0.0, end - start)),
                     sum(1 for o in orders if start <= o.sent < end), sessions,
                     by_end[-1].connected if by_end else None)


def longest_silence(reports: list[Report], start: float, end: float) -> float:
    """The longest time in [start, end] without a progress report from the clients."""
    times = [start] + [r.t for r in reports if start < r.t < end] + [end]
    return max(b - a for a, b in zip(times, times[1:])) if end > start else 0.0


def watched(samples: list[Sample], start: float, end: float, gap: float = WATCH_GAP_S) -> float:
    """The share of [start, end] within `gap` seconds after one of the observer's samples (0 with none)."""
    if end <= start:
        return 0.0
    covered, reach = 0.0, start
    for s in sorted(x.t for x in samples):
        lo, hi = max(s, reach), min(s + gap, end)
        if hi > lo:
            covered += hi - lo
            reach = hi
    return covered / (end - start)


PARKED = "tradestack_gateway_orders_parked"        # counter: new orders that waited for a writable leader
PARKED_WAIT = "tradestack_gateway_parked_wait_seconds"  # histogram: how long each waited before its commit


@dataclass(frozen=True)
class Parking:
    """Orders the gateways parked during a drill (no writable database leader) and how long they waited, from
    each gateway's own metrics read before the load and after it."""

    orders: int = 0
    wait_p99_s: float | None = None   # the bucket bound holding the 99th percentile (None: nothing parked, or
                                      # above the last finite bound)
    wait_mean_s: float | None = None
    gateways: int = 0                 # gateways read both before and after
    unread: tuple[str, ...] = ()      # gateways that did not answer one of the two reads

    def to_dict(self) -> dict[str, Any]:
        return {"orders": self.orders, "wait_p99_s": _r(self.wait_p99_s), "wait_mean_s": _r(self.wait_mean_s),
                "gateways": self.gateways, "unread": list(self.unread)}


def metric(page: str | None, name: str) -> float | None:
    """The value of sample `name` on a Prometheus text page (its first, for a labelled one); None when the page
    or the sample is missing."""
    return next((sample.value for family in text_string_to_metric_families(page or "")
                 for sample in family.samples if sample.name == name), None)


def _parking_counts(text: str) -> tuple[float, dict[float, float], float, float]:
    """(parked orders, cumulative wait buckets by bound, wait sum, wait count) from one gateway's page."""
    parked, buckets, total, count = 0.0, {}, 0.0, 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{PARKED}_total":
                parked = sample.value
            elif sample.name == f"{PARKED_WAIT}_bucket":
                buckets[float(sample.labels["le"])] = sample.value
            elif sample.name == f"{PARKED_WAIT}_sum":
                total = sample.value
            elif sample.name == f"{PARKED_WAIT}_count":
                count = sample.value
    return parked, buckets, total, count


def parking(before: Mapping[str, str | None], after: Mapping[str, str | None]) -> Parking:
    """What the gateways parked between two reads of their metrics pages (gateway -> page, None: no answer). A
    gateway whose counters went down restarted in between: what it counted since is its share."""
    unread = tuple(sorted(g for g in set(before) | set(after) if before.get(g) is None or after.get(g) is None))
    read = sorted(g for g in before if g not in unread)
    orders, total, count, buckets = 0.0, 0.0, 0.0, {}
    for gateway in read:
        b, a = _parking_counts(before[gateway] or ""), _parking_counts(after[gateway] or "")
        restarted = a[0] < b[0] or a[3] < b[3]
        base = (0.0, {}, 0.0, 0.0) if restarted else b
        orders += a[0] - base[0]
        total += a[2] - base[2]
        count += a[3] - base[3]
        for bound, n in a[1].items():
            buckets[bound] = buckets.get(bound, 0.0) + n - base[1].get(bound, 0.0)
    p99 = None
    if count > 0:
        bound = next((b for b in sorted(buckets) if buckets[b] >= 0.99 * count), math.inf)
        p99 = None if math.isinf(bound) else bound
    return Parking(int(round(orders)), p99, total / count if count > 0 else None, len(read), unread)


BACK = "tradestack_gateway_database_back_timestamp_seconds"  # gauge: when the database last answered again


def first_answers(pages: Mapping[str, str | None], promoted: float | None, since: float) -> dict[str, float | None]:
    """Per gateway: seconds from the promotion (epoch) to its first database answer after being away, from its
    metrics page read after the drill. Patroni records a promotion once it is done, so a gateway may answer a
    few hundredths of a second before it (a negative figure). None where it did not answer, or its last return
    was before `since` (the injection: it never lost the database in this drill, or restarted since)."""
    found: dict[str, float | None] = {}
    for gateway, page in sorted(pages.items()):
        back = metric(page, BACK) or 0.0
        found[gateway] = back - promoted if promoted is not None and back >= since else None
    return found


@dataclass
class Figures:
    """A drill's figures. Those the observer's samples cannot support (it did not watch WATCH_SHARE of the
    drill) are None, never 0: "not seen" is not "did not happen"."""

    detection_s: float | None = None           # first visible reaction of the system after injection
    recovery_s: float | None = None            # injection to sustained clean service (None: never)
    no_leader_s: float | None = None           # time without a database leader
    vip_moves: dict[str, float] | None = None  # site -> injection to new holder
    orders: int = 0
    client_errors: int = 0                     # orders not served at once (retried, refused, failed, slow)
    error_rate: float = 0.0
    # orders a client had to try again or never got acknowledged, however long the one try took (a parked order
    # answered after seconds is neither), and orders planned but never sent, over all orders planned or sent
    failed_or_retried: int = 0
    failed_or_retried_rate: float = 0.0
    latency_p99_ms: dict[str, float | None] = field(default_factory=dict)   # before / during / after
    served_by: dict[str, int] = field(default_factory=dict)                 # endpoint -> acked orders
    # site -> its cluster's reaction (not_ready_s, evicted_s, replacement_ready_s), for clusters that reacted
    kubernetes: dict[str, dict[str, float | None]] = field(default_factory=dict)
    samples: int = 0                           # the observer's samples over the drill
    watched: float = 0.0                       # the share of the drill they cover (WATCH_GAP_S each)
    load: dict[str, PhaseLoad] = field(default_factory=dict)   # baseline, fault, after -> the clients' load
    parked: Parking | None = None               # the gateways' parked orders (None: not read)
    promoted_s: float | None = None             # injection to Patroni's record of a new leader (None: none)
    first_answer_s: dict[str, float | None] = field(default_factory=dict)  # gateway -> promotion to its first
                                                                           # database answer

    def to_dict(self) -> dict[str, Any]:
        return {**({"kubernetes": {site: {k: _r(v) for k, v in f.items()} for site, f in self.kubernetes.items()}}
                   if self.kubernetes else {}),"detection_s": _r(self.detection_s), "recovery_s": _r(self.recovery_s),
                "no_leader_s": _r(self.no_leader_s),
                "vip_moves_s": None if self.vip_moves is None else {k: _r(v) for k, v in self.vip_moves.items()},
                "orders": self.orders, "client_errors": self.client_errors, "error_rate": round(self.error_rate, 4),
                "failed_or_retried": self.failed_or_retried,
                "failed_or_retried_rate": round(self.failed_or_retried_rate, 4),
                "latency_p99_ms": {k: _r(v) for k, v in self.latency_p99_ms.items()}, "served_by": self.served_by,
                "samples": self.samples, "watched": round(self.watched, 4),
                "load": {k: v.to_dict() for k, v in self.load.items()},
                "parked": None if self.parked is None else self.parked.to_dict(),
                "promoted_s": _r(self.promoted_s),
                "first_answer_s": {k: _r(v) for k, v in self.first_answer_s.items()}}


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))]


def recovery(orders: list[ClientOrder], injected: float, ended: float) -> float | None:
    """Seconds from injection until clients were served cleanly for good: the last moment service was bad (an
    unclean order answered, or the end of SUSTAIN_S or more without a clean answer). 0 only when orders were
    answered cleanly throughout; None when service never came back (no clean answer after injection, or a bad
    moment within SUSTAIN_S of the end of the load, or clients that went silent before it)."""
    after = [o for o in orders if o.answered >= injected]
    clean = sorted(o.answered for o in after if o.clean)
    if not clean or ended - clean[-1] > SUSTAIN_S:
        return None
    last_bad = max((o.answered for o in after if not o.clean), default=None)
    for before, answer in zip([injected] + clean, clean):
        if answer - before > SUSTAIN_S:  # silence: nobody served until this answer
            last_bad = answer if last_bad is None else max(last_bad, answer)
    if last_bad is None:
        return 0.0
    if last_bad > ended - SUSTAIN_S or not any(o.clean and o.sent > last_bad for o in after):
        return None
    return last_bad - injected


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


def compute(orders: list[ClientOrder], samples: list[Sample], window: Window, reports: list[Report] | None = None,
            rate: float = 0.0, sessions: int = 0, parked: Parking | None = None) -> Figures:
    f = Figures(parked=parked)
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
    start = window.start if window.start is not None else min((o.sent for o in orders), default=window.injected)
    f.samples = len(samples)
    f.watched = watched(samples, start, window.ended)
    if f.watched >= WATCH_SHARE:  # otherwise the samples cannot support these figures
        f.detection_s = detection(samples, window.injected)
        f.no_leader_s = no_leader(samples)
        f.vip_moves = vip_moves(samples, window.injected)
        f.kubernetes = kubernetes(samples, window.injected)
    if reports is not None:
        f.load = {"baseline": phase_load(orders, reports, start, window.injected, rate, sessions),
                  "fault": phase_load(orders, reports, window.injected, window.restored, rate, sessions),
                  "after": phase_load(orders, reports, window.restored, window.ended, rate, sessions)}
    unsent = sum(max(0, phase.planned - phase.sent) for phase in f.load.values())
    f.failed_or_retried = sum(1 for o in orders if o.outcome != "acked" or o.attempts > 1) + unsent
    f.failed_or_retried_rate = f.failed_or_retried / (f.orders + unsent) if f.orders + unsent else 0.0
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
