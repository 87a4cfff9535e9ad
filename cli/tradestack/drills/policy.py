"""When and how widely a stack that is not a lab may be drilled: its own configuration says (pure).

Three settings in the stack's configuration, all checked before anything is touched:
- `tradestack:allowDrills`: `true`, or the stack is never drilled;
- `tradestack:changeWindows`: when drills may start, e.g. `Sat,Sun 02:00-06:00 UTC; Mon-Fri 22:00-23:30 UTC`
  (none: any time);
- `tradestack:blastRadius`: the most a drill may touch, e.g. `hosts=2,sites=1` (none: no limit).
A refusal names the reason, and outside the windows the next time a drill may start.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import InputError
from ..substrates import Host, faults
from ..substrates.inventory import host_named
from ..topology.model import Topology
from ..topology.riskgroups import power_feed, risk_group_index
from . import model
from .errors import DrillRefused

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
WINDOW = re.compile(r"^(?P<days>[a-z,\-]+|daily)\s+(?P<start>\d{2}:\d{2})-(?P<end>\d{2}:\d{2})\s+UTC$")
KEYS = ("tradestack:allowDrills", "tradestack:changeWindows", "tradestack:blastRadius")


@dataclass(frozen=True)
class ChangeWindow:
    """Days of the week (0 = Monday) and a start and end time of day, in UTC; an end before the start runs past
    midnight into the next day."""

    days: frozenset[int]
    start: dt.time
    end: dt.time

    def opens(self, on: dt.date) -> tuple[dt.datetime, dt.datetime] | None:
        """This window's opening on `on` (start, end), if it opens that day."""
        if on.weekday() not in self.days:
            return None
        start = dt.datetime.combine(on, self.start, dt.timezone.utc)
        end = dt.datetime.combine(on, self.end, dt.timezone.utc)
        return start, end if end > start else end + dt.timedelta(days=1)


@dataclass(frozen=True)
class Reach:
    """What a drill may touch: hosts it faults and sites it affects."""

    hosts: frozenset[str] = frozenset()
    sites: frozenset[str] = frozenset()


@dataclass(frozen=True)
class DrillPolicy:
    allow_drills: bool = False
    windows: tuple[ChangeWindow, ...] = ()
    max_hosts: int | None = None
    max_sites: int | None = None
    problems: tuple[str, ...] = field(default=())

    @classmethod
    def from_config(cls, config: Mapping[str, str]) -> DrillPolicy:
        """From a stack's plain configuration; unreadable settings are errors (exit 2), never silently open."""
        allow = config.get("tradestack:allowDrills", "false").strip().lower()
        if allow not in ("true", "false"):
            raise InputError(f"tradestack:allowDrills: {allow!r} is not true or false")
        windows = tuple(parse_window(w) for w in config.get("tradestack:changeWindows", "").split(";") if w.strip())
        limits = parse_blast_radius(config.get("tradestack:blastRadius", ""))
        return cls(allow == "true", windows, limits.get("hosts"), limits.get("sites"))

    def next_window(self, now: dt.datetime) -> dt.datetime | None:
        """The next time a window opens after `now` (None: no windows)."""
        starts = [opened[0] for w in self.windows for d in range(8)
                  if (opened := w.opens(now.date() + dt.timedelta(days=d))) and opened[0] > now]
        return min(starts, default=None)

    def in_window(self, now: dt.datetime) -> bool:
        if not self.windows:
            return True
        return any(opened[0] <= now < opened[1] for w in self.windows for d in (-1, 0)
                   if (opened := w.opens(now.date() + dt.timedelta(days=d))))

    def refusal(self, now: dt.datetime, reach: Reach, drill_s: float = 0.0) -> str | None:
        """Why a drill that touches `reach` and lasts about `drill_s` may not start `now` (None: it may)."""
        if not self.allow_drills:
            return "this stack does not allow drills (set tradestack:allowDrills true in its config)"
        if self.max_hosts is not None and len(reach.hosts) > self.max_hosts:
            return (f"the drill would touch {len(reach.hosts)} hosts ({', '.join(sorted(reach.hosts))}); "
                    f"the stack's blast radius allows {self.max_hosts}")
        if self.max_sites is not None and len(reach.sites) > self.max_sites:
            return (f"the drill would touch {len(reach.sites)} sites ({', '.join(sorted(reach.sites))}); "
                    f"the stack's blast radius allows {self.max_sites}")
        if not self.in_window(now) or not self.in_window(now + dt.timedelta(seconds=drill_s)):
            nxt = self.next_window(now)
            return ("outside the stack's change windows"
                    + (f"; the next opens {nxt:%a %Y-%m-%d %H:%M} UTC" if nxt else ""))
        return None


