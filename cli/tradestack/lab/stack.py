"""A lab stack: the lab program on the local Pulumi backend, plus the access files it produces."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..adapters.ansible import ssh_access_vars
from ..adapters.pulumi import ManagedStack, OpResult, StackSpec, ensure_private
from ..errors import EnvironmentProblem, InputError
from ..hostsettings import HostSettings
from ..paths import state_dir
from ..topology import load_topology
from . import cluster, hostsfile, machines, netlink, switch
from .netlink import LabError
from .plan import plan_lab
from .privileges import require_net_admin
from .program import program

PROJECT = "tradestack-lab"


@dataclass(frozen=True)
class AccessFiles:
    inventory: Path
    private_key: Path
    known_hosts: Path


def workdir(stack: str, home: Path | None = None) -> Path:
    return (home or state_dir()) / "lab" / stack


def access_dir(stack: str, home: Path | None = None) -> Path:
    return (home or state_dir()) / "stacks" / stack


class LabStack(ManagedStack):
    """The lab for one stack name. `topology` is only needed to create the stack or change it."""

    disposable = True  # a lab may be broken and rebuilt without asking

    def __init__(self, name: str, topology: Path | None = None, mgmt_slot: int | None = None,
                 host_settings: HostSettings | None = None, clusters: bool | None = None,
                 machines: bool | None = None):
        self.name = name
        self.home = state_dir()  # pinned: every path of this stack stays under one state dir
        config = {"tradestack:workdir": str(workdir(name, self.home))}
        if topology is not None:
            plan_lab(load_topology(topology), name, mgmt_slot)  # fail on bad input before Pulumi starts
            config["tradestack:topology"] = str(Path(topology).resolve())
        if mgmt_slot is not None:
            config["tradestack:mgmtSlot"] = str(mgmt_slot)
        if clusters is not None:  # None: as the stack has it
            config["tradestack:clusters"] = "true" if clusters else "false"
        self.clusters = clusters
        self.machines = machines
        if machines is not None:  # None: as the stack has it
            if machines and clusters:
                raise InputError("a lab of booted machines with Kubernetes clusters is not supported yet: the "
                                 "clusters' nodes stay namespaces (issue 32)")
            config["tradestack:machines"] = "true" if machines else "false"
        if host_settings is not None:
            config |= host_settings.to_config()
        self.topology = topology
        self._spec = StackSpec(PROJECT, name, program, config)

    def expected_resources(self) -> int | None:
        if self.topology is None:
            return None
        plan = plan_lab(load_topology(self.topology), self.name, clusters=bool(self.clusters))
        return (2 + 2 * len(plan.namespaces) + len(plan.bridges) + len(plan.links) + len(plan.routers)
                + len(plan.hosts) + sum(1 for h in plan.hosts if h.gateway)  # sshd or machine; default route
                + len(plan.edges) + 5 * len(plan.clusters)
                + (2 if self.machines else 0))  # a lab of machines: its package proxy and time server

    def hosts_file(self, private_key: Path) -> dict[str, Any]:
        """This lab's hosts as a hosts file describes an estate (lab/hostsfile.py), to adopt as a `hosts` stack."""
        return hostsfile.hosts_file(self, private_key)

    def boots_machines(self) -> bool:
        """Whether this lab's hosts are booted machines (as given here, else as the stack has it)."""
        return self._wants(self.machines, "machines")

    def power(self, host: str, action: str) -> str:
        """A machine's power switch, as a BMC offers one (`off`, `on`, `status`); its state after (`on`/`off`).
        What the hosts file of a lab of machines names as its power commands (switch.py, its own entry point)."""
        if action not in switch.ACTIONS:
            raise InputError(f"power {action!r}: say off, on or status")
        return switch.power(self._machine(host), action)

    def _machine(self, host: str) -> machines.Machine:
        """The machine `host` of this lab, found by its disk without asking Pulumi (a drill switches power at the
        moment of its fault). Pulumi is asked only to say why there is no such machine."""
        found = switch.machine_in(workdir(self.name, self.home), host)
        if found is not None:
            return found
        if not self._pulumi.exists():
            raise InputError(f"no stack {self.name!r}")
        if not self.boots_machines():
            raise InputError(f"stack {self.name!r} runs its hosts as namespaces, which have no power switch: a lab of "
                             "machines does (`stack up --machines`)")
        raise InputError(f"stack {self.name!r} has no machine {host!r}")

    def _needs_topology(self) -> None:
        if self.topology is None and not self._pulumi.exists():
            raise InputError(f"stack {self.name!r} does not exist yet: give --topology FILE")

    def _wants(self, given: bool | None, setting: str) -> bool:
        """A stack setting that is on or off: as given to this command, else as the stack has it."""
        if given is not None:
            return given
        return self._pulumi.exists() and self._pulumi.config().get(f"tradestack:{setting}") == "true"

    def _needs_toolchain(self) -> None:
        """A stack with clusters needs the Kubernetes toolchain (`make setup-kubernetes`): said before Pulumi
        starts, so that nothing is half-created for want of a program."""
        problems = cluster.toolchain_problems() if self._wants(self.clusters, "clusters") else []
        if problems:
            raise EnvironmentProblem("this stack runs a Kubernetes cluster per site, and this machine cannot yet: "
                                     + "; ".join(problems))

    def _needs_image(self) -> None:
        """A stack of machines needs their base image: built (or found in the cache) before Pulumi starts, once,
        rather than by every machine's resource at the same time."""
        if self.boots_machines():
            if shutil.which(machines.NSPAWN) is None:
                raise EnvironmentProblem("this stack boots its hosts as machines and systemd-nspawn is not "
                                         "installed: run `make setup` (package systemd-container)")
            machines.build_image(machines.lab_image())

    def preview(self, on_event: Callable[[Any], None] | None = None) -> OpResult:
        require_net_admin()
        self._needs_topology()
        self._needs_toolchain()
        return self._pulumi.preview(on_event)

    def up(self, on_event: Callable[[Any], None] | None = None) -> tuple[OpResult, AccessFiles]:
        require_net_admin()
        self._needs_topology()
        self._needs_toolchain()
        self._needs_image()
        result = self._pulumi.up(on_event)
        return result, self.write_access_files()

    def refresh(self, on_event: Callable[[Any], None] | None = None) -> OpResult:
        require_net_admin()
        return self._pulumi.refresh(on_event)

    def repair(self, netns: list[str]) -> int:
        """Put back what the stack owns in these namespaces after their hosts crashed (their sshd; the routes the
        kernel dropped with the LAN port): only those resources are read and re-applied, not the whole lab (a
        whole refresh and up took 20-30 s of a drill's restore). Returns how many resources it looked at."""
        require_net_admin()
        wanted = set(netns)
        urns = [r["urn"] for r in self._pulumi.resources() if r["inputs"].get("netns") in wanted]
        if not urns:  # every host of the lab has at least its sshd: finding none is a wrong name, not a repair
            raise LabError(f"stack {self.name} has no resources in {', '.join(sorted(wanted))}")
        self._pulumi.refresh(targets=urns)
        self._pulumi.up(targets=urns)
        return len(urns)

    def destroy(self, on_event: Callable[[Any], None] | None = None) -> OpResult:
        require_net_admin()
        settings = self.host_settings
        result = self._pulumi.destroy(on_event)
        shutil.rmtree(workdir(self.name, self.home), ignore_errors=True)
        # the lab's hosts share this machine's disk: what a deploy left on them goes with them
        for path in [*Path(settings.state_root).glob(f"{self.name}-*"), Path(settings.software_root) / self.name]:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        shutil.rmtree(access_dir(self.name, self.home), ignore_errors=True)
        return result

    def topology_path(self) -> Path:
        """The topology file the stack was brought up from (its configuration records it)."""
        if self.topology is not None:
            return Path(self.topology)
        return Path(self._pulumi.config()["tradestack:topology"])

    def access_files(self) -> AccessFiles:
        """The inventory, key and known_hosts written by `up` (rewritten if missing)."""
        d = access_dir(self.name, self.home)
        files = AccessFiles(d / "inventory.yml", d / "id_ed25519", d / "known_hosts")
        if not all(p.exists() for p in (files.inventory, files.private_key, files.known_hosts)):
            return self.write_access_files()
        return files

    @property
    def daemons_dir(self) -> Path:
        """Where this stack's BIRD and sshd keep config, sockets and logs (one folder per namespace)."""
        return workdir(self.name, self.home)

    def leftovers(self) -> list[str]:
        """Namespaces with this stack's prefix, and mounts under its work directory (a machine's disk), that exist
        now (after destroy: should be none)."""
        return [*netlink.list_namespaces(f"{self.name}-"), *machines.mounts_under(workdir(self.name, self.home))]

    def write_access_files(self) -> AccessFiles:
        """SSH key, pinned known_hosts and the Ansible inventory, mode 0600, under the state dir."""
        outs = self._pulumi.outputs(secrets_too=True)
        d = access_dir(self.name, self.home)
        key = ensure_private(d / "id_ed25519", outs["ssh_private_key"])
        known = ensure_private(d / "known_hosts", outs["known_hosts"])
        inventory = yaml.safe_load(outs["inventory"])
        inventory["all"]["vars"].update(ssh_access_vars(key, known))
        inv = ensure_private(d / "inventory.yml", yaml.safe_dump(inventory, sort_keys=False))
        for site, text in (outs.get("kubeconfigs") or {}).items():
            ensure_private(d / "kube" / f"{site}.kubeconfig", text)
        return AccessFiles(inv, key, known)

    def cluster_specs(self) -> dict[str, cluster.ClusterSpec]:
        """The site clusters this stack runs (none unless it was brought up with clusters)."""
        config = self._pulumi.config() if self._pulumi.exists() else {}
        if config.get("tradestack:clusters") != "true":
            return {}
        slot = config.get("tradestack:mgmtSlot")
        plan = plan_lab(load_topology(self.topology_path()), self.name, int(slot) if slot else None, clusters=True)
        return {c.site: cluster.spec_for(self.name, c, workdir(self.name, self.home)) for c in plan.clusters}

    def kubeconfigs(self) -> dict[str, Path]:
        """Each site cluster's admin kubeconfig (written by `up`; none when the stack has no clusters)."""
        d = access_dir(self.name, self.home) / "kube"
        return {p.stem: p for p in sorted(d.glob("*.kubeconfig"))}
