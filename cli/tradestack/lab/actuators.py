"""Each fault kind on the lab: an actuator and its inverse, acting on the lab's own links, namespaces and
processes (netlink, nftables in the namespace's `inet tradestack` table, tc, signals).

`actuator` resolves a fault when it is injected (so `@database-leader` means the leader at that moment,
and the restore undoes exactly what was done).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import ports
from ..errors import InputError
from ..polling import wait_for
from ..substrates import faults
from ..substrates.base import Actuator, FaultRefused, SubstrateError
from . import cluster, netlink

if TYPE_CHECKING:
    from .cluster import ClusterSpec
    from .substrate import LabSubstrate

NFT_TABLE = "tradestack"      # created empty in every lab namespace by the lab stack


class LabActionError(SubstrateError):
    """A fault could not be applied or undone on the lab."""


def check(lab: LabSubstrate, fault: faults.Fault) -> None:
    """Fail before anything is touched if the fault names something the stack does not have."""
    match fault:
        case faults.LinkDown(group=g) | faults.PowerLoss(group=g) if g not in lab.fault_map:
            raise InputError(f"risk group {g!r} is not in the stack's fault map; known: "
                             + ", ".join(sorted(lab.fault_map)))
        case faults.Blackhole(carrier=c) | faults.Throttle(carrier=c):
            carrier_ns(lab, c)
        case faults.HostCrash(host=h) | faults.HostFreeze(host=h) | faults.ProcessKill(host=h) if not h.startswith("@"):
            lab.host(h)
        case faults.Partition(sites=[a, b]):
            for site in (a, b):
                if site not in lab.outputs["site_prefixes"]:
                    raise InputError(f"no site {site!r} in the topology")
        case faults.Upstream(upstream=u) if u not in lab.outputs["upstreams"]:
            raise InputError(f"no upstream {u!r}; known: {', '.join(sorted(lab.outputs['upstreams']))}")
        case faults.Reboot():
            raise FaultRefused(f"{fault.describe()}: the lab's namespaces have no init to reboot; a lab of booted "
                               "machines does it (stack up --machines, adopted as a hosts stack)")
        case faults.ClusterFault():  # a stack with clusters takes these before the hosts see them
            raise FaultRefused(f"{fault.describe()}: the lab's hosts do not apply it; it needs a stack on the "
                               "kubernetes substrate")
        case faults.LoadSpike():
            raise FaultRefused("a load spike is the drill engine's, not the lab's")


def actuator(lab: LabSubstrate, fault: faults.Fault) -> Actuator:
    """Resolve a fault against the lab now and return its inject/restore pair."""
    match fault:
        case faults.LinkDown(group=g):
            def restore_links(step: Callable[[str], None]) -> None:
                lab.links_down(g, False)
                step("waiting for BGP sessions to be Established again")
                lab.wait_routing(30)
            return Actuator(fault.describe(), lambda: lab.links_down(g, True) and None, restore_links,
                            tuple(lab.fault_map[g].get("hosts", [])))
        case faults.Blackhole(carrier=c):
            ns = carrier_ns(lab, c)

            def restore_blackhole(step: Callable[[str], None]) -> None:
                drop_all(ns, False)
                step("waiting for BGP sessions to be Established again")
                lab.wait_routing(30)
            return Actuator(fault.describe(), lambda: drop_all(ns, True), restore_blackhole)
        case faults.Throttle(carrier=c, rate_kbit=rate):
            return Actuator(fault.describe(), lambda: throttle(lab, c, rate) and None,
                            lambda step: throttle(lab, c, None) and None)
        case faults.HostCrash(host=h):
            host = lab.host(h).name
            return Actuator(f"host {host} crashes (every process killed, LAN port down)",
                            lambda: crash(host), lambda step: revive_many(lab, [host], step), (host,))
        case faults.PowerLoss(group=g):
            hosts = list(lab.fault_map[g]["hosts"])

            def power_off() -> None:
                lab.links_down(g, True)
                for host in hosts:
                    crash(host)

            def power_on(step: Callable[[str], None]) -> None:
                lab.links_down(g, False)
                revive_many(lab, hosts, step)
                step("waiting for BGP sessions to be Established again")
                lab.wait_routing(30)
            return Actuator(f"power lost in {g}: {len(hosts)} hosts crash, its links go down", power_off,
                            power_on, tuple(hosts))
        case faults.HostFreeze(host=h):
            host = lab.host(h).name
            return Actuator(f"host {host} frozen (SIGSTOP to every process)",
                            lambda: freeze(host, True) and None, lambda step: freeze(host, False) and None, (host,))
        case faults.ProcessKill(host=h, program=p):
            host = lab.host(h).name
            return Actuator(f"program {p} on host {host} killed", lambda: kill_program(lab, host, p) and None,
                            lambda step: wait_program(lab, host, p), (host,))
        case faults.Partition(sites=[a, b]):
            return Actuator(fault.describe(), lambda: partition(lab, a, b, True),
                            lambda step: partition(lab, a, b, False))
        case faults.Upstream(upstream=u, mode=m, latency_ms=ms):
            return Actuator(fault.describe(), lambda: venue_mode(lab, u, m, ms),
                            lambda step: venue_mode(lab, u, "normal"))
    raise FaultRefused(f"the lab cannot apply {fault.describe()}")


def cluster_of(lab: LabSubstrate, site: str) -> ClusterSpec:
    specs = lab.stack.cluster_specs()
    if site not in specs:
        raise FaultRefused(f"site {site!r} runs no Kubernetes cluster in stack {lab.name!r}"
                           + (f"; clusters run in {', '.join(sorted(specs))}" if specs else ""))
    return specs[site]


def node_loss(lab: LabSubstrate, site: str, node: str | None = None) -> Actuator:
    """A node of the site's cluster lost (the last one unless named): its kubelet killed and everything through
    its LAN port dropped (its pods go silent with it). The control plane, and every other node, reach each other
    over the management network and see it all."""
    spec = cluster_of(lab, site)
    nodes = {n.node: n for n in spec.nodes}
    if node is not None and node not in nodes:
        raise InputError(f"no node {node!r} in {spec.name}; nodes: {', '.join(nodes)}")
    lost = nodes[node] if node is not None else spec.nodes[-1]
    hooks = ("input", "forward", "output")
    matches = {"input": ("iifname",), "forward": ("iifname", "oifname"), "output": ("oifname",)}

    def cut(on: bool) -> None:
        if on:
            nft(lost.netns, "".join(f"add chain inet {NFT_TABLE} drill_node_{h} {{ type filter hook {h} priority -50; "
                                    "policy accept; }\n" for h in hooks)
                + "".join(f"add rule inet {NFT_TABLE} drill_node_{h} {m} lan0 drop\n" for h in hooks for m in matches[h]))
        else:
            nft(lost.netns, "".join(f"delete chain inet {NFT_TABLE} drill_node_{h}\n" for h in hooks
                                    if _has_chain(lost.netns, f"drill_node_{h}")))

    def inject() -> None:
        cluster.kill(spec, lost.component("kubelet"))
        cut(True)

    def restore(step: Callable[[str], None]) -> None:
        cut(False)
        step(f"starting {lost.node}'s kubelet again")
        cluster.revive(spec)
        cluster.wait_ready(spec, 120)
    return Actuator(f"site {site}'s Kubernetes node {lost.node} lost (kubelet killed, LAN port silent)", inject,
                    restore, (lost.netns,))


def api_server_cut(lab: LabSubstrate, site: str) -> Actuator:
    """The site cluster's API server cut off every network but loopback: the workers' kubelets (over the
    management network) and the operator lose it, the control-plane node's own components keep it. The cluster's
    pods are not touched."""
    spec = cluster_of(lab, site)
    chain = "drill_api_cut"

    def cut(on: bool) -> None:
        if on:
            nft(spec.netns, f"add chain inet {NFT_TABLE} {chain} {{ type filter hook input priority -50; "
                            "policy accept; }\n"
                            f"add rule inet {NFT_TABLE} {chain} iifname != \"lo\" tcp dport 6443 drop\n")
        elif _has_chain(spec.netns, chain):
            nft(spec.netns, f"delete chain inet {NFT_TABLE} {chain}\n")

    def restore(step: Callable[[str], None]) -> None:
        cut(False)
        step(f"waiting for {spec.name}'s nodes to be Ready again")
        cluster.wait_ready(spec, 120)
    return Actuator(f"site {site}'s Kubernetes API server ({spec.name}) cut off every network but loopback",
                    lambda: cut(True), restore, (spec.netns,))


# -- the lab's fault primitives ------------------------------------------------------------------------
def carrier_ns(lab: LabSubstrate, carrier: str) -> str:
    if carrier not in {c.name for c in lab.topology.carriers}:
        raise InputError(f"no carrier {carrier!r} in the topology")
    return f"{lab.name}-carrier-{carrier}"


def nft(ns: str, script: str) -> None:
    done = netlink.run_in(ns, ["nft", "-f", "-"], check=False, timeout=15, input=script)
    if done.returncode != 0:
        raise LabActionError(f"nft in {ns}: {done.stderr.strip()[:300]}")


def _has_chain(ns: str, chain: str) -> bool:
    return netlink.run_in(ns, ["nft", "list", "chain", "inet", NFT_TABLE, chain], check=False,
                          timeout=15).returncode == 0


def drop_all(ns: str, on: bool, chain: str = "drill_blackhole") -> None:
    """Every packet into, through and out of `ns` dropped (links stay up: a gray failure)."""
    hooks = ("input", "forward", "output")
    if on:
        nft(ns, "\n".join(f"add chain inet {NFT_TABLE} {chain}_{h} {{ type filter hook {h} priority -50; "
                          "policy drop; }" for h in hooks) + "\n")
    else:
        nft(ns, "".join(f"delete chain inet {NFT_TABLE} {chain}_{h}\n" for h in hooks
                        if _has_chain(ns, f"{chain}_{h}")))


def partition(lab: LabSubstrate, a: str, b: str, on: bool) -> None:
    """Traffic between two sites' prefixes dropped at both sites' edges."""
    prefixes = lab.outputs["site_prefixes"]
    for site in (a, b):
        if site not in prefixes:
            raise InputError(f"no site {site!r} in the topology")
    for site in (a, b):
        ns = f"{lab.name}-{site}-edge"
        if on:
            pa, pb = prefixes[a], prefixes[b]
            nft(ns, f"add chain inet {NFT_TABLE} drill_partition {{ type filter hook forward priority -50; "
                    "policy accept; }\n"
                    f"add rule inet {NFT_TABLE} drill_partition ip saddr {pa} ip daddr {pb} drop\n"
                    f"add rule inet {NFT_TABLE} drill_partition ip saddr {pb} ip daddr {pa} drop\n")
        elif _has_chain(ns, "drill_partition"):
            nft(ns, f"flush chain inet {NFT_TABLE} drill_partition\n"
                    f"delete chain inet {NFT_TABLE} drill_partition\n")


def throttle(lab: LabSubstrate, carrier: str, rate_kbit: int | None) -> list[str]:
    """Limit every link of a carrier's namespace to `rate_kbit` (tbf); None removes the limit."""
    ns = carrier_ns(lab, carrier)
    touched = []
    for ifname in netlink.interfaces_up(ns):
        if ifname == "lo":
            continue
        if rate_kbit is None:
            netlink.run_in(ns, ["tc", "qdisc", "del", "dev", ifname, "root"], check=False, timeout=15)
        else:
            netlink.run_in(ns, ["tc", "qdisc", "replace", "dev", ifname, "root", "tbf", "rate",
                                f"{rate_kbit}kbit", "burst", "16kbit", "latency", "200ms"])
        touched.append(ifname)
    return touched


