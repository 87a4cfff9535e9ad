"""Where the lab's CPU goes: the kernel's own per-process accounting, grouped by lab host and component.

Every lab host is a network namespace, so a process belongs to the host whose namespace it runs in
(`/proc/PID/ns/net` against `/run/netns/NAME`). CPU time is `utime + stime` from `/proc/PID/stat`.
Processes that end between two snapshots keep the last value seen (`Sampler` polls), so short-lived
ones (a load generator, a sync) are not lost; processes that start and end between polls are.
"""

from __future__ import annotations

import os
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

NETNS_DIR = Path("/run/netns")
TICKS_PER_S = os.sysconf("SC_CLK_TCK")

# (substring of the command line, component), first match wins; a host's service tells the rest
_BY_ARGS = (
    ("refstack load", "load generator"), ("refstack serve gateway", "gateway"), ("refstack serve router", "router"),
    ("refstack serve venue", "venue"), ("patroni", "patroni"), ("supervisord", "supervisord"),
)
_BY_COMM = {"postgres": "postgres", "etcd": "etcd", "haproxy": "haproxy", "keepalived": "keepalived",
            "bird": "bird", "sshd": "sshd", "prometheus": "prometheus", "prometheus-alert": "alertmanager"}


def component(comm: str, args: str) -> str:
    """What a process is, from its command name and line (pure)."""
    for needle, name in _BY_ARGS:
        if needle in args:
            return name
    return _BY_COMM.get(comm, comm or "other")


@dataclass(frozen=True)
class Proc:
    pid: int
    start: int      # start time in ticks since boot: a pid reused is another process
    host: str
    component: str
    ticks: int


def _namespaces(prefix: str) -> dict[tuple[int, int], str]:
    found = {}
    for entry in NETNS_DIR.glob(f"{prefix}*"):
        try:
            st = entry.stat()
        except OSError:
            continue
        found[(st.st_dev, st.st_ino)] = entry.name
    return found


def _read(pid: int) -> tuple[str, int, int, str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        args = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    comm = stat[stat.index("(") + 1:stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2:].split()
    # after "(comm) ": state is field 3, so utime (14) and stime (15) are at 11 and 12, starttime (22) at 19
    return comm, int(fields[11]) + int(fields[12]), int(fields[19]), args


def snapshot(prefix: str) -> list[Proc]:
    """Every process in a namespace whose name starts with `prefix` (e.g. `lab-`), with its CPU ticks."""
    spaces = _namespaces(prefix)
    procs = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            st = os.stat(entry / "ns" / "net")
        except OSError:
            continue
        host = spaces.get((st.st_dev, st.st_ino))
        if host is None:
            continue
        read = _read(int(entry.name))
        if read is None:
            continue
        comm, ticks, start, args = read
        procs.append(Proc(int(entry.name), start, host, component(comm, args), ticks))
    return procs


@dataclass
class Sampler:
    """Polls `snapshot` in a thread; `used()` is CPU seconds per (host, component) since `start()`."""
    prefix: str
    every_s: float = 0.5
    _first: dict[tuple[int, int], int] = field(default_factory=dict)
    _last: dict[tuple[int, int], Proc] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _poll(self) -> None:
        for p in snapshot(self.prefix):
            key = (p.pid, p.start)
            self._first.setdefault(key, p.ticks if self._thread is None else 0)  # born after start: all counts
            self._last[key] = p

    def start(self) -> None:
        self._poll()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self._poll()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._poll()

    def used(self) -> dict[tuple[str, str], float]:
        out: dict[tuple[str, str], float] = defaultdict(float)
        for key, p in self._last.items():
            out[(p.host, p.component)] += (p.ticks - self._first.get(key, 0)) / TICKS_PER_S
        return dict(out)


def by_component(used: dict[tuple[str, str], float],
                 label: Callable[[str, str], str] = lambda host, comp: comp) -> dict[str, float]:
    """CPU seconds per component label; `label(host, component)` may tell apart, say, the database
    primary's postgres from the standby's (pure)."""
    out: dict[str, float] = defaultdict(float)
    for (host, comp), seconds in used.items():
        out[label(host, comp)] += seconds
    return dict(out)