def parse_window(text: str) -> ChangeWindow:
    """`Sat,Sun 02:00-06:00 UTC`, `Mon-Fri 22:00-23:30 UTC` or `daily 01:00-05:00 UTC`."""
    m = WINDOW.match(text.strip().lower().replace("utc", "UTC"))
    if not m:
        raise InputError(f"tradestack:changeWindows: {text.strip()!r} is not like 'Sat,Sun 02:00-06:00 UTC'")
    days: set[int] = set()
    for part in (["mon-sun"] if m["days"] == "daily" else m["days"].split(",")):
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise InputError(f"tradestack:changeWindows: {part!r} is not a day or a range of days (Mon..Sun)")
        a, b = DAYS.index(first), DAYS.index(last or first)
        days |= set(range(a, b + 1)) if a <= b else set(range(a, 7)) | set(range(0, b + 1))
    try:
        start, end = dt.time.fromisoformat(m["start"]), dt.time.fromisoformat(m["end"])
    except ValueError:
        raise InputError(f"tradestack:changeWindows: {text.strip()!r} has a time that is not HH:MM") from None
    if start == end:
        raise InputError(f"tradestack:changeWindows: {text.strip()!r} is empty (start = end)")
    return ChangeWindow(frozenset(days), start, end)


def parse_blast_radius(text: str) -> dict[str, int]:
    """`hosts=2,sites=1` -> {"hosts": 2, "sites": 1}."""
    limits: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        key, _, value = part.partition("=")
        if key.strip() not in ("hosts", "sites") or not value.strip().isdigit():
            raise InputError(f"tradestack:blastRadius: {part!r} is not hosts=N or sites=N")
        limits[key.strip()] = int(value)
    return limits


def reach(drill: model.Drill, topology: Topology, hosts: Mapping[str, Host], stack: str,
          fault_map: Mapping[str, object]) -> Reach:
    """The hosts a drill faults and the sites it affects, from the drill and the stack (pure). A run-time pick
    (`@database-leader`) counts as one host, and affects any site it may resolve to."""
    index = risk_group_index(topology)
    touched_hosts: set[str] = set()
    sites: set[str] = set()

    def group(g: str) -> None:
        tagged = index.tags.get(g)
        if tagged is not None:
            sites.update(tagged.sites)
            sites.update(s for s, _ in tagged.uplinks)

    for fault in drill.faults:
        match fault:
            case (faults.HostCrash(host=h) | faults.Reboot(host=h) | faults.HostFreeze(host=h)
                  | faults.ProcessKill(host=h)):
                if h == "@database-leader":
                    touched_hosts.add(h)
                    sites.update(x.site for x in hosts.values() if x.site and x.service == "orderdb")
                elif h.startswith("@vip-holder:"):
                    touched_hosts.add(h)
                    sites.add(h.split(":", 1)[1])
                else:
                    name = host_named(h, hosts, stack) or h
                    touched_hosts.add(name)
                    if name in hosts and hosts[name].site:
                        sites.add(str(hosts[name].site))
            case faults.PowerLoss(group=faults.LEADER_SITE):  # any site with a database host may lead then
                for site in sorted({x.site for x in hosts.values() if x.site and x.service == "orderdb"}):
                    feed = power_feed(topology, site)
                    if feed is not None:
                        entry = fault_map.get(feed)
                        touched_hosts.update(entry.get("hosts", []) if isinstance(entry, dict) else [])
                        group(feed)
            case faults.PowerLoss(group=g):
                entry = fault_map.get(g)
                touched_hosts.update(entry.get("hosts", []) if isinstance(entry, dict) else [])
                group(g)
            case faults.LinkDown(group=g):
                group(g)
            case faults.Blackhole(carrier=c) | faults.Throttle(carrier=c):
                group(f"carrier:{c}")
            case faults.Partition(sites=pair):
                sites.update(pair)
    return Reach(frozenset(touched_hosts), frozenset(sites))


def authorize(disposable: bool, policy: DrillPolicy, touched: Reach, duration_s: float, yes: bool,
              now: dt.datetime | None = None) -> None:
    """A disposable stack (a lab) may always be broken; any other only as its own policy allows (drills allowed,
    within a change window, within the blast radius), and with --yes. Drills and capacity verify alike."""
    if disposable:
        return
    reason = policy.refusal(now or dt.datetime.now(dt.timezone.utc), touched, duration_s)
    if reason:
        raise DrillRefused(reason)
    if not yes:
        raise DrillRefused("this is not a lab stack: confirm with --yes")
