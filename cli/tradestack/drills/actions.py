"""Each fault as a pair of actions: inject, and its inverse (restore); and the clients' load.

`prepare` resolves a fault against the stack's substrate once, when it is injected (so `@database-leader`
means the leader at that moment, and the restore undoes exactly what was done); `describe` says in words
what a fault will do, which is also what `--dry-run` prints.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..substrates import Process, Substrate
from . import model
from .clients import parse


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
        case model.NodeLoss(site=site):
            return f"site {site}'s Kubernetes node lost (kubelet killed, network port down; control plane up)"
        case model.PodDelete(site=site):
            return f"every trading pod of site {site}'s Kubernetes cluster deleted"
        case model.NodeDrain(site=site):
            return f"a node of site {site}'s Kubernetes cluster cordoned and drained"
        case model.ApiServerCut(site=site):
            return f"site {site}'s Kubernetes API server cut off the network"
        case model.LoadSpike(multiplier=m):
            return f"load spike: {m:g} x peak on top of the drill's load"
    raise AssertionError(f"unknown fault {fault!r}")


def check(fault: model.Fault, substrate: Substrate) -> None:
    """Fail before anything is touched if the fault names something the stack does not have, or its substrate
    cannot do it."""
    if not isinstance(fault, model.LoadSpike):  # the engine's own: a second load generator
        substrate.check_fault(fault)


def prepare(fault: model.Fault, substrate: Substrate, *, spike: SpikeLoad | None = None) -> Action:
    """Resolve a fault against the stack now and return its inject/restore pair."""
    if isinstance(fault, model.LoadSpike):
        assert spike is not None, "a load spike needs the drill's spike load"
        return Action(fault, describe(fault), spike.start, lambda step: spike.stop())
    resolved = substrate.actuator(fault)
    return Action(fault, resolved.text, resolved.inject, resolved.restore)


class SpikeLoad:
    """A second load generator for a load spike; its orders go to their own ledger, reconciled too."""

    def __init__(self, substrate: Substrate, ledger: Path, rate: float, duration_s: float, sessions: int):
        self.substrate, self.ledger, self.rate, self.duration_s = substrate, ledger, rate, duration_s
        self.sessions = sessions
        self.proc: Process | None = None
        self.summary: dict[str, object] | None = None

    def start(self) -> None:
        self.proc = start_load(self.substrate, self.ledger, self.rate, self.duration_s, self.sessions, 0.0, 0.0)

    def stop(self) -> None:
        if self.proc is not None:
            self.summary = finish_load(self.proc, timeout=self.duration_s + 60)


def start_load(substrate: Substrate, ledger: Path, rate: float, duration_s: float, sessions: int, overnight: float,
               limit: float, assets_every_s: float = 0.0, warmup_s: float = 0.0) -> Process:
    """The reference load generator on the clients' host, against every site's public address: `sessions`
    clients, each holding its connection and refreshing its balance screen every `assets_every_s` (0: never).
    `ledger` is a path on the clients' host (under the substrate's work_dir). With `warmup_s`, the same load runs
    that long first and its orders are left out of the summary's figures (reported apart, under "warmup")."""
    substrate.run(substrate.clients_host, ["mkdir", "-p", str(ledger.parent)])
    substrate.run(substrate.clients_host, ["rm", "-f", str(ledger)])
    argv = [*substrate.tool_argv(substrate.clients_host), "refstack", "load",
            *[arg for e in substrate.endpoints() for arg in ("-e", e)], "--rate", f"{rate:g}", "--duration",
            f"{duration_s:g}", "--warmup", f"{warmup_s:g}", "--sessions", str(sessions), "--overnight",
            f"{overnight:g}", "--limit", f"{limit:g}", "--assets-every", f"{assets_every_s:g}", "--ledger", str(ledger),
            "--json"]
    return substrate.spawn(substrate.clients_host, argv)


def finish_load(proc: Process, timeout: float, stop: bool = False,
                stop_on_interrupt: bool = False) -> dict[str, object]:
    """Wait for a load generator to end by itself, or `stop` it now (SIGTERM ends it cleanly, in-flight
    orders answered), and return its JSON summary. With `stop_on_interrupt`, a Ctrl-C or SIGTERM while waiting
    stops the clients too before it goes on up (they run in a session of their own)."""
    if stop:
        proc.terminate()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    except KeyboardInterrupt:
        if stop_on_interrupt:
            proc.terminate()
        raise
    try:
        return dict(json.loads(out))
    except ValueError:
        said = "".join(line for line in err.splitlines(keepends=True) if parse(line) is None)  # not its progress
        return {"ok": False, "error": (said or out or "no output").strip()[-500:], "rc": proc.returncode}
