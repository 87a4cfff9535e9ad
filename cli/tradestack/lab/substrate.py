"""The lab as a substrate: a deployed lab stack's hosts are network namespaces on this machine.

Commands run with `ip netns exec`; every host shares this machine's filesystem (a file on a host is the
file here); faults act on the lab's own links, namespaces and processes (lab/actuators.py).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..adapters import commands, supervisord
from ..adapters.commands import CommandResult
from ..errors import InputError
from ..hostsettings import HostSettings
from ..substrates.base import AccessFiles, Actuator, HostTraits, LocalProcess, Process, Substrate
from ..substrates.clusters import SiteCluster
from ..substrates.faults import Fault
from ..substrates.inventory import read_hosts
from ..topology import load_topology
from . import actuators, cluster, netlink, routing
from . import faults as lab_faults
from .stack import LabStack


# one kernel, one filesystem, no systemd: see playbooks/group_vars/all.yml
LAB_TRAITS = HostTraits(shared_filesystem=True, supervisor="supervisord", install_packages=False, manage_sshd=False,
                        time_sync=False)


class LabSubstrate(Substrate):
    """A deployed lab stack; with clusters, it hosts them too (substrates.clusters.ClusterHosting)."""

    kind = "lab"
    disposable = True

    def __init__(self, stack: LabStack):
        self.stack = stack
        if stack.config().get("tradestack:machines") == "true":
            raise InputError(f"stack {stack.name!r} boots its hosts as machines, which are deployed as real hosts: "
                             f"`tradestack stack hosts-file --stack {stack.name} --key KEY --out FILE`, then `tradestack "
                             "stack up --stack NAME --hosts FILE` and deploy that stack (drills on machines: not yet)")
        files = stack.access_files()
        hosts = read_hosts(files.inventory)
        outputs = stack.outputs()
        settings = stack.host_settings
        topology_file = stack.topology_path()
        super().__init__(stack.name, load_topology(topology_file), outputs, hosts, settings,
                         topology_file=topology_file, traits=LAB_TRAITS,
                         clients_host=str(outputs["clients"]["netns"]),
                         # drill ledgers live on the hosts' shared disk: the clients write them where we read
                         work_dir=Path(settings.state_root) / f"{stack.name}-drills")
        self._files = AccessFiles(files.inventory, files.private_key, files.known_hosts)

    @classmethod
    def open(cls, name: str) -> LabSubstrate:
        return cls(LabStack(name))

    @staticmethod
    def lifecycle(name: str, topology: Path | None, host_settings: HostSettings | None,
                  clusters: bool | None = None, machines: bool | None = None) -> LabStack:
        """`clusters`: one Kubernetes cluster per site that runs a stateless service; `machines`: every host but the
        edge routers a booted Debian machine (None: as the stack has it)."""
        return LabStack(name, topology, host_settings=host_settings, clusters=clusters, machines=machines)

    # -- primitives --------------------------------------------------------------------------------
    def run(self, host: str, argv: Sequence[str], *, input: str | None = None, timeout: float = 30.0,
            env: Mapping[str, str] | None = None) -> CommandResult:
        return commands.run(["ip", "netns", "exec", host, *argv], input=input, timeout=timeout, env=env)

    def spawn(self, host: str, argv: Sequence[str]) -> Process:
        # a session of its own: Ctrl-C on the caller must not kill it mid-write
        return LocalProcess(subprocess.Popen(["ip", "netns", "exec", host, *argv], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                        start_new_session=True))

    def fetch(self, host: str, path: Path) -> Path:
        return path  # one filesystem: the host's file is ours

    def put(self, host: str, local: Path, remote: Path) -> None:
        if local.resolve() != remote.resolve():  # one filesystem: nothing to copy when it is the same file
            remote.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, remote)

    def tool_argv(self, host: str) -> list[str]:
        return [sys.executable, "-m", "tradestack"]

    def programs(self, host: str) -> dict[str, str]:
        return supervisord.program_states(supervisord.socket_of(self.supervisor_conf(host)))

    def vip_holders(self) -> dict[str, str | None]:
        """Site -> the gateway host that has the site's VIP on its LAN port (a port that is up: a dead host
        keeps the address configured, but holds nothing)."""
        holders: dict[str, str | None] = {}
        for site, vip in self.vips.items():
            holders[site] = next((g.name for g in self.of("gateway", site)
                                  if (state := netlink.link_state(g.name, "lan0") or {}).get("up")
                                  and any(a.startswith(f"{vip}/") for a in state.get("addresses", []))), None)
        return holders

    def live(self, host: str) -> bool:
        return bool((netlink.link_state(host, "lan0") or {}).get("up"))

    def routing_problems(self) -> list[str]:
        return [f"BGP session down: {p}" for p in routing.unconverged(self.stack.daemons_dir)]

    def wait_routing(self, timeout: float = 30.0) -> list[str]:
        return routing.wait_converged(self.stack.daemons_dir, timeout)

    def network_signals(self) -> dict[str, int]:
        return {"bgp_established": routing.established(self.stack.daemons_dir)}

    def uplink_states(self, site: str) -> dict[str, bool | None]:
        out: dict[str, bool | None] = {}
        for uplink in next(s for s in self.topology.sites if s.name == site).uplinks:
            state = netlink.link_state(f"{self.name}-{site}-edge", f"c-{uplink.carrier}")
            out[uplink.carrier] = None if state is None else bool(state["up"] and state["oper"] == "UP")
        return out

    def host_actuator(self, fault: Fault) -> Actuator:
        return actuators.actuator(self, fault)

    def check_host_fault(self, fault: Fault) -> None:
        actuators.check(self, fault)

    def secrets(self, names: list[str]) -> dict[str, str]:
        return self.stack.secrets(names)

    def config(self) -> dict[str, str]:
        return self.stack.config()

    def access_files(self) -> AccessFiles:
        return self._files

    # -- the clusters it hosts -----------------------------------------------------------------------
    def site_clusters(self) -> dict[str, SiteCluster]:
        kubeconfigs = self.stack.kubeconfigs()
        return {site: SiteCluster(site, kubeconfigs[site], tuple(n.node_ip for n in spec.nodes), spec.pod_cidr)
                for site, spec in self.stack.cluster_specs().items() if site in kubeconfigs}

    def node_loss(self, site: str, node: str | None = None) -> Actuator:
        return actuators.node_loss(self, site, node)

    def api_server_cut(self, site: str) -> Actuator:
        return actuators.api_server_cut(self, site)

    def load_images(self, site: str, archives: Sequence[Path]) -> None:
        cluster.import_images(self.stack.cluster_specs()[site], list(archives))

    def host_audit_facts(self) -> dict[str, Any]:
        return {"sshd_config": {name: str(self.stack.daemons_dir / name / "sshd_config") for name in self.hosts},
                "uplink_probes": {site.name: {u.carrier: {"router": f"{self.name}-{site.name}-edge",
                                                          "probe": f"ip netns exec {self.name}-{site.name}-edge "
                                                                   f"ip -o link show dev c-{u.carrier}"}
                                              for u in site.uplinks} for site in self.topology.sites}}

    # -- the lab's own -----------------------------------------------------------------------------
    def supervisor_conf(self, host: str) -> Path:
        return self.settings.host_dir(host) / "supervisor" / "supervisord.conf"

    def links_down(self, group: str, down: bool) -> list[str]:
        return lab_faults.set_group(self.fault_map, group, failed=down)
