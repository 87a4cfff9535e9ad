"""The drill's stand-in for the on-call's pager: the alert sink (refstack/alertsink.py) run on the clients host
for the length of a drill, where every site's Alertmanager sends its notifications (playbooks/roles/monitoring),
and what it heard, read back."""

from __future__ import annotations

import time
from pathlib import Path

from .. import ports
from ..refstack.alertsink import READY
from ..substrates import Substrate
from ..substrates.base import Process
from . import alerts
from .journal import Journal
from .model import ExpectedAlert

STARTUP_S = 5.0


class Pager:
    def __init__(self, substrate: Substrate, log: Path, proc: Process | None, failure: str | None):
        self.substrate, self.log, self.proc = substrate, log, proc
        self.failure = failure   # why nothing it heard can be judged (it never started, or died)

    @classmethod
    def start(cls, substrate: Substrate, log: Path, journal: Journal) -> Pager | None:
        """A running receiver on the clients host; None when the stack has no monitoring hosts (nobody pages)."""
        if not substrate.of("monitoring"):
            return None
        pager = cls(substrate, log, None, "the on-call's receiver did not start")
        with journal.step("start the on-call's receiver") as s:
            host = substrate.hosts.get(substrate.clients_host)
            if host is None:
                raise RuntimeError(f"the clients host {substrate.clients_host} is not a host of the stack")
            listen = f"{host.lan_address}:{ports.ALERT_WEBHOOK}"
            pager.proc = substrate.spawn(substrate.clients_host, [
                *substrate.tool_argv(substrate.clients_host), "refstack", "alert-sink", "--listen", listen,
                "--log", str(log)])
            deadline = time.time() + STARTUP_S
            try:
                while time.time() < deadline and pager.proc.returncode is None and not pager.ready():
                    time.sleep(0.1)
            except BaseException:  # Ctrl-C before the drill could stop it: never leave it holding the port
                pager.proc.terminate()
                raise
            if not pager.ready():
                pager.proc.terminate()
                raise RuntimeError((f"not listening within {STARTUP_S:g} s" if pager.proc.returncode is None else
                                    f"exited {pager.proc.returncode}") + ": "
                                   + " ".join(pager.proc.stderr_lines()[-3:]).strip()[:300])
            pager.failure = None
            s.detail = f"receiving on {listen}"
        return pager

    def ready(self) -> bool:
        return self.proc is not None and any(line.startswith(READY) for line in self.proc.stderr_lines())

    def heard(self) -> list[alerts.Notification]:
        local = self.substrate.fetch(self.substrate.clients_host, self.log)
        return alerts.parse_log(local.read_text()) if local.exists() else []

    def wait_resolved(self, expected: list[ExpectedAlert], restored: float | None, poll_s: float = 2.0) -> None:
        """Until every expected alert that was notified is resolved, or the longest resolution allowed is over."""
        if self.failure or restored is None or not expected:
            return
        deadline = restored + max(e.resolved_within_s for e in expected) + poll_s
        while time.time() < deadline:
            if not alerts.still_firing(self.heard(), (e.alert for e in expected)):
                return
            time.sleep(poll_s)

    def stop(self) -> list[alerts.Notification]:
        """Stop the receiver; what it heard (nothing when it never ran)."""
        if self.proc is None:
            return []
        if self.proc.returncode is not None and self.failure is None:
            self.failure = f"the on-call's receiver died (exit {self.proc.returncode})"
        self.proc.terminate()
        try:
            self.proc.communicate(timeout=10)
        except Exception:  # noqa: BLE001 (stopping is best effort; what it logged is read either way)
            pass
        return self.heard()
