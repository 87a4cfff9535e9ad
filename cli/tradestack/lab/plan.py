"""What the lab builds for a topology, decided without touching the machine.

Everything lives in network namespaces named `<stack>-...`, so two stacks coexist and the root
namespace only gets the management bridge. Addresses come only from 198.18.0.0/15:

- 198.18.<i>.0/24        site i's LAN (edge .1, hosts from .10), announced over every carrier
- 198.18.128.0/17        /31 point-to-point links (edge-carrier, carrier-ix, carrier-clients, ...)
- 198.19.0.1/32          the clients' public address; 198.19.<16+k>.1/32 upstream k
- 198.19.128.0/17        management: one /22 per stack (slot 0..31), bridge .1, hosts from .10
- 198.19.<64+i>.0/24     site i's Kubernetes pods, routed by its edge to the site's node (.250 on the LAN)
- 198.19.<96+i>.0/24     site i's Kubernetes services (virtual: kube-proxy's rules in the node)
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from ..topology.model import Topology
from ..substrates.inventory import inventory
from ..topology.riskgroups import risk_group_index

STACK_NAME = re.compile(r"^[a-z][a-z0-9]{0,7}$")
IFNAMSIZ = 15
MGMT_SLOTS = 32
LAN_BASE = ipaddress.IPv4Address("198.18.0.0")
P2P_NET = ipaddress.IPv4Network("198.18.128.0/17")
CLIENTS_ADDR = "198.19.0.1"
MGMT_NET = ipaddress.IPv4Network("198.19.128.0/17")
LAB_RANGE = ipaddress.IPv4Network("198.18.0.0/15")

AS_IX, AS_CARRIER, AS_SITE, AS_CLIENTS, AS_UPSTREAM = 64512, 64600, 65001, 65100, 65200


@dataclass(frozen=True)
class End:
    netns: str | None  # None: the root namespace
    ifname: str
    address: str | None = None  # "a.b.c.d/len"
    bridge: str | None = None  # enslave to this bridge (in the same namespace)


@dataclass(frozen=True)
class Link:
    """A veth pair."""

    key: str
    a: End
    b: End


@dataclass(frozen=True)
class Bridge:
    key: str
    netns: str | None
    ifname: str
    address: str | None


@dataclass(frozen=True)
class Neighbor:
    ifname: str
    local: str
    peer: str
    peer_as: int


@dataclass
class Router:
    """A namespace that runs BGP (BIRD)."""

    netns: str
    role: str  # edge | carrier | ix | clients | upstream
    asn: int
    router_id: str
    neighbors: list[Neighbor] = field(default_factory=list)
    announce_lan: str | None = None  # edges: interface whose prefix is announced
    announce_static: list[str] = field(default_factory=list)  # clients/upstreams: /32s on lo
    transit: bool = False  # carriers and the exchange re-announce what they learn


@dataclass(frozen=True)
class Host:
    """A namespace reachable over SSH: a service instance in a site, or an upstream venue or the clients
    outside every site (those route with BGP, so they have no default gateway)."""

    netns: str
    site: str | None
    service: str
    index: int
    lan_ip: str
    gateway: str | None
    mgmt_ip: str
    upstream: str | None = None


@dataclass(frozen=True)
class ClusterNode:
    """A site's single-node Kubernetes cluster: a namespace on the site LAN and the management network."""

    site: str
    netns: str
    node_ip: str
    gateway: str
    mgmt_ip: str
    pod_cidr: str
    service_cidr: str
    workers: tuple[tuple[str, str, str], ...] = ()   # more nodes: (namespace, LAN address, management address)


@dataclass(frozen=True)
class Namespace:
    name: str
    role: str
    site: str | None = None
    forwarding: bool = False
    loopback: tuple[str, ...] = ()  # extra /32s on lo