def crash(host: str) -> None:
    """Every process of the host killed and its LAN port down."""
    netlink.kill_namespace_processes(host, signal.SIGKILL)
    netlink.set_link_up(host, "lan0", False)


def revive_many(lab: LabSubstrate, hosts: list[str], on_step: Callable[[str], None] = lambda s: None) -> None:
    """Crashed hosts come back as a rebooted host would: LAN ports up, the lab stack repairs their sshd
    and routes, their supervisor starts again and brings up every program from its configuration."""
    for host in hosts:
        netlink.set_link_up(host, "lan0", True)
    on_step(f"repairing {len(hosts)} host(s) (lab stack: sshd, routes)")
    lab.stack.repair(hosts)
    on_step(f"starting the supervisor of {', '.join(hosts)}")
    for host in hosts:
        conf = lab.supervisor_conf(host)
        if not conf.exists():
            raise LabActionError(f"{host} was never deployed (no {conf})")
        if lab.programs(host):
            continue  # already back
        done = netlink.run_in(host, ["supervisord", "-c", str(conf)], check=False, timeout=30)
        if done.returncode != 0:
            raise LabActionError(f"supervisord did not start on {host}: {done.stderr.strip()[:300]}")


def freeze(host: str, frozen: bool) -> list[int]:
    """SIGSTOP (or SIGCONT) every process of a host."""
    return netlink.kill_namespace_processes(host, signal.SIGSTOP if frozen else signal.SIGCONT)


