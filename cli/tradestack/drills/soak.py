"""The soak: the declared peak for a long time with no fault, counting what failed over anyway (issue 33).

Fast failover settings (Patroni's ttl 3 s and loop 1 s, etcd's 1 s election, HAProxy's 200 ms checks) buy
seconds at every real failure and risk a failover where there was none: a leader whose loop stalled on a busy
machine loses its lock. The soak runs the topology's peak through every site for `minutes` and counts, from each
part's own records: Patroni's leader changes (its /history), etcd's leader changes (each member's metrics),
HAProxy's database members marked down (each instance's statistics), the observer's time without a leader; and
how close the leader came to losing its lock (the longest gap between its renewals, from its log, against ttl).

The verdict passes only when the load ran as planned, the stack was watched and every one of those parts was
read before and after, and nothing failed over. Parsing is pure; `run` drives a substrate.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import ports
from ..adapters import systemd
from ..polling import each
from ..substrates import Substrate
from . import actions, figures
from .clients import Clients
from .observer import Observer

ETCD_LEADER_CHANGES = "etcd_server_leader_changes_seen_total"
# Patroni logs one line each loop; the leader's says it holds the lock (it renewed it just before)
RENEWAL = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO: "
                     r".*I am \((?P<me>[^)]+)\),? the leader with the lock")
STATS_SCRIPT = ("import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
                "s.sendall(b'show stat\\n'); print(b''.join(iter(lambda: s.recv(65536), b'')).decode())")


def etcd_leader_changes(page: str | None) -> int | None:
    """How many leader changes an etcd member has seen since it started (None: no page or no such series)."""
    value = figures.metric(page, ETCD_LEADER_CHANGES)
    return None if value is None else int(value)


def database_downs(stats: str | None) -> int | None:
    """UP-to-DOWN transitions of the database members one HAProxy has counted (its `orderdb` proxy's servers,
    `chkdown` in `show stat`); None when the statistics hold no such proxy."""
    if not stats:
        return None
    lines = [line for line in stats.splitlines() if line.strip()]
    header = next((line.lstrip("# ").split(",") for line in lines if line.startswith("# pxname")), None)
    if header is None or "chkdown" not in header:
        return None
    column = header.index("chkdown")
    rows = [line.split(",") for line in lines if line.startswith("orderdb,")]
    servers = [r for r in rows if r[1] not in ("FRONTEND", "BACKEND") and len(r) > column]
    if not servers:
        return None
    return sum(int(r[column] or 0) for r in servers)


def renewal_gaps(log: str, since: float, until: float, tz: dt.tzinfo = dt.timezone.utc) -> list[tuple[float, str]]:
    """(seconds since the previous renewal, who renewed) for each leader-lock renewal Patroni logged in
    [since, until] (epoch seconds; its log's times read in `tz`: the lab's and Debian's hosts keep UTC, and a
    log read in the wrong zone yields no renewal, which the verdict fails). A renewal by another member than the
    one before starts over (a leader change is counted apart)."""
    found: list[tuple[float, str]] = []
    last: tuple[float, str] | None = None
    for line in log.splitlines():
        m = RENEWAL.match(line)
        if not m:
            continue
        t = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=tz).timestamp()
        if not since <= t <= until:
            continue
        if last is not None and last[1] == m["me"]:
            found.append((t - last[0], m["me"]))
        last = (t, m["me"])
    return found


def _delta(before: Mapping[str, int | None], after: Mapping[str, int | None]) -> tuple[int, list[str]]:
    """The sum of each counter's growth, and the names not read both times (a counter that went down restarted:
    its value since counts)."""
    unread = sorted(k for k in set(before) | set(after) if before.get(k) is None or after.get(k) is None)
    total = 0
    for k, b in before.items():
        a = after.get(k)
        if k in unread or a is None or b is None:
            continue
        total += a - b if a >= b else a
    return total, unread


@dataclass
class SoakResult:
    stack: str
    minutes: float
    rate: float
    sessions: int
    started: float
    ended: float
    load: dict[str, Any] = field(default_factory=dict)          # the load generator's summary
    orders_planned: int = 0
    orders_sent: int = 0
    samples: int = 0
    watched: float = 0.0
    no_leader_s: float | None = None
    leader_changes: list[tuple[float, str]] = field(default_factory=list)   # Patroni's, during the soak
    history_read: bool = False                  # whether Patroni's /history answered after the soak
    etcd_leader_changes: int | None = None
    etcd_unread: list[str] = field(default_factory=list)
    database_downs: int | None = None
    haproxy_unread: list[str] = field(default_factory=list)
    ttl_s: float | None = None
    loop_wait_s: float | None = None
    renewals: int = 0
    longest_renewal_gap_s: float | None = None
    checks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return "pass" if self.checks and all(c["ok"] for c in self.checks) else "fail"

    @property
    def lock_margin_s(self) -> float | None:
        """How much of ttl was left at the leader's slowest renewal."""
        if self.ttl_s is None or self.longest_renewal_gap_s is None:
            return None
        return self.ttl_s - self.longest_renewal_gap_s

    def judge(self) -> None:
        def add(check: str, expected: str, actual: Any, ok: bool) -> None:
            self.checks.append({"check": check, "expected": expected, "actual": actual, "ok": bool(ok)})

        add("the load ran as planned", f">= {figures.LOAD_SHARE:.0%} of {self.orders_planned} orders",
            self.orders_sent,
            self.orders_planned > 0 and self.orders_sent >= figures.LOAD_SHARE * self.orders_planned)
        add("the stack was watched", f">= {figures.WATCH_SHARE:.0%} of the soak", round(self.watched, 4),
            self.watched >= figures.WATCH_SHARE)
        add("database leader changes (Patroni's history read)", "0",
            len(self.leader_changes) if self.history_read else "unread", self.history_read and not self.leader_changes)
        add("time without a database leader (s)", "0", self.no_leader_s, self.no_leader_s == 0)
        add("etcd leader changes (every member read)", "0",
            self.etcd_leader_changes if not self.etcd_unread else f"unread: {', '.join(self.etcd_unread)}",
            self.etcd_leader_changes == 0 and not self.etcd_unread)
        add("database members HAProxy marked down (every instance read)", "0",
            self.database_downs if not self.haproxy_unread else f"unread: {', '.join(self.haproxy_unread)}",
            self.database_downs == 0 and not self.haproxy_unread)
        add("the leader renewed its lock within ttl (its log read)",
            f"< ttl {self.ttl_s} s, {self.renewals} renewals", self.longest_renewal_gap_s,
            self.renewals > 0 and self.lock_margin_s is not None and self.lock_margin_s > 0)

    def to_dict(self) -> dict[str, Any]:
        return {"stack": self.stack, "verdict": self.verdict, "minutes": self.minutes, "rate": self.rate,
                "sessions": self.sessions, "started": self.started, "ended": self.ended,
                "orders": {"planned": self.orders_planned, "sent": self.orders_sent},
                "samples": self.samples, "watched": round(self.watched, 4), "no_leader_s": self.no_leader_s,
                "leader_changes": [{"at": t, "new_leader": who} for t, who in self.leader_changes],
                "history_read": self.history_read,
                "etcd_leader_changes": self.etcd_leader_changes, "etcd_unread": self.etcd_unread,
                "database_downs": self.database_downs, "haproxy_unread": self.haproxy_unread,
                "patroni": {"ttl_s": self.ttl_s, "loop_wait_s": self.loop_wait_s, "renewals": self.renewals,
                            "longest_renewal_gap_s": self.longest_renewal_gap_s,
                            "lock_margin_s": None if self.lock_margin_s is None else round(self.lock_margin_s, 3)},
                "load": self.load, "checks": self.checks}