@dataclass
class LabPlan:
    stack: str
    topology: str
    namespaces: list[Namespace]
    bridges: list[Bridge]
    links: list[Link]
    routers: list[Router]
    hosts: list[Host]
    mgmt_bridge: str
    mgmt_network: str
    site_prefixes: dict[str, str]
    clients_ns: str
    clients_addr: str
    upstream_addrs: dict[str, str]
    fault_map: dict[str, dict[str, Any]]
    # each site's edge router is reachable over the management network too (sshd), as real routers are; not
    # in the Ansible inventory: nothing is deployed to it
    edges: list[Host] = field(default_factory=list)
    # one Kubernetes cluster per site that runs a stateless service, when the stack asks for clusters
    clusters: list[ClusterNode] = field(default_factory=list)

    def inventory(self, topology: Topology) -> dict[str, Any]:
        """Ansible inventory (YAML-ready): groups per site, service and site role, with host vars."""
        entries = [(h.netns, {"ansible_host": h.mgmt_ip, "netns": h.netns, "service": h.service, "instance": h.index,
                              "lan_address": h.lan_ip, "public_address": h.lan_ip, "lan_interface": "lan0",
                              **({"site": h.site} if h.site else {}),
                              **({"upstream": h.upstream} if h.upstream else {})})
                   for h in self.hosts]
        return inventory(entries, {s.name: s.role for s in topology.sites}, self.site_prefixes,
                         {"ansible_user": "root", "tradestack_stack": self.stack})


def default_mgmt_slot(stack: str) -> int:
    return int(hashlib.sha256(stack.encode()).hexdigest(), 16) % MGMT_SLOTS


CLUSTER_NODE = 250  # the node's host number on its site LAN (hosts count up from 10)
MAX_CLUSTER_SITES = 31


def plan_lab(topology: Topology, stack: str, mgmt_slot: int | None = None, clusters: bool = False) -> LabPlan:
    """Decide every namespace, link, address, router and host of the lab for `topology` (and with `clusters`,
    a Kubernetes node in each site that runs a stateless service). Management addresses are handed out in the
    order of the steps below (site hosts, then venues and clients, edge routers, cluster nodes), so that a host
    keeps its address when what follows it changes."""
    if not STACK_NAME.match(stack):
        raise InputError(f"stack name {stack!r} must be 1-8 lower-case letters or digits, starting with a "
                         "letter (it prefixes every interface and namespace)")
    slot = default_mgmt_slot(stack) if mgmt_slot is None else mgmt_slot
    if not 0 <= slot < MGMT_SLOTS:
        raise InputError(f"management slot must be 0..{MGMT_SLOTS - 1}, got {slot}")
    if len(topology.sites) > 127:
        raise InputError("the lab supports at most 127 sites")
    if clusters and len(topology.sites) > MAX_CLUSTER_SITES:
        raise InputError(f"the lab runs Kubernetes clusters for at most {MAX_CLUSTER_SITES} sites")
    _check_names(topology)

    lab = _Builder(stack, ipaddress.IPv4Network((int(MGMT_NET.network_address) + slot * 1024, 22)))
    lab.exchange_and_outside(topology)
    lab.carriers(topology)
    lab.sites(topology)
    lab.venues_and_clients(topology)
    lab.edge_management(topology)
    if clusters:
        lab.cluster_nodes(topology)
    for r in lab.routers.values():
        if not r.router_id:
            r.router_id = r.neighbors[0].local if r.neighbors else "198.18.255.255"

    fault_map = _fault_map(topology, lab.links, lab.uplink_links, lab.site_namespaces, lab.carrier_ns, stack,
                           lab.hosts)
    plan = LabPlan(stack, topology.name, lab.namespaces, lab.bridges, lab.links, list(lab.routers.values()),
                   lab.hosts, lab.mgmt_bridge, str(lab.mgmt), lab.site_prefixes, lab.clients, CLIENTS_ADDR,
                   lab.upstream_addrs, fault_map, lab.edges, lab.nodes)
    _check_interfaces(plan)
    return plan


