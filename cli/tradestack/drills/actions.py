"""Each fault kind as a pair of actions on the lab: inject, and its inverse (restore).

`prepare` resolves a fault against the lab once, when it is injected (so `@database-leader` means
the leader at that moment, and the restore undoes exactly what was done), and says in words what
it will do, which is also what `--dry-run` prints.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from . import model
from .lab import Lab


@dataclass
class Action:
    """One fault, resolved: what it does, how to do it, how to undo it."""

    fault: model.Fault
    text: str
    inject: Callable[[], None]
    restore: Callable[[Callable[[str], None]], None]


def describe(fault: model.Fault) -> str:
    """Words for a fault as written (no lab needed): the plan's vocabulary."""
    match fault:
        case model.LinkDown(group=g):
            return f"every link of risk group {g} down"
        case model.Blackhole(carrier=c):
            return f"carrier {c} silently drops all traffic (links stay up)"
        case model.Throttle(carrier=c, rate_kbit=r):
            return f"carrier {c} throttled to {r} kbit/s"
        case model.HostCrash(host=h):
            return f"host {h} crashes (every process killed, LAN port down)"
        case model.PowerLoss(group=g):
            return f"power lost in {g}: its hosts crash, its links go down"
        case model.HostFreeze(host=h):
            return f"host {h} frozen (SIGSTOP to every process)"
        case model.ProcessKill(host=h, program=p):
            return f"program {p} on host {h} killed"
        case model.Partition(sites=[a, b]):
            return f"sites {a} and {b} partitioned from each other"
        case model.Upstream(upstream=u, mode=m):
            return f"upstream {u} switched to mode {m}"
        case model.LoadSpike(multiplier=m):
            return f"load spike: {m:g} x peak on top of the drill's load"
    raise AssertionError(f"unknown fault {fault!r}")


def check(fault: model.Fault, lab: Lab) -> None:
    """Fail before anything is touched if the fault names something the stack does not have."""
    match fault:
        case model.LinkDown(group=g) | model.PowerLoss(group=g) if g not in lab.fault_map:
            raise InputError(f"risk group {g!r} is not in the stack's fault map; known: "
                             + ", ".join(sorted(lab.fault_map)))
        case model.Blackhole(carrier=c) | model.Throttle(carrier=c):
            lab.carrier_ns(c)
        case model.HostCrash(host=h) | model.HostFreeze(host=h) | model.ProcessKill(host=h) if not h.startswith("@"):
            lab.host(h)
        case model.Partition(sites=[a, b]):
            for site in (a, b):
                if site not in lab.outputs["site_prefixes"]:
                    raise InputError(f"no site {site!r} in the topology")
        case model.Upstream(upstream=u) if u not in lab.outputs["upstreams"]:
            raise InputError(f"no upstream {u!r}; known: {', '.join(sorted(lab.outputs['upstreams']))}")