def _etcd_counts(substrate: Substrate) -> dict[str, int | None]:
    def ask(host: Any) -> int | None:
        code, page = substrate.http_text(host.name, "GET", f"http://{host.lan_address}:{ports.ETCD_CLIENT}/metrics",
                                         timeout=2.0)
        return etcd_leader_changes(page) if code == 200 else None

    members = substrate.of("consensus")
    found = each(members, ask)
    return {m.name: found[m.name] for m in members}


def _haproxy_downs(substrate: Substrate) -> dict[str, int | None]:
    """Each HAProxy's count (every router and gateway host runs one): None where it did not answer."""
    proxies = substrate.of("router") + substrate.of("gateway")

    def ask(host: Any) -> int | None:
        sock = f"{substrate.settings.state_root}/{host.name}/haproxy/admin.sock"
        done = substrate.run(host.name, ["python3", "-c", STATS_SCRIPT, sock], timeout=10)
        return database_downs(done.stdout) if done.succeeded else None

    found = each(proxies, ask)
    return {h.name: found[h.name] for h in proxies}


def _patroni_log(substrate: Substrate, host: str, since: float) -> str:
    """The Patroni log of a database host since `since`: its supervisor's file, or its unit's journal."""
    if substrate.traits.supervisor == "supervisord":
        path = Path(substrate.settings.state_root) / host / "supervisor" / "log" / "patroni.log"
        return substrate.run(host, ["cat", str(path)], timeout=30).stdout
    return substrate.run(host, ["journalctl", "-q", "-o", "cat", "-u", systemd.unit("patroni"),
                                "--since", f"@{math.floor(since)}"], timeout=30).stdout