def kill_program(lab: LabSubstrate, host: str, program: str) -> int:
    done = netlink.run_in(host, ["supervisorctl", "-c", str(lab.supervisor_conf(host)), "pid", program],
                          check=False, timeout=15)
    pid = done.stdout.strip()
    if not pid.isdigit() or pid == "0":
        raise LabActionError(f"{program} is not running on {host}: {done.stdout.strip() or done.stderr.strip()}")
    os.kill(int(pid), signal.SIGKILL)
    return int(pid)


def wait_program(lab: LabSubstrate, host: str, program: str, timeout: float = 30.0) -> None:
    """Its supervisor restarts a killed program; wait until it runs again."""
    if not wait_for(lambda: lab.programs(host).get(program) == "running", timeout, 0.5):
        raise LabActionError(f"{program} on {host} is not running again after {timeout:g} s")


def venue_mode(lab: LabSubstrate, upstream: str, mode: str, latency_ms: int = 0) -> None:
    addrs = lab.outputs["upstreams"]
    if upstream not in addrs:
        raise InputError(f"no upstream {upstream!r}; known: {', '.join(sorted(addrs))}")
    ns = f"{lab.name}-upstream-{upstream}"
    code, body = lab.http(ns, "PUT", f"http://{addrs[upstream]}:{ports.VENUE_ADMIN}/admin/fault",
                          {"mode": mode, "latency_ms": latency_ms}, timeout=3)
    if code != 200:
        raise LabActionError(f"venue {upstream} refused mode {mode!r}: {code} {body}")