def prepare(fault: model.Fault, lab: Lab, *, spike: SpikeLoad | None = None) -> Action:
    """Resolve a fault against the lab now and return its inject/restore pair."""
    noop: Callable[[Callable[[str], None]], None] = lambda step: None
    match fault:
        case model.LinkDown(group=g):
            def restore_links(step: Callable[[str], None]) -> None:
                lab.links_down(g, False)
                step("waiting for BGP sessions to be Established again")
                lab.wait_routing(30)
            return Action(fault, describe(fault), lambda: lab.links_down(g, True) and None, restore_links)
        case model.Blackhole(carrier=c):
            ns = lab.carrier_ns(c)

            def restore_blackhole(step: Callable[[str], None]) -> None:
                lab.drop_all(ns, False)
                step("waiting for BGP sessions to be Established again")
                lab.wait_routing(30)
            return Action(fault, describe(fault), lambda: lab.drop_all(ns, True), restore_blackhole)
        case model.Throttle(carrier=c, rate_kbit=rate):
            return Action(fault, describe(fault), lambda: lab.throttle(c, rate) and None,
                          lambda step: lab.throttle(c, None) and None)
        case model.HostCrash(host=h):
            host = lab.host(h).name
            return Action(fault, f"host {host} crashes (every process killed, LAN port down)",
                          lambda: lab.crash(host), lambda step: lab.revive(host, step))
        case model.PowerLoss(group=g):
            hosts = list(lab.fault_map[g]["hosts"])

            def power_off() -> None:
                lab.links_down(g, True)
                for host in hosts:
                    lab.crash(host)

            def power_on(step: Callable[[str], None]) -> None:
                lab.links_down(g, False)
                lab.revive_many(hosts, step)
                step("waiting for BGP sessions to be Established again")
                lab.wait_routing(30)
            return Action(fault, f"power lost in {g}: {len(hosts)} hosts crash, its links go down", power_off,
                          power_on)
        case model.HostFreeze(host=h):
            host = lab.host(h).name
            return Action(fault, f"host {host} frozen (SIGSTOP to every process)",
                          lambda: lab.freeze(host, True) and None, lambda step: lab.freeze(host, False) and None)
        case model.ProcessKill(host=h, program=p):
            host = lab.host(h).name
            return Action(fault, f"program {p} on host {host} killed", lambda: lab.kill_program(host, p) and None,
                          lambda step: lab.wait_program(host, p))
        case model.Partition(sites=[a, b]):
            return Action(fault, describe(fault), lambda: lab.partition(a, b, True),
                          lambda step: lab.partition(a, b, False))
        case model.Upstream(upstream=u, mode=m, latency_ms=ms):
            return Action(fault, describe(fault), lambda: lab.venue_mode(u, m, ms),
                          lambda step: lab.venue_mode(u, "normal"))
        case model.LoadSpike():
            assert spike is not None, "a load spike needs the drill's spike load"
            return Action(fault, describe(fault), spike.start, lambda step: spike.stop())
    return Action(fault, describe(fault), lambda: None, noop)  # pragma: no cover - every kind is matched above


class SpikeLoad:
    """A second load generator for a load spike; its orders go to their own ledger, reconciled too."""

    def __init__(self, lab: Lab, ledger: Path, rate: float, duration_s: float, sessions: int):
        self.lab, self.ledger, self.rate, self.duration_s, self.sessions = lab, ledger, rate, duration_s, sessions
        self.proc: subprocess.Popen[str] | None = None
        self.summary: dict[str, object] | None = None

    def start(self) -> None:
        self.proc = start_load(self.lab, self.ledger, self.rate, self.duration_s, self.sessions, 0.0, 0.0)

    def stop(self) -> None:
        if self.proc is not None:
            self.summary = finish_load(self.proc, timeout=self.duration_s + 60)


def start_load(lab: Lab, ledger: Path, rate: float, duration_s: float, sessions: int, overnight: float,
               limit: float, assets_every_s: float = 0.0) -> subprocess.Popen[str]:
    """The reference load generator in the clients namespace, against every site's public address: `sessions`
    clients, each holding its connection and refreshing its balance screen every `assets_every_s` (0: never)."""
    ledger.parent.mkdir(parents=True, exist_ok=True)
    ledger.unlink(missing_ok=True)
    argv = ["ip", "netns", "exec", lab.clients_ns, sys.executable, "-m", "tradestack", "refstack", "load",
            *[arg for e in lab.endpoints() for arg in ("-e", e)], "--rate", f"{rate:g}", "--duration",
            f"{duration_s:g}", "--sessions", str(sessions), "--overnight", f"{overnight:g}", "--limit",
            f"{limit:g}", "--assets-every", f"{assets_every_s:g}", "--ledger", str(ledger), "--json"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, start_new_session=True)  # Ctrl-C on the drill must not kill it mid-write


def finish_load(proc: subprocess.Popen[str], timeout: float, stop: bool = False) -> dict[str, object]:
    """Wait for a load generator to end by itself, or `stop` it now (SIGTERM ends it cleanly, in-flight
    orders answered), and return its JSON summary."""
    if stop:
        proc.terminate()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    try:
        return dict(json.loads(out))
    except ValueError:
        return {"ok": False, "error": (err or out or "no output").strip()[-500:], "rc": proc.returncode}
