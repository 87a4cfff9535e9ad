"""What a deployed stack offers to deploy, status, drills, capacity verify and audit, whatever it runs on.

A substrate is where the trading stack's hosts are: the lab's namespaces, real machines over SSH, per-site
clusters. Code above this interface (deploy, drills, capacity, audit) asks it questions and hands it faults;
it never learns how a host is reached. Like testinfra's backends: a few primitives per substrate (run a
command on a host, start a process there, fetch a file, HTTP from a host), and everything about the trading
stack itself (its database leader, breakers, ports) built once, here, on top of them.
"""

from __future__ import annotations

import subprocess
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from .. import health, ports
from ..adapters.commands import CommandResult, StreamedPopen
from ..errors import InputError, TradestackError
from ..hostsettings import HostSettings
from ..topology.addresses import site_vips
from ..topology.model import Topology
from .faults import Fault
from .inventory import Host

def each(items: Sequence[Any], call: Callable[[Any], Any], key: Callable[[Any], str] = lambda x: x.name
         ) -> dict[str, Any]:
    """`call(item)` for every item at once, by `key(item)`: one probe's time, not one per host (over SSH a
    round trip takes a tenth of a second or more, and a sample asks a dozen hosts)."""
    if not items:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        return dict(zip([key(i) for i in items], pool.map(call, items)))


class SubstrateError(TradestackError):
    """A substrate could not do what it was asked on a host (a fault, a probe, a command)."""


class FaultRefused(InputError):
    """This substrate cannot apply a kind of fault (said before anything is touched)."""


@dataclass
class Actuator:
    """One fault, resolved against a substrate: what it does, how to do it, how to undo it."""

    text: str
    inject: Callable[[], None]
    restore: Callable[[Callable[[str], None]], None]
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

    def playbook_vars(self) -> dict[str, object]:
        """The playbook variables for what differs from a real machine."""
        default = HostTraits()
        names = {"shared_filesystem": "tradestack_shared_filesystem", "supervisor": "tradestack_supervisor",
                 "install_packages": "tradestack_install_packages", "manage_sshd": "tradestack_manage_sshd",
                 "time_sync": "tradestack_time_sync"}
        return {var: getattr(self, f) for f, var in names.items() if getattr(self, f) != getattr(default, f)}


