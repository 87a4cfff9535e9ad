"""A substrate that lives in memory: hosts are names, faults flip flags, the clients' load writes a ledger of
clean orders. It lets the drill engine be tested without a lab, and says what the engine asked of it."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tradestack.adapters.commands import CommandResult
from tradestack.errors import InputError
from tradestack.hostsettings import HostSettings
from tradestack.refstack.ledger import Ledger, SentOrder
from tradestack.substrates import AccessFiles, Actuator, Host, HostTraits, Process, Substrate
from tradestack.substrates.probe import StackProbe
from tradestack.topology import load_topology

LAB = Path(__file__).resolve().parents[2] / "infra" / "topologies" / "lab.yaml"
CLEAN_RECONCILIATION = {
    "ok": True, **{k: {"count": 0, "sample": []} for k in (
        "acked_missing", "acked_id_mismatch", "bad_balances_seen", "wrong_balances", "venue_mismatch", "unsettled",
        "silently_ended", "not_placed_but_present")},
    "duplicates": {"database": 0, "venues": {"count": 0, "sample": []}}}


class MemoryLoad(Process):
    """The clients: from start to stop, `rate` clean orders a second, written to the ledger when they end, and a
    progress report every 0.5 s on stderr as the real load generator writes them. They can be broken: dead after
    `dies_after` s (SIGKILL: no summary, rc -9), `silent_after` s without a report (alive), or never started."""

    def __init__(self, ledger: Path, rate: float, sessions: int, unanswered: Any = lambda t: False,
                 signal_self: int | None = None, dies_after: float | None = None, silent_after: float | None = None,
                 fails_to_start: bool = False):
        self.ledger, self.rate, self.sessions, self.started, self.ended = ledger, rate, sessions, time.time(), None
        self.unanswered = unanswered  # send time -> the client got no answer (a fault bit it)
        self.signal_self = signal_self  # a signal this process gets while it waits for the clients (Ctrl-C, SIGTERM)
        self.dies_after, self.silent_after, self.fails_to_start = dies_after, silent_after, fails_to_start
        self._rc: int | None = None

    def _died(self) -> float | None:
        """When it died (or never started), if it has."""
        if self.fails_to_start:
            return self.started
        if self.dies_after is not None and time.time() >= self.started + self.dies_after:
            return self.started + self.dies_after
        return None

    @property
    def returncode(self) -> int | None:
        if self._rc is None and (died := self._died()) is not None and (self.ended is None or died < self.ended):
            return 1 if self.fails_to_start else -9
        return self._rc

    def terminate(self) -> None:
        self.ended = self.ended or time.time()

    def _until(self) -> float:
        """The end of what it sent: stopped, dead, or now."""
        ends = [t for t in (self.ended, self._died(), time.time()) if t is not None]
        return min(ends)

    def stderr_lines(self) -> list[str]:
        if self.fails_to_start:
            return ["Traceback (most recent call last):\n", "FileNotFoundError: no virtual environment\n"]
        until = self._until()
        if self.silent_after is not None:
            until = min(until, self.started + self.silent_after)
        lines = []
        for k in range(1, int((until - self.started) / 0.5) + 1):
            t = self.started + k * 0.5
            n = int(k * 0.5 * self.rate)
            bad = sum(1 for i in range(n) if self.unanswered(self.started + i / self.rate))
            lines.append(json.dumps({"progress": {"t": t, "sent": n, "answered": n, "served_at_once": n - bad,
                                                  "connected": self.sessions, "sessions": self.sessions}}) + "\n")
        return lines

    def communicate(self, timeout: float) -> tuple[str, str]:
        if self.signal_self is not None and self.ended is None:
            os.kill(os.getpid(), self.signal_self)
            time.sleep(0.1)  # delivered here, as it would be while blocked on the clients
        died = self._died()
        self.terminate()
        until = self._until()
        n = 0 if self.fails_to_start else int((until - self.started) * self.rate)
        book = Ledger(self.ledger)
        sent = [self.started + i / self.rate for i in range(n)]
        book.write([SentOrder(f"c{i % self.sessions}", "a1", f"o{i}", "s1", "http://vip", t, 1, 1, "unknown", None,
                              None, None, 5000.0, "timeout") if self.unanswered(t) else
                    SentOrder(f"c{i % self.sessions}", "a1", f"o{i}", "s1", "http://vip", t, 1, 1, "acked", 201,
                              f"id{i}", "new", 5.0, None) for i, t in enumerate(sent)], [])
        book.close()
        if died is not None:
            self._rc = 1 if self.fails_to_start else -9
            return "", "".join(self.stderr_lines())
        self._rc = 0
        return json.dumps({"ok": True, "sent": n, "acked": n}), "".join(self.stderr_lines())


def _count(ledger: Path) -> int:
    book = Ledger(ledger)
    try:
        return len(book.orders())
    finally:
        book.close()


class Sink(Process):
    """The on-call receiver: runs until terminated."""

    def __init__(self) -> None:
        self.code: int | None = None

    @property
    def returncode(self) -> int | None:
        return self.code

    def terminate(self) -> None:
        self.code = 0

    def stderr_lines(self) -> list[str]:
        return ["receiving on 198.19.0.1:9095"]

    def communicate(self, timeout: float) -> tuple[str, str]:
        return "", ""


class MemoryProbe(StackProbe):
    """The trading stack, answered from memory."""

    stack: MemorySubstrate

    def database_leader(self) -> str | None:
        return "mem-sz1-orderdb-1"

    def breakers(self) -> dict[str, dict[str, str]]:
        return {}

    def vip_readiness(self, site: str, timeout: float = 2.0) -> tuple[int, Any]:
        if self.stack.steady:
            return 200, {"ready": True, "database": "ok", "routers": 1}
        return 503, {"ready": False, "database": "ok", "routers": 0, "router": "no router heartbeat within 3 s"}


class MemorySubstrate(Substrate):
    kind = "memory"

    def __init__(self, work: Path):
        topology = load_topology(LAB)
        hosts = {f"mem-{site}-{svc}-1": Host(f"mem-{site}-{svc}-1", svc, site, f"198.18.{i}.{j + 10}")
                 for i, site in enumerate(("sz1", "hk1"), 1) for j, svc in enumerate(("orderdb", "router", "gateway"))}
        outputs = {"site_prefixes": {"sz1": "198.18.1.0/24", "hk1": "198.18.2.0/24", "wit": "198.18.3.0/24"},
                   "upstreams": {"exchange": "198.19.16.1"},
                   "fault_map": {"carrier:ct": {"links": ["ct-sz1"], "hosts": []}}}
        super().__init__("mem", topology, outputs, hosts, HostSettings(), topology_file=LAB, traits=HostTraits(),
                         clients_host="mem-clients", work_dir=work / "ledgers")
        self.probe = MemoryProbe(self)
        self.work = work
        self.events: list[str] = []          # what the engine did, in order
        self.commands: list[tuple[str, tuple[str, ...]]] = []
        self.steady = True
        self.faulted: list[float] = []       # [injected, restored]: clients get no answer in between when
        self.clients_hurt = False            # clients_hurt is set
        self.fail_inject: BaseException | None = None
        self.on_inject: Any = None           # called when a fault is injected
        self.fail_restore = False
        self.signal_during_load: int | None = None
        self.load_faults: dict[str, Any] = {}  # MemoryLoad's dies_after / silent_after / fails_to_start
        self.reconcile_answer: tuple[int, str] | None = None  # (rc, stdout) of the reconciliation instead of a clean one
        self.ledger_lost = False             # the clients' ledger is not there when the drill fetches it
        self.stack_config: dict[str, str] = {}
        self.loads: list[MemoryLoad] = []
        self.sink: Path | None = None        # the on-call receiver's log (a stack with monitoring)
        self.pages: list[tuple[str, float, float | None]] = []  # (alert, notified after inject, resolved after restore)

    def with_monitoring(self, *pages: tuple[str, float, float | None]) -> MemorySubstrate:
        """A monitoring host and the clients' host; Alertmanager notifies each of `pages` that long after the
        fault is injected, and as resolved that long after its restore (None: never)."""
        for name, service, site, address in (("mem-sz1-monitoring-1", "monitoring", "sz1", "198.18.1.16"),
                                             ("mem-clients", "loadgen", None, "198.19.0.1")):
            self.hosts[name] = Host(name, service, site, address)
        self.pages = list(pages)
        return self

    def _page(self, restored: bool) -> None:
        """Alertmanager's notifications about the fault just injected or restored (written as they would arrive)."""
        if self.sink is None:
            return
        now = time.time()
        with self.sink.open("a") as log:
            for alert, notified, resolved in self.pages:
                after = resolved if restored else notified
                if after is None:
                    continue
                body = {"status": "resolved" if restored else "firing", "alerts": [
                    {"status": "resolved" if restored else "firing",
                     "labels": {"alertname": alert, "severity": "critical", "site": "sz1"}}]}
                log.write(json.dumps({"received": now + after, "notification": body}) + "\n")

    # primitives
    def run(self, host: str, argv: Sequence[str], *, input: str | None = None, timeout: float = 30.0,
            env: Mapping[str, str] | None = None) -> CommandResult:
        self.commands.append((host, tuple(argv)))
        if "reconcile" in argv:
            if self.reconcile_answer is not None:
                return CommandResult(tuple(argv), self.reconcile_answer[0], self.reconcile_answer[1], "", 0.01)
            staged = Path(argv[argv.index("--ledger") + 1])
            return CommandResult(tuple(argv), 0, json.dumps({**CLEAN_RECONCILIATION,
                                                             "ledger_orders": _count(staged)}), "", 0.01)
        if argv[0] in ("mkdir", "rm"):
            return CommandResult(tuple(argv), subprocess.run(list(argv), check=False).returncode, "", "", 0.0)
        return CommandResult(tuple(argv), 0, "", "", 0.0)

    def spawn(self, host: str, argv: Sequence[str]) -> Process:
        if "alert-sink" in argv:
            self.events.append("receiver started")
            self.sink = Path(argv[argv.index("--log") + 1])
            self.sink.parent.mkdir(parents=True, exist_ok=True)
            self.sink.touch()
            return Sink()
        self.events.append("load started")
        load = MemoryLoad(Path(argv[argv.index("--ledger") + 1]), float(argv[argv.index("--rate") + 1]),
                          int(argv[argv.index("--sessions") + 1]),
                          lambda t: self.clients_hurt and len(self.faulted) == 2 and self.faulted[0] <= t < self.faulted[1],
                          self.signal_during_load, **self.load_faults)
        self.loads.append(load)
        return load

    def fetch(self, host: str, path: Path) -> Path:
        return path.with_name("lost-" + path.name) if self.ledger_lost else path

    def put(self, host: str, local: Path, remote: Path) -> None:
        self.commands.append((host, ("put", str(local), str(remote))))
        if local != remote:
            remote.write_bytes(local.read_bytes())

    def tool_argv(self, host: str) -> list[str]:
        return ["tradestack"]

    def programs(self, host: str) -> dict[str, str]:
        return {"app": "running" if self.steady else "stopped", "haproxy": "running"}

    def vip_holders(self) -> dict[str, str | None]:
        return {site: f"mem-{site}-gateway-1" for site in self.vips}

    def live(self, host: str) -> bool:
        return True

    def routing_problems(self) -> list[str]:
        return []

    def wait_routing(self, timeout: float = 30.0) -> list[str]:
        return []

    def network_signals(self) -> dict[str, int]:
        return {"paths": 2}

    def uplink_states(self, site: str) -> dict[str, bool | None]:
        return {}

    def host_actuator(self, fault: Any) -> Actuator:
        def inject() -> None:
            self.events.append(f"inject {fault.kind}")
            self.faulted.append(time.time())
            if self.on_inject is not None:
                self.on_inject()
            if self.fail_inject is not None:
                raise self.fail_inject
            self._page(restored=False)

        def restore(step: Any) -> None:
            self.events.append(f"restore {fault.kind}")
            self.faulted.append(time.time())
            if self.fail_restore:
                raise RuntimeError("the restore failed")
            self._page(restored=True)
        return Actuator(f"{fault.kind} in memory", inject, restore)

    def check_host_fault(self, fault: Any) -> None:
        if getattr(fault, "group", None) not in (None, *self.fault_map):
            raise InputError(f"risk group {fault.group!r} is not in the stack's fault map")

    def config(self) -> dict[str, str]:
        return dict(self.stack_config)

    def secrets(self, names: list[str]) -> dict[str, str]:
        return {n: "secret" for n in names}

    def access_files(self) -> AccessFiles:
        return AccessFiles(self.work / "inventory.yml", self.work / "key", self.work / "known_hosts")

    def http(self, host: str, method: str, url: str, body: Any = None, timeout: float = 1.0) -> tuple[int, Any]:
        if url.endswith("/cluster"):  # while a fault is applied, sz1's database is cut off and hk1's leads
            if len(self.faulted) % 2:
                return 200, {"members": [{"name": "mem-hk1-orderdb-1", "role": "leader", "state": "running"},
                                         {"name": "mem-sz1-orderdb-1", "role": "replica", "state": "stopped"}]}
            return 200, {"members": [{"name": "mem-sz1-orderdb-1", "role": "leader", "state": "running"},
                                     {"name": "mem-hk1-orderdb-1", "role": "sync_standby", "state": "streaming"}]}
        return 200, None