class _Builder:
    """The lab's parts as `plan_lab` decides them, step by step."""

    def __init__(self, stack: str, mgmt: ipaddress.IPv4Network):
        self.stack, self.mgmt = stack, mgmt
        self.p2p = _P2P()
        self._mgmt_hosts = (str(ip) for ip in list(mgmt.hosts())[9:])
        self.namespaces: list[Namespace] = []
        self.links: list[Link] = []
        self.routers: dict[str, Router] = {}
        self.hosts: list[Host] = []
        self.edges: list[Host] = []
        self.nodes: list[ClusterNode] = []
        self.mgmt_bridge = f"{stack}-mgmt"
        self.bridges = [Bridge("mgmt", None, self.mgmt_bridge, f"{mgmt.network_address + 1}/22")]
        self.ix, self.clients = f"{stack}-ix", f"{stack}-clients"
        self.upstream_addrs: dict[str, str] = {}
        self.carrier_ns: dict[str, str] = {}
        self.site_prefixes: dict[str, str] = {}
        self.uplink_links: dict[tuple[str, str], Link] = {}
        self.site_namespaces: dict[str, list[str]] = {}

    def next_mgmt(self) -> str:
        return next(self._mgmt_hosts)

    def connect(self, key: str, ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
        a_ip, b_ip = self.p2p.pair()
        self.links.append(Link(key, End(ns_a, if_a, f"{a_ip}/31"), End(ns_b, if_b, f"{b_ip}/31")))
        ra, rb = self.routers[ns_a], self.routers[ns_b]
        ra.neighbors.append(Neighbor(if_a, a_ip, b_ip, rb.asn))
        rb.neighbors.append(Neighbor(if_b, b_ip, a_ip, ra.asn))

    def managed(self, ns: str, bridge_port: str) -> str:
        """`ns` on the management bridge; its management address."""
        mgmt_ip = self.next_mgmt()
        self.links.append(Link(f"mgmt-{ns}", End(ns, "mgmt0", f"{mgmt_ip}/22"),
                               End(None, bridge_port, None, bridge=self.mgmt_bridge)))
        return mgmt_ip

    def exchange_and_outside(self, topology: Topology) -> None:
        """The exchange point peering every carrier, the clients, and one namespace per upstream venue."""
        self.namespaces.append(Namespace(self.ix, "ix", forwarding=True))
        self.routers[self.ix] = Router(self.ix, "ix", AS_IX, "", transit=True)
        self.namespaces.append(Namespace(self.clients, "clients", loopback=(CLIENTS_ADDR,)))
        self.routers[self.clients] = Router(self.clients, "clients", AS_CLIENTS, CLIENTS_ADDR,
                                            announce_static=[CLIENTS_ADDR])
        for k, up in enumerate(topology.upstreams):
            ns, addr = f"{self.stack}-upstream-{up.name}", f"198.19.{16 + k}.1"
            self.upstream_addrs[up.name] = addr
            self.namespaces.append(Namespace(ns, "upstream", loopback=(addr,)))
            self.routers[ns] = Router(ns, "upstream", AS_UPSTREAM + k, addr, announce_static=[addr])

    def carriers(self, topology: Topology) -> None:
        """A transit namespace per carrier, linked to the exchange, the clients and every upstream."""
        for j, carrier in enumerate(topology.carriers):
            ns = f"{self.stack}-carrier-{carrier.name}"
            self.carrier_ns[carrier.name] = ns
            self.namespaces.append(Namespace(ns, "carrier", forwarding=True))
            self.routers[ns] = Router(ns, "carrier", AS_CARRIER + j, "", transit=True)
            self.connect(f"ix-{carrier.name}", ns, "ix", self.ix, f"c-{carrier.name}")
            self.connect(f"clients-{carrier.name}", ns, "clients", self.clients, f"c-{carrier.name}")
            for up in topology.upstreams:
                self.connect(f"upstream-{up.name}-{carrier.name}", ns, f"u-{up.name}",
                             f"{self.stack}-upstream-{up.name}", f"c-{carrier.name}")

    def sites(self, topology: Topology) -> None:
        """Per site: its edge router with the LAN bridge and an uplink per carrier, and a host per instance."""
        for i, site in enumerate(topology.sites, start=1):
            lan = ipaddress.IPv4Network((int(LAN_BASE) + i * 256, 24))
            self.site_prefixes[site.name] = str(lan)
            gw = str(lan.network_address + 1)
            edge = f"{self.stack}-{site.name}-edge"
            self.namespaces.append(Namespace(edge, "edge", site.name, forwarding=True))
            self.site_namespaces[site.name] = [edge]
            self.routers[edge] = Router(edge, "edge", AS_SITE + i - 1, gw, announce_lan="lan")
            self.bridges.append(Bridge(f"lan-{site.name}", edge, "lan", f"{gw}/24"))
            for uplink in site.uplinks:
                self.connect(f"uplink-{site.name}-{uplink.carrier}", edge, f"c-{uplink.carrier}",
                             self.carrier_ns[uplink.carrier], f"s-{site.name}")
                self.uplink_links[(site.name, uplink.carrier)] = self.links[-1]
            n_host = 0
            for svc in topology.services:
                for idx in range(1, svc.placement.get(site.name, 0) + 1):
                    n_host += 1
                    ns = f"{self.stack}-{site.name}-{svc.name}-{idx}"
                    lan_ip = str(lan.network_address + 9 + n_host)
                    mgmt_ip = self.next_mgmt()
                    self.hosts.append(Host(ns, site.name, svc.name, idx, lan_ip, gw, mgmt_ip))
                    self.namespaces.append(Namespace(ns, "host", site.name))
                    self.site_namespaces[site.name].append(ns)
                    self.links.append(Link(f"lan-{ns}", End(ns, "lan0", f"{lan_ip}/24"),
                                           End(edge, f"h{n_host}", None, bridge="lan")))
                    self.links.append(Link(f"mgmt-{ns}", End(ns, "mgmt0", f"{mgmt_ip}/22"),
                                           End(None, f"{self.stack}m{len(self.hosts)}", None,
                                               bridge=self.mgmt_bridge)))

    def venues_and_clients(self, topology: Topology) -> None:
        """Venues and clients are hosts too (the deploy puts venue simulators and the load generator there);
        added after the sites so site hosts keep their management addresses."""
        outside = [(f"{self.stack}-upstream-{up.name}", "venue", self.upstream_addrs[up.name], up.name)
                   for up in topology.upstreams]
        outside.append((self.clients, "loadgen", CLIENTS_ADDR, None))
        for ns, service, address, upstream in outside:
            mgmt_ip = self.managed(ns, f"{self.stack}m{len(self.hosts) + 1}")
            self.hosts.append(Host(ns, None, service, 1, address, None, mgmt_ip, upstream))

    def edge_management(self, topology: Topology) -> None:
        """Edge routers get management access last, so every other host keeps its management address."""
        for site in topology.sites:
            edge = f"{self.stack}-{site.name}-edge"
            mgmt_ip = self.managed(edge, f"{self.stack}e{len(self.edges) + 1}")
            gw = str(ipaddress.ip_network(self.site_prefixes[site.name]).network_address + 1)
            self.edges.append(Host(edge, site.name, "edge", 1, gw, None, mgmt_ip))

    def cluster_nodes(self, topology: Topology) -> None:
        """Two Kubernetes nodes in each site that runs a stateless service: a cluster whose every node is lost
        evicts nothing (the node controller takes it for its own lost connectivity), so losing one node must
        leave another for its pods."""
        stateless = [s for s in topology.services if s.kind == "stateless"]
        for i, site in enumerate(topology.sites, start=1):
            if not any(s.placement.get(site.name) for s in stateless):
                continue
            lan = ipaddress.IPv4Network(self.site_prefixes[site.name])
            ns, node_ip = f"{self.stack}-{site.name}-k8s", str(lan.network_address + CLUSTER_NODE)
            mgmt_ip = self.next_mgmt()
            ns2, node2_ip, mgmt2_ip = f"{ns}2", str(lan.network_address + CLUSTER_NODE + 1), self.next_mgmt()
            self.nodes.append(ClusterNode(site.name, ns, node_ip, str(lan.network_address + 1), mgmt_ip,
                                          f"198.19.{64 + i}.0/24", f"198.19.{96 + i}.0/24",
                                          ((ns2, node2_ip, mgmt2_ip),)))
            for name, ip, mgmt_addr, suffix in ((ns, node_ip, mgmt_ip, ""), (ns2, node2_ip, mgmt2_ip, "b")):
                self.namespaces.append(Namespace(name, "k8s", site.name, forwarding=True))
                self.links.append(Link(f"lan-{name}", End(name, "lan0", f"{ip}/24"),
                                       End(f"{self.stack}-{site.name}-edge", f"k{i}{suffix}", None, bridge="lan")))
                self.links.append(Link(f"mgmt-{name}", End(name, "mgmt0", f"{mgmt_addr}/22"),
                                       End(None, f"{self.stack}k{i}{suffix}", None, bridge=self.mgmt_bridge)))


def _fault_map(topology: Topology, links: list[Link], uplinks: dict[tuple[str, str], Link],
               site_namespaces: dict[str, list[str]], carrier_ns: dict[str, str], stack: str,
               hosts: list[Host]) -> dict[str, dict[str, Any]]:
    """For each risk group: the links that go down and the namespaces whose processes die with it."""
    index = risk_group_index(topology)
    out: dict[str, dict[str, Any]] = {}
    for group, tagged in index.tags.items():
        cut: list[Link] = [uplinks[(s, c)] for s, c in tagged.uplinks]
        if group.startswith("carrier:") and group[len("carrier:"):] in carrier_ns:
            ns = carrier_ns[group[len("carrier:"):]]  # a dead carrier also loses its exchange, client, venue links
            cut += [lk for lk in links if ns in (lk.a.netns, lk.b.netns)]
        namespaces: list[str] = []
        for site in tagged.sites:
            namespaces += site_namespaces[site]
            cut += [uplinks[(site, u.carrier)] for u in topology.site(site).uplinks]
        for up in tagged.upstreams:
            cut += [lk for lk in links if lk.key.startswith(f"upstream-{up}-")]
            namespaces.append(f"{stack}-upstream-{up}")
        unique = list(dict.fromkeys(cut))
        out[group] = {
            # the carrier side of each link goes down; the far end loses carrier too
            "links": [{"netns": end.netns, "ifname": end.ifname, "link": lk.key}
                      for lk in unique for end in [lk.b if lk.key.startswith("uplink-") else lk.a]],
            "namespaces": namespaces,
            "hosts": [h.netns for h in hosts if h.netns in namespaces],
        }
    return out


def _check_names(topology: Topology) -> None:
    too_long = [f"{kind} {name!r}" for kind, names in (
        ("carrier", [c.name for c in topology.carriers]), ("site", [s.name for s in topology.sites]),
        ("upstream", [u.name for u in topology.upstreams])) for name in names if len(name) + 2 > IFNAMSIZ]
    if too_long:
        raise InputError(f"names too long for lab interface names (max {IFNAMSIZ - 2} characters): "
                         + ", ".join(too_long))


def _check_interfaces(plan: LabPlan) -> None:
    names = [e.ifname for lk in plan.links for e in (lk.a, lk.b)] + [b.ifname for b in plan.bridges]
    bad = sorted({n for n in names if len(n) > IFNAMSIZ})
    if bad:
        raise InputError(f"interface names longer than {IFNAMSIZ} characters: {', '.join(bad)}")
    for lk in plan.links:
        for e in (lk.a, lk.b):
            if e.address and ipaddress.ip_interface(e.address).ip not in LAB_RANGE:
                raise AssertionError(f"address outside the lab range: {e.address}")  # a bug, not input


class _P2P:
    def __init__(self) -> None:
        self.next = int(P2P_NET.network_address)

    def pair(self) -> tuple[str, str]:
        a = ipaddress.IPv4Address(self.next)
        self.next += 2
        if ipaddress.IPv4Address(self.next - 1) not in P2P_NET:
            raise InputError("too many point-to-point links for the lab's address plan")
        return str(a), str(a + 1)