def run(substrate: Substrate, minutes: float, ledger: Path, progress: Any = None) -> SoakResult:
    """The topology's peak for `minutes` against every site, no fault; what failed over meanwhile, judged."""
    from .engine import load_shape
    from .model import Load

    say = progress or (lambda line: None)
    topology = substrate.topology
    rate = float(topology.peak.get("orders_per_second", 100))
    sessions, refresh = load_shape(Load(), topology)
    duration = minutes * 60
    result = SoakResult(substrate.name, minutes, rate, sessions, time.time(), 0.0)
    etcd_before, haproxy_before = _etcd_counts(substrate), _haproxy_downs(substrate)
    config = substrate.probe.dynamic_config()
    result.ttl_s, result.loop_wait_s = config.get("ttl"), config.get("loop_wait")
    observer = Observer(substrate, lambda sample: None)
    say(f"soak: {rate:g} orders/s, {sessions} sessions for {minutes:g} min on {substrate.name}")
    clients = Clients(actions.start_load(substrate, ledger, rate, duration, sessions, Load().overnight_share, 0.0,
                                         assets_every_s=refresh))
    observer.start()
    try:
        why = clients.wait_sending()
        started = time.time()
        result.started = started
        while why is None and time.time() < started + duration:
            if clients.trouble():
                break
            time.sleep(min(10.0, max(0.0, started + duration - time.time())))
            last = clients.reports[-1] if clients.reports else None
            say(f"soak: {time.time() - started:6.0f} s, {last.sent if last else 0} orders sent, "
                f"{len(observer.samples)} samples, leader {observer.samples[-1].leader if observer.samples else '?'}")
    finally:
        clients.stopped = True
        result.load = actions.finish_load(clients.proc, timeout=60, stop=True)
        clients.poll()
        observer.stopping.set()
        observer.join(timeout=10)
    result.ended = time.time()
    last = clients.reports[-1] if clients.reports else None
    result.orders_sent = last.sent if last else 0
    result.orders_planned = int(rate * max(0.0, (last.t if last else result.started) - result.started))
    result.samples = len(observer.samples)
    result.watched = figures.watched(observer.samples, result.started, result.ended)
    result.no_leader_s = figures.no_leader(observer.samples) if observer.samples else None
    history = substrate.probe.promotions()
    result.history_read = history is not None
    result.leader_changes = [(t, who) for t, who in history or [] if t >= result.started]
    result.etcd_leader_changes, result.etcd_unread = _delta(etcd_before, _etcd_counts(substrate))
    result.database_downs, result.haproxy_unread = _delta(haproxy_before, _haproxy_downs(substrate))
    gaps = [g for db in substrate.of("orderdb")
            for g in renewal_gaps(_patroni_log(substrate, db.name, result.started), result.started, result.ended)]
    result.renewals = len(gaps)
    result.longest_renewal_gap_s = round(max(g for g, _ in gaps), 3) if gaps else None
    result.judge()
    return result