@dataclass(frozen=True)
class SiteCluster:
    """One site's Kubernetes cluster, as the substrate that runs it reaches it."""

    site: str
    kubeconfig: Path             # admin access to its API server
    nodes: tuple[str, ...]       # its nodes' addresses on the site LAN: where the site's load balancers reach NodePorts
    pod_cidr: str                # the range its pods' traffic comes from (routed, not masqueraded)


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
    """A deployed stack on some substrate. Subclasses provide the primitives marked abstract."""

    kind: ClassVar[str]
    disposable: ClassVar[bool] = False     # a lab: drills need no confirmation and no policy

    def config(self) -> dict[str, str]:
        """The stack's own plain configuration (e.g. tradestack:allowDrills, tradestack:changeWindows)."""
        return {}

    def __init__(self, name: str, topology: Topology, outputs: Mapping[str, Any], hosts: Mapping[str, Host],
                 settings: HostSettings):
        self.name = name
        self.topology = topology
        self.outputs = dict(outputs)
        self.hosts = dict(hosts)
        self.settings = settings
        self.fault_map: dict[str, Any] = dict(self.outputs.get("fault_map") or {})
        self.vips: dict[str, str] = site_vips(topology, self.outputs["site_prefixes"])

    # -- primitives each substrate provides ---------------------------------------------------------
    @property
    @abstractmethod
    def clients_host(self) -> str:
        """Where the clients (load generator) run: a host outside every site, reaching the VIPs over the carriers."""

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
    def wait_routing(self, timeout: float = 30.0) -> list[str]:
        """Wait until routing has converged; what is still not (empty: converged)."""

    @abstractmethod
    def signals(self) -> dict[str, int]:
        """Substrate-specific steady-state counters sampled during drills (e.g. BGP sessions Established)."""

    @abstractmethod
    def uplink_states(self, site: str) -> dict[str, bool | None]:
        """Carrier -> is the site's uplink to it up (None: cannot tell)."""

    @abstractmethod
    def actuator(self, fault: Fault) -> Actuator:
        """The fault (a fault of substrates/faults.py) resolved now, with its inverse; FaultRefused if not possible here."""

    @abstractmethod
    def check_fault(self, fault: Fault) -> None:
        """Fail before anything is touched if the fault names what this stack does not have or cannot do."""

    @abstractmethod
    def secrets(self, names: list[str]) -> dict[str, str]:
        """Deploy secrets kept with the stack."""

    @abstractmethod
    def access_files(self) -> AccessFiles:
        """Inventory, key and pinned host keys for Ansible and testinfra."""

    @abstractmethod
    def topology_path(self) -> Path:
        """The topology file the stack was brought up from."""

    @property
    @abstractmethod
    def traits(self) -> HostTraits:
        """What the playbooks must know about these hosts."""

    @property
    @abstractmethod
    def work_dir(self) -> Path:
        """A directory on the clients host where drills keep their load ledgers."""

    def dry_run(self, fault: Fault) -> list[str]:
        """The commands a fault and its inverse would run, per host, where the substrate acts through commands
        (empty where it acts otherwise, e.g. the lab's netlink calls)."""
        return []

    def site_clusters(self) -> dict[str, SiteCluster]:
        """Each site's Kubernetes cluster; empty where the stack runs none."""
        return {}

    def clustered_services(self) -> tuple[str, ...]:
        """The services this substrate runs in its clusters rather than on hosts (empty: none it decides)."""
        return ()

    def kubeconfigs(self) -> dict[str, Path]:
        """Each site's Kubernetes cluster (site -> admin kubeconfig); empty where the stack runs none."""
        return {site: c.kubeconfig for site, c in self.site_clusters().items()}

    def load_images(self, site: str, archives: Sequence[Path]) -> None:
        """Make locally built image archives available to `site`'s cluster (its nodes never pull)."""
        raise SubstrateError(f"substrate {self.kind!r} has no way to load images into a cluster")

    def node_loss(self, site: str, node: str | None = None) -> Actuator:
        """A node of `site`'s cluster lost (kubelet dead, network port silent; the substrate's pick unless named)
        and its inverse; FaultRefused where the substrate cannot do it."""
        raise FaultRefused(f"substrate {self.kind!r} runs no Kubernetes node in site {site!r}")

    def api_server_cut(self, site: str) -> Actuator:
        """`site`'s cluster API server cut off the network (its nodes and the operator lose it, its pods are left
        alone) and its inverse; FaultRefused where the substrate cannot do it."""
        raise FaultRefused(f"substrate {self.kind!r} runs no Kubernetes API server in site {site!r}")

    # -- what runs beside the playbooks (a substrate with clusters runs some services there) ----------
    def deploy_vars(self) -> dict[str, Any]:
        """Playbook variables this substrate adds to a deploy (e.g. which services run in clusters instead)."""
        return {}

    def apply_workloads(self, public: Mapping[str, Any], secret: Mapping[str, Any],
                        on_step: Callable[[str], None] = lambda s: None) -> dict[str, Any] | None:
        """After the playbooks: apply what runs outside the hosts, from the same deploy variables. None: nothing."""
        return None

    def cluster_view(self) -> dict[str, dict[str, Any]]:
        """Per site cluster: `nodes` (name -> Ready), `services` (name -> replicas, ready, disruptions_allowed),
        `expected` (the services it should run) and `error` (its API did not answer); empty without clusters."""
        return {}

    def workload_problems(self) -> list[str]:
        """What keeps the services outside the hosts from their steady state (empty: steady, or none)."""
        return health.cluster_problems(self.cluster_view())

    def audit_facts(self) -> dict[str, Any]:
        """What the audit's checks need about where things are on this substrate (sshd config per host, how to
        look at an uplink); defaults are a real machine's."""
        return {"sshd_config": {name: "/etc/ssh/sshd_config" for name in self.hosts}, "uplink_probes": {}}

    # -- the trading stack, on any substrate ---------------------------------------------------------
    def of(self, service: str, site: str | None = None) -> list[Host]:
        return [h for h in self.hosts.values() if h.service == service and (site is None or h.site == site)]

    def host(self, ref: str) -> Host:
        """A host by its short name (`sz1-orderdb-1`) or a run-time pick (`@database-leader`, `@vip-holder:SITE`)."""
        if ref == "@database-leader":
            leader = self.database_leader()
            if leader is None:
                raise SubstrateError("no database leader to pick for @database-leader")
            return self.hosts[leader]
        if ref.startswith("@vip-holder:"):
            site = ref.split(":", 1)[1]
            holder = self.vip_holders().get(site)
            if holder is None:
                raise SubstrateError(f"nobody holds the VIP of site {site!r}")
            return self.hosts[holder]
        if ref in self.hosts:  # a host's own name (a real estate's)
            return self.hosts[ref]
        full = f"{self.name}-{ref}"  # or as the lab names hosts: prefixed with the stack
        if full not in self.hosts:
            raise InputError(f"no host {ref!r} in stack {self.name!r}; hosts: "
                             + ", ".join(h.removeprefix(f"{self.name}-") for h in sorted(self.hosts)))
        return self.hosts[full]

    def endpoints(self) -> list[str]:
        """What clients are given: every site's public address (reached over every carrier)."""
        return [f"http://{vip}:{ports.ORDERS}" for _, vip in sorted(self.vips.items())]

    def venue_admins(self) -> list[str]:
        return [f"http://{addr}:{ports.VENUE_ADMIN}" for addr in self.outputs["upstreams"].values()]

    def http(self, host: str, method: str, url: str, body: Any = None, timeout: float = 1.0) -> tuple[int, Any]:
        """One HTTP request from `host` (curl there). (0, None) if no answer."""
        import json

        argv = ["curl", "-s", "-m", f"{timeout:g}", "-o", "-", "-w", "\n%{http_code}", "-X", method, url]
        if body is not None:
            argv += ["-H", "content-type: application/json", "-d", json.dumps(body)]
        done = self.run(host, argv, timeout=timeout + 5)
        text, _, code = done.stdout.rpartition("\n")
        try:
            return int(code or 0), json.loads(text) if text.strip() else None
        except ValueError:
            return int(code or 0) if code.isdigit() else 0, None

    def live_hosts(self, hosts: list[Host]) -> list[Host]:
        alive = each(hosts, lambda h: self.live(h.name))
        return [h for h in hosts if alive[h.name]]

    def database_vantage(self) -> Host:
        """A live router host, whose local HAProxy leads to the database primary: where the system of record
        is read from (`db_dsn`)."""
        return next(h for h in self.of("router") if self.programs(h.name).get("haproxy") == "running")

    def db_dsn(self) -> str:
        password = self.secrets(["dbAppPassword"])["dbAppPassword"]
        return (f"host=127.0.0.1 port={ports.DB_PROXY} user=tradestack password={password} dbname=tradestack "
                "connect_timeout=3")

    def database_leader(self) -> str | None:
        """The host whose Patroni says it is the primary (asked from a live router host)."""
        probes = self.live_hosts(self.of("router"))[:1]  # one vantage point: a dead member costs one timeout
        if not probes:
            return None
        dbs = self.of("orderdb")
        codes = each(dbs, lambda db: self.http(probes[0].name, "GET", f"http://{db.lan_address}:{ports.PATRONI}/primary",
                                               timeout=0.5)[0])
        return next((db.name for db in dbs if codes[db.name] == 200), None)

    def cluster_members(self, probe: str, dbs: list[Host] | None = None) -> list[dict[str, Any]]:
        """Patroni's /cluster members as the first member of `dbs` that answers sees them (asked from `probe`)."""
        for db in self.of("orderdb") if dbs is None else dbs:
            code, cluster = self.http(probe, "GET", f"http://{db.lan_address}:{ports.PATRONI}/cluster", timeout=0.5)
            if code == 200 and isinstance(cluster, dict):
                return list(cluster.get("members", []))
        return []

    def database_members(self) -> dict[str, str]:
        """Patroni's view: member -> role (leader, sync_standby, replica), from any live member; a synchronous
        standby that does not stream yet counts as a replica (health.synchronous_standbys)."""
        for probe in self.live_hosts(self.of("router"))[:1]:
            members = self.cluster_members(probe.name)
            if members:
                syncs = health.synchronous_standbys(members)
                return {m["name"]: "replica" if m["role"] == "sync_standby" and m["name"] not in syncs
                        else m["role"] for m in members}
        return {}

    def breakers(self) -> dict[str, dict[str, str]]:
        """Router host -> venue -> breaker state, from each live router's /venues."""
        def ask(router: Host) -> dict[str, str] | None:
            if not self.live(router.name):
                return None
            code, body = self.http(router.name, "GET", f"http://{router.lan_address}:{ports.ROUTER}/venues",
                                   timeout=0.5)
            if code == 200 and isinstance(body, dict):
                return {str(v.get("venue")): str(v.get("state")) for v in body.get("venues", [])}
            return None
        answers = each(self.of("router"), ask)
        return {name: states for name, states in answers.items() if states is not None}

    def vip_ready(self, site: str, timeout: float = 2.0) -> int:
        """The HTTP status a client gets from the site VIP's readiness check (0: no answer)."""
        return self.http(self.clients_host, "GET", f"http://{self.vips[site]}:{ports.ORDERS}/readyz",
                         timeout=timeout)[0]
