"""Each fault as a pair of actions: inject, and its inverse (restore); and the clients' load.

`prepare` resolves a fault against the stack's substrate once, when it is injected (so `@database-leader`
means the leader at that moment, and the restore undoes exactly what was done). What a fault will do in words is
the fault's own `describe()` (substrates/faults.py).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..substrates import Process, Substrate, faults
from .clients import parse


@dataclass
class Action:
    """One fault, resolved: what it does, how to do it, how to undo it."""

    fault: faults.Fault
    text: str
    inject: Callable[[], None]
    restore: Callable[[Callable[[str], None]], str | None]  # returns what the journal keeps of it, if anything


def check(fault: faults.Fault, substrate: Substrate) -> None:
    """Fail before anything is touched if the fault names something the stack does not have, or its substrate
    cannot do it."""
    if not isinstance(fault, faults.LoadSpike):  # the engine's own: a second load generator
        substrate.check_fault(fault)


def prepare(fault: faults.Fault, substrate: Substrate, *, spike: SpikeLoad | None = None) -> Action:
    """Resolve a fault against the stack now and return its inject/restore pair."""
    if isinstance(fault, faults.LoadSpike):
        assert spike is not None, "a load spike needs the drill's spike load"
        return Action(fault, fault.describe(), spike.start, lambda step: spike.stop())
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
