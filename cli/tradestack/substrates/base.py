"""What a deployed stack offers to deploy, status, drills, capacity verify and audit, whatever it runs on.

A substrate is where the trading stack's hosts are: the lab's namespaces, real machines over SSH, per-site
clusters. Code above this interface (deploy, drills, capacity, audit) asks it questions and hands it faults;
it never learns how a host is reached. Like testinfra's backends: a few primitives per substrate (run a
command on a host, start a process there, fetch a file, HTTP from a host), and everything about the trading
stack itself (its database leader, breakers, ports) built once, here, on top of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from .. import ports
from ..adapters.commands import CommandResult, StreamedPopen
from ..errors import InputError, TradestackError
from ..hostsettings import HostSettings
from ..refstack.origin import ORIGIN_HEADER
from ..polling import each, until_clear
from ..topology.addresses import site_vips
from ..topology.model import Topology
from ..topology.riskgroups import power_feed
from .clusters import Clusters, SiteCluster
from .faults import LEADER_SITE, ClusterFault, Fault, PowerLoss
from .inventory import Host, host_named
from .probe import StackProbe

__all__ = ["AccessFiles", "Actuator", "FaultRefused", "Host", "HostTraits", "Process", "SiteCluster", "Substrate",
           "SubstrateError", "each"]


class SubstrateError(TradestackError):
    """A substrate could not do what it was asked on a host (a fault, a probe, a command)."""


class FaultRefused(InputError):
    """This substrate cannot apply a kind of fault (said before anything is touched)."""


@dataclass
class Actuator:
    """One fault, resolved against a substrate: what it does, how to do it, how to undo it."""

    text: str
    inject: Callable[[], None]
    # undoes it, telling progress to its argument; what it returns (if anything) is what the journal keeps of it
    restore: Callable[[Callable[[str], None]], str | None]
    hosts: tuple[str, ...] = ()          # what it touches (a blast-radius policy judges these)


@dataclass(frozen=True)
class HostTraits:
    """What the playbooks must know about the substrate's hosts; the defaults are a real machine's (the
    playbooks' group_vars), so only what differs is passed on."""

    shared_filesystem: bool = False      # every host sees one filesystem (machine-wide tasks run once)
    supervisor: str = "systemd"          # how services are kept running: systemd | supervisord
    install_packages: bool = True        # the deploy installs the Debian packages (else they are there)
    manage_sshd: bool = True             # the deploy hardens sshd's configuration
    time_sync: bool = True               # the deploy runs a time sync client
    time_servers: tuple[str, ...] = ()   # the NTP servers it asks (none given: Debian's pool)

    def __post_init__(self) -> None:
        object.__setattr__(self, "time_servers", tuple(self.time_servers))  # a hosts file's list

    def playbook_vars(self) -> dict[str, object]:
        """The playbook variables for what differs from a real machine."""
        default = HostTraits()
        names = {"shared_filesystem": "tradestack_shared_filesystem", "supervisor": "tradestack_supervisor",
                 "install_packages": "tradestack_install_packages", "manage_sshd": "tradestack_manage_sshd",
                 "time_sync": "tradestack_time_sync", "time_servers": "tradestack_time_servers"}
        return {var: list(v) if isinstance(v := getattr(self, f), tuple) else v for f, var in names.items()
                if getattr(self, f) != getattr(default, f)}


@dataclass(frozen=True)
class AccessFiles:
    """How Ansible and testinfra reach the hosts: an inventory with its key and pinned host keys."""

    inventory: Path
    private_key: Path
    known_hosts: Path


class Process(Protocol):
    """A process started on a host: wait for it, stop it (SIGTERM: it ends cleanly), read what it printed, and
    while it runs, the lines it has written on stderr so far (a long-running program's progress)."""

    @property
    def returncode(self) -> int | None: ...

    def terminate(self) -> None: ...

    def stderr_lines(self) -> list[str]: ...

    def communicate(self, timeout: float) -> tuple[str, str]:
        """(stdout, stderr) once it ended; raises subprocess.TimeoutExpired if it runs past `timeout`."""
        ...


class LocalProcess(StreamedPopen):
    """A Process that is a child of this one."""

    def terminate(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()


class StackLifecycle(Protocol):
    """A stack as Pulumi manages it on a substrate: preview, up, refresh, destroy, and what it left behind."""

    name: str
    disposable: bool

    def exists(self) -> bool: ...

    def expected_resources(self) -> int | None: ...

    def preview(self, on_event: Callable[[Any], None] | None = None) -> Any: ...

    def up(self, on_event: Callable[[Any], None] | None = None) -> tuple[Any, Any]: ...

    def refresh(self, on_event: Callable[[Any], None] | None = None) -> Any: ...

    def destroy(self, on_event: Callable[[Any], None] | None = None) -> Any: ...

    def outputs(self, secrets_too: bool = False) -> dict[str, Any]: ...

    def leftovers(self) -> list[str]: ...

    def config(self) -> dict[str, str]: ...

    def set_config(self, key: str, value: str) -> None: ...

    def set_secret(self, name: str, value: str) -> None: ...

    @property
    def host_settings(self) -> HostSettings: ...


class Substrate(ABC):
    """A deployed stack on some substrate. Subclasses provide the primitives marked abstract; the trading stack's
    own questions are asked through `probe` (probe.py), its clusters, where it has them, through `clusters`."""

    kind: ClassVar[str]
    disposable: ClassVar[bool] = False     # a lab: drills need no confirmation and no policy

    def __init__(self, name: str, topology: Topology, outputs: Mapping[str, Any], hosts: Mapping[str, Host],
                 settings: HostSettings, *, topology_file: Path, traits: HostTraits, clients_host: str,
                 work_dir: Path):
        self.name = name
        self.topology = topology
        self.topology_file = topology_file   # the topology file the stack was brought up from
        self.outputs = dict(outputs)
        self.hosts = dict(hosts)
        self.settings = settings
        self.traits = traits                 # what the playbooks must know about these hosts
        self.clients_host = clients_host     # where the clients (load generator) run: outside every site
        self.work_dir = work_dir             # on the clients host: where drills keep their load ledgers
        self.fault_map: dict[str, Any] = dict(self.outputs.get("fault_map") or {})
        self.vips: dict[str, str] = site_vips(topology, self.outputs["site_prefixes"])
        self.probe = StackProbe(self)
        self.clusters: Clusters | None = None  # attached by the registry for a stack with site clusters

    def config(self) -> dict[str, str]:
        """The stack's own plain configuration (e.g. tradestack:allowDrills, tradestack:changeWindows)."""
        return {}

    # -- primitives each substrate provides ---------------------------------------------------------
    @abstractmethod
    def run(self, host: str, argv: Sequence[str], *, input: str | None = None, timeout: float = 30.0,
            env: Mapping[str, str] | None = None) -> CommandResult:
        """Run `argv` on `host` and wait (never a shell string)."""

    @abstractmethod
    def spawn(self, host: str, argv: Sequence[str]) -> Process:
        """Start `argv` on `host` and return at once; SIGTERM to the handle ends it there."""

    @abstractmethod
    def fetch(self, host: str, path: Path) -> Path:
        """A local copy of `path` on `host` (as it is now)."""

    @abstractmethod
    def put(self, host: str, local: Path, remote: Path) -> None:
        """Copy the local file `local` to `remote` on `host` (its directory made if missing)."""

    @abstractmethod
    def tool_argv(self, host: str) -> list[str]:
        """How to run this toolkit (`python -m tradestack`) on `host`."""

    @abstractmethod
    def programs(self, host: str) -> dict[str, str]:
        """Supervised programs of a host and their state (empty: its supervisor is gone)."""

    @abstractmethod
    def vip_holders(self) -> dict[str, str | None]:
        """Site -> the host that holds the site's VIP (None: nobody)."""

    @abstractmethod
    def live(self, host: str) -> bool:
        """The host is up and reachable on its site LAN (cheap: no SSH round trip where avoidable)."""

    @abstractmethod
    def routing_problems(self) -> list[str]:
        """Carrier paths that should be up and are not, one line each (empty: converged)."""

    @abstractmethod
    def network_signals(self) -> dict[str, int]:
        """The substrate's own steady-state counters sampled during drills (e.g. BGP sessions Established)."""

    @abstractmethod
    def uplink_states(self, site: str) -> dict[str, bool | None]:
        """Carrier -> is the site's uplink to it up (None: cannot tell)."""

    @abstractmethod
    def host_actuator(self, fault: Fault) -> Actuator:
        """A fault of the hosts or the network resolved now, with its inverse; FaultRefused if not possible here."""

    @abstractmethod
    def check_host_fault(self, fault: Fault) -> None:
        """Fail before anything is touched if the fault names what this stack does not have or cannot do."""

    @abstractmethod
    def secrets(self, names: list[str]) -> dict[str, str]:
        """Deploy secrets kept with the stack."""

    @abstractmethod
    def access_files(self) -> AccessFiles:
        """Inventory, key and pinned host keys for Ansible and testinfra."""

    # -- defaults a substrate may replace -----------------------------------------------------------
    def wait_routing(self, timeout: float = 30.0) -> list[str]:
        """Wait until routing has converged; what is still not (empty: converged)."""
        return until_clear(self.routing_problems, timeout)

    def host_dry_run(self, fault: Fault) -> list[str]:
        """The commands a fault and its inverse would run, per host, where the substrate acts through commands
        (empty where it acts otherwise, e.g. the lab's netlink calls)."""
        return []

    def host_audit_facts(self) -> dict[str, Any]:
        """Where the audit finds things on these hosts (sshd config per host, how to look at an uplink); the
        defaults are a real machine's."""
        return {"sshd_config": {name: "/etc/ssh/sshd_config" for name in self.hosts}, "uplink_probes": {}}

    def hosts_file(self, private_key: Path) -> dict[str, Any]:
        """This stack's machines as a hosts file describes an estate (for `stack up --substrate hosts`), with
        `private_key` as the key to log in with; only a substrate whose machines have no hosts file of their own
        (the lab) writes one."""
        raise InputError(f"stack {self.name!r} runs on substrate {self.kind!r}, whose machines are already described "
                         "by a hosts file: use that one")

    # -- one fault, wherever it acts: the clusters take theirs, the hosts the rest ---------------------
    def power_feed(self, site: str) -> str:
        """The power risk group of `site` (the first `power:` group the topology gives it)."""
        feed = power_feed(self.topology, site)
        if feed is None:
            raise FaultRefused(f"site {site!r} has no power risk group in the topology (risk_groups: [power:...])")
        return feed

    def pinned(self, fault: Fault) -> Fault:
        """The fault with its run-time picks of groups made now (LEADER_SITE: the leader's site's power feed)."""
        if isinstance(fault, PowerLoss) and fault.group == LEADER_SITE:
            site = self.host("@database-leader").site
            if site is None:
                raise SubstrateError("the database leader belongs to no site")
            return fault.model_copy(update={"group": self.power_feed(site)})
        return fault

    def actuator(self, fault: Fault) -> Actuator:
        """The fault resolved now, with its inverse; FaultRefused if this stack cannot apply it."""
        fault = self.pinned(fault)
        if self.clusters is not None:
            resolved = self.clusters.actuator(fault)
            if resolved is not None:
                return resolved
        elif isinstance(fault, ClusterFault):
            raise FaultRefused(f"{fault.describe()}: stack {self.name!r} runs no Kubernetes cluster; it needs a "
                               "stack on the kubernetes substrate")
        return self.host_actuator(fault)

    def check_fault(self, fault: Fault) -> None:
        """Fail before anything is touched if the fault names what this stack does not have or cannot do."""
        if isinstance(fault, PowerLoss) and fault.group == LEADER_SITE:  # whichever site leads then: each may
            for site in sorted({h.site for h in self.of("orderdb") if h.site}):
                self.check_fault(fault.model_copy(update={"group": self.power_feed(site)}))
            return
        if self.clusters is not None:
            if self.clusters.check_fault(fault):
                return
        elif isinstance(fault, ClusterFault):
            raise FaultRefused(f"{fault.describe()}: stack {self.name!r} runs no Kubernetes cluster; it needs a "
                               "stack on the kubernetes substrate")
        self.check_host_fault(fault)

    def dry_run(self, fault: Fault) -> list[str]:
        """What a fault and its inverse would do, step by step, where that can be listed."""
        if isinstance(fault, PowerLoss) and fault.group == LEADER_SITE:
            try:
                now = self.pinned(fault)
            except (SubstrateError, InputError) as exc:
                return [f"{LEADER_SITE}: picked when injected; cannot pick now ({exc})"]
            return [f"{LEADER_SITE}: picked when injected; now {now.group}", *self.dry_run(now)]
        listed = self.clusters.dry_run(fault) if self.clusters is not None else None
        return self.host_dry_run(fault) if listed is None else listed

    def signals(self) -> dict[str, int]:
        """Everything sampled during drills: the network's counters and, with clusters, theirs."""
        return {**self.network_signals(), **(self.clusters.signals() if self.clusters is not None else {})}

    def audit_facts(self) -> dict[str, Any]:
        """What the audit's checks need about where things are on this stack."""
        return {**self.host_audit_facts(), **(self.clusters.audit_facts() if self.clusters is not None else {})}

    # -- the trading stack's hosts and addresses -----------------------------------------------------
    def of(self, service: str, site: str | None = None) -> list[Host]:
        return [h for h in self.hosts.values() if h.service == service and (site is None or h.site == site)]

    def host(self, ref: str) -> Host:
        """A host by its short name (`sz1-orderdb-1`) or a run-time pick (`@database-leader`, `@vip-holder:SITE`)."""
        if ref == "@database-leader":
            leader = self.probe.database_leader()
            if leader is None:
                raise SubstrateError("no database leader to pick for @database-leader")
            return self.hosts[leader]
        if ref.startswith("@vip-holder:"):
            site = ref.split(":", 1)[1]
            holder = self.vip_holders().get(site)
            if holder is None:
                raise SubstrateError(f"nobody holds the VIP of site {site!r}")
            return self.hosts[holder]
        name = host_named(ref, self.hosts, self.name)
        if name is None:
            raise InputError(f"no host {ref!r} in stack {self.name!r}; hosts: "
                             + ", ".join(h.removeprefix(f"{self.name}-") for h in sorted(self.hosts)))
        return self.hosts[name]

    def endpoints(self) -> list[str]:
        """What clients are given: every site's public address (reached over every carrier)."""
        return [f"http://{vip}:{ports.ORDERS}" for _, vip in sorted(self.vips.items())]

    def prometheus_urls(self) -> list[str]:
        """The stack's Prometheus (one per monitoring host), where the operator reaches them: each host's
        management address (the site LAN's where it has none)."""
        return [f"http://{h.address or h.lan_address}:{ports.PROMETHEUS}"
                for h in sorted(self.of("monitoring"), key=lambda h: h.name)]

    def venue_admins(self) -> list[str]:
        return [f"http://{addr}:{ports.VENUE_ADMIN}" for addr in self.outputs["upstreams"].values()]

    def http(self, host: str, method: str, url: str, body: Any = None, timeout: float = 1.0) -> tuple[int, Any]:
        """One HTTP request from `host` (curl there), its answer read as JSON. (0, None) if no answer."""
        import json

        code, text = self.http_text(host, method, url, body, timeout)
        try:
            return code, json.loads(text) if text.strip() else None
        except ValueError:
            return code, None

    def http_text(self, host: str, method: str, url: str, body: Any = None,
                  timeout: float = 1.0) -> tuple[int, str]:
        """One HTTP request from `host` (curl there): its status and body. (0, "") if no answer."""
        import json

        # the toolkit's own traffic says so: the stack's observed peak leaves it out (refstack/origin.py)
        argv = ["curl", "-s", "-m", f"{timeout:g}", "-o", "-", "-w", "\n%{http_code}", "-X", method,
                "-H", f"{ORIGIN_HEADER}: toolkit", url]
        if body is not None:
            argv += ["-H", "content-type: application/json", "-d", json.dumps(body)]
        done = self.run(host, argv, timeout=timeout + 5)
        text, _, code = done.stdout.rpartition("\n")
        return (int(code) if code.isdigit() else 0), text

    def live_hosts(self, hosts: list[Host]) -> list[Host]:
        alive = each(hosts, lambda h: self.live(h.name))
        return [h for h in hosts if alive[h.name]]
