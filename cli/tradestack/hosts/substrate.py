"""Real machines over SSH as a substrate. Every probe and fault is a command on a host over SSH (argv, pinned
host keys, `sudo -n` where the hosts file says so); faults are planned as commands first (hosts/plan.py), so
`--dry-run` shows exactly what will run where.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


from ..adapters import ssh, supervisord, systemd
from ..adapters.commands import CommandResult, run as run_here
from ..errors import InputError
from ..hostsettings import HostSettings
from ..polling import until_clear, wait_for
from ..substrates.faults import Fault
from ..substrates.inventory import read_hosts
from ..substrates.base import (AccessFiles, Actuator, HostTraits, Process, Substrate, SubstrateError,
                               each)
from . import plan
from .load import Estate, load_hosts_file
from .stack import HostsStack, access_dir


# How long a host has to answer whether it is up, or which addresses it holds, before it counts as down. A machine
# that lost power answers nothing, and the drills' observer asks these every sample: with 5 s, one sample during a
# site's power loss took over 5 s and the drill's watch coverage fell below its bound (make test, site-power-loss
# through hosts: 86 %). A live host answers through its SSH master in well under a second at peak.
ANSWER_S = 3.0


POWER_S = 60.0   # how long a power command (a BMC's) may take


class HostsActionError(SubstrateError):
    """A command of a fault or its inverse failed on a host."""


def control_dir() -> Path:
    """Short (unix socket paths are limited), private, and shared by this user's processes: one SSH master
    connection per host serves every probe."""
    path = Path(tempfile.gettempdir()) / f"tradestack-ssh-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


class HostsSubstrate(Substrate):
    kind = "hosts"

    def __init__(self, stack: HostsStack, estate: Estate | None = None):
        self.stack = stack
        self.estate = estate or load_hosts_file(stack.hosts_file_path())
        files = stack.access_files()
        self._files = files
        hosts = read_hosts(files.inventory)
        outputs = stack.outputs()
        super().__init__(stack.name, self.estate.topology, outputs, hosts, stack.host_settings,
                         topology_file=self.estate.topology_path,
                         traits=HostTraits(**self.estate.spec.traits.model_dump()),
                         clients_host=str(outputs["clients"]["host"]),
                         work_dir=Path(stack.host_settings.state_root) / f"{stack.name}-drills")
        self._options = ssh.SshOptions(self.estate.private_key, files.known_hosts, control_dir=control_dir())
        self._targets = {name: ssh.SshTarget(address, self.estate.spec.ssh.user, self.estate.spec.ssh.port)
                         for name, (address, _) in plan.machines(self.estate).items()}
        self._lan = {h.name: h.lan_interface for h in self.estate.spec.hosts}

    @classmethod
    def open(cls, name: str) -> HostsSubstrate:
        return cls(HostsStack(name))

    @staticmethod
    def lifecycle(name: str, hosts_file: Path | None, host_settings: HostSettings | None,
                  clusters: bool | None = None) -> HostsStack:
        if clusters:
            raise InputError("a hosts file does not declare Kubernetes clusters yet: the kubernetes substrate "
                             "runs on the lab for now")
        return HostsStack(name, hosts_file, host_settings=host_settings)

    # -- primitives --------------------------------------------------------------------------------
    def _argv(self, argv: Sequence[str]) -> list[str]:
        return (["sudo", "-n"] if self.estate.spec.ssh.become == "sudo" else []) + list(argv)

    def _target(self, host: str) -> ssh.SshTarget:
        if host not in self._targets:
            raise InputError(f"no host {host!r} in the hosts file")
        return self._targets[host]

    def run(self, host: str, argv: Sequence[str], *, input: str | None = None, timeout: float = 30.0,
            env: Mapping[str, str] | None = None) -> CommandResult:
        return ssh.run(self._options, self._target(host), self._argv(argv), input=input, timeout=timeout,
                       secret_env=env)

    def spawn(self, host: str, argv: Sequence[str]) -> Process:
        return ssh.RemoteProcess(self._options, self._target(host), self._argv(argv))

    def fetch(self, host: str, path: Path) -> Path:
        local = access_dir(self.name, self.stack.home) / "fetched" / host / path.name
        wal = local.with_name(local.name + "-wal")
        try:
            ssh.fetch(self._options, self._target(host), path, local)
        except FileNotFoundError:
            local.unlink(missing_ok=True)
            return local  # does not exist: the caller sees there is nothing yet
        try:  # an SQLite file being written keeps its newest pages beside it
            ssh.fetch(self._options, self._target(host), path.with_name(path.name + "-wal"), wal)
        except FileNotFoundError:
            wal.unlink(missing_ok=True)
        return local

    def put(self, host: str, local: Path, remote: Path) -> None:
        self.run(host, ["mkdir", "-p", str(remote.parent)])
        ssh.put(self._options, self._target(host), local, remote, prefix=self._argv([]))

    def tool_argv(self, host: str) -> list[str]:
        return [f"{self.settings.software_root}/{self.name}/venv/bin/python", "-m", "tradestack"]

    def programs(self, host: str) -> dict[str, str]:
        if self.traits.supervisor == "supervisord":
            # over its socket with the host's python3, not `supervisorctl status` (0.35 s of CPU per question)
            argv, script = supervisord.remote_query(plan.supervisor_conf(self.settings.state_root, host))
            return supervisord.parse_remote(self.run(host, argv, input=script, timeout=10).stdout)
        done = self.run(host, ["systemctl", "list-units", "--type=service", "--all", "--no-legend", "--plain",
                               systemd.UNITS], timeout=10)
        return systemd.program_states(done.stdout)

    def vip_holders(self) -> dict[str, str | None]:
        gateways = [g for site in self.vips for g in self.of("gateway", site)]
        shown = each(gateways, lambda g: self.run(g.name, ["ip", "-4", "-o", "addr", "show", "dev",
                                                            self._lan[g.name], "up"], timeout=ANSWER_S).stdout)
        return {site: next((g.name for g in self.of("gateway", site) if f" {vip}/" in shown[g.name]), None)
                for site, vip in self.vips.items()}

    def live(self, host: str) -> bool:
        done = self.run(host, ["ip", "-o", "link", "show", "dev", self._lan.get(host, "lan0"), "up"],
                        timeout=ANSWER_S)
        return done.succeeded and bool(done.stdout.strip())

    def _bgp(self) -> list[tuple[str, str, str, bool]]:
        """(edge, interface, BGP state, interface up) for every uplink with a BGP protocol; one SSH call per edge,
        every edge at once."""
        def ask(site: Any) -> list[tuple[str, str, str, bool]]:
            edge = site.edge
            done = self.run(edge.name, ["sh", "-c", '"$@" show protocols; echo @@links; ip -o link show up', "sh",
                                        *edge.birdc.split()], timeout=10)
            protocols, _, links = done.stdout.partition("@@links")
            states = {c[0]: (c[5] if len(c) > 5 else c[3]) for line in protocols.splitlines()
                      if len(c := line.split()) >= 4 and c[1] == "BGP"}
            up = {line.split(":")[1].strip().split("@")[0] for line in links.splitlines() if line.count(":") >= 2}
            return [(edge.name, u.interface, states.get(u.bgp_protocol, "absent"), u.interface in up)
                    for u in edge.uplinks.values() if u.bgp_protocol is not None]
        sites = self.estate.spec.sites
        found = each(sites, ask, key=lambda s: s.name)
        return [row for s in sites for row in found[s.name]]

    def routing_problems(self) -> list[str]:
        return [f"BGP session down: {edge}/{iface}: {state}" for edge, iface, state, up in self._bgp()
                if up and state != "Established"]

    def wait_routing(self, timeout: float = 30.0) -> list[str]:
        return until_clear(self.routing_problems, timeout)

    def network_signals(self) -> dict[str, int]:
        return {"bgp_established": sum(state == "Established" for _, _, state, _ in self._bgp())}

    def uplink_states(self, site: str) -> dict[str, bool | None]:
        spec = next((s for s in self.estate.spec.sites if s.name == site), None)
        if spec is None:
            return {}
        out: dict[str, bool | None] = {}
        for carrier, uplink in spec.edge.uplinks.items():
            done = self.run(spec.edge.name, ["ip", "-o", "link", "show", "dev", uplink.interface], timeout=5)
            out[carrier] = None if not done.succeeded else ("state UP" in done.stdout and "<" in done.stdout
                                                             and ",UP" in done.stdout.split(">")[0])
        return out

    def fault_plan(self, fault: Fault, resolve_now: bool = True) -> plan.FaultPlan:
        """The fault as commands per host; `resolve_now=False` (a dry run, a check) stands any database host in
        for `@database-leader` and any gateway of the site for `@vip-holder:SITE`."""
        def resolve(ref: str) -> str:
            if resolve_now or not ref.startswith("@"):
                return self.host(ref).name
            service, site = ("orderdb", None) if ref == "@database-leader" else ("gateway", ref.split(":", 1)[1])
            candidates = self.of(service, site)
            if not candidates:
                raise InputError(f"nothing in the stack can be {ref}")
            return candidates[0].name
        return plan.fault_plan(fault, self.estate, self.settings.state_root, resolve)

    def host_actuator(self, fault: Fault) -> Actuator:
        planned = self.fault_plan(fault)

        def inject() -> None:
            self.execute(planned.inject)

        def restore(step: Any) -> str | None:
            self.execute(planned.restore, on_step=step)
            if planned.reroutes:
                step("waiting for BGP sessions to be Established again")
                self.wait_routing(30)
            return self.boot_report(planned.booted) if planned.booted else None
        return Actuator(planned.text, inject, restore, planned.hosts)

    def boot_report(self, hosts: Sequence[str]) -> str:
        """For hosts that were switched on: each tradestack unit's seconds from the host's manager starting (power
        back) to the unit active, as the journal keeps it."""
        shown = each(list(hosts), lambda h: self.run(h, plan.UNIT_TIMES, timeout=10).stdout, key=lambda h: h)
        parts = []
        for host in hosts:
            times = systemd.active_after_start(shown[host])
            parts.append(f"{host} booted, units active after power on: "
                         + (", ".join(f"{u} {t:g} s" for u, t in sorted(times.items(), key=lambda kv: kv[1]))
                            or "none"))
        return "; ".join(parts)

    def execute(self, commands: Sequence[plan.Command], on_step: Any = lambda s: None) -> None:
        """Run the commands, every host's at once and each host's in order (a power loss takes a site's hosts
        down together, not one SSH round trip after another); a failed one raises after the rest were tried
        (a restore does all it can)."""
        by_host: dict[str, list[plan.Command]] = {}
        for command in commands:
            by_host.setdefault(command.host, []).append(command)

        def on(host: str) -> list[str]:
            failed = []
            for command in by_host[host]:
                if command.local:  # about the host, run here: its power switch
                    on_step(f"{command.host}: {command.argv[0]} (here)")
                    done = run_here(list(command.argv), timeout=POWER_S)
                    if not done.succeeded:
                        failed.append(f"here, for {command.host}: {command.argv[0]} exited {done.rc}: "
                                      f"{done.why(200)}")
                        break  # a host whose power did not switch is not waited for
                    continue
                if command.wait_s:
                    on_step(f"waiting on {command.host}: {command.argv[-1]}")
                    if not wait_for(lambda c=command: self.run(c.host, c.argv, input=c.stdin).succeeded,
                                    command.wait_s, 0.5):
                        failed.append(f"{command}: not true after {command.wait_s:g} s")
                    continue
                done = self.run(command.host, command.argv, input=command.stdin)
                if not done.succeeded:
                    failed.append(f"{command.host}: {command.argv[0]} exited {done.rc}: {done.why(200)}")
            return failed
        failures = each(list(by_host), on, key=lambda host: host)
        failed = [f for host in by_host for f in failures[host]]
        if failed:
            raise HostsActionError("; ".join(failed))

    def check_host_fault(self, fault: Fault) -> None:
        self.fault_plan(fault, resolve_now=False)

    def host_dry_run(self, fault: Fault) -> list[str]:
        """Every command the fault and its inverse run, per host."""
        planned = self.fault_plan(fault, resolve_now=False)
        return [f"inject  {c}" for c in planned.inject] + [f"restore {c}" for c in planned.restore]

    def secrets(self, names: list[str]) -> dict[str, str]:
        return self.stack.secrets(names)

    def access_files(self) -> AccessFiles:
        return self._files

    def config(self) -> dict[str, str]:
        return self.stack.config()

    def host_audit_facts(self) -> dict[str, Any]:
        probes: dict[str, dict[str, dict[str, str]]] = {}
        for site in self.estate.spec.sites:
            target = self._target(site.edge.name)
            for carrier, uplink in site.edge.uplinks.items():
                # run here, reaching the edge router over SSH (it is not in the inventory: nothing is deployed there)
                probe = shlex.join([*self._options.argv(target), ssh.remote_command(
                    self._argv(["ip", "-o", "link", "show", "dev", uplink.interface]))])
                probes.setdefault(site.name, {})[carrier] = {"router": site.edge.name, "probe": probe}
        return {"sshd_config": {h.name: h.sshd_config for h in self.estate.spec.hosts}, "uplink_probes": probes}
