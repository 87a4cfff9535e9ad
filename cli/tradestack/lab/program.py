"""The lab's Pulumi program: a function of stack config.

Config: `tradestack:topology` (path of the topology file), `tradestack:workdir` (where daemons
keep configs, keys and pid files), optional `tradestack:mgmtSlot` (0..31), `tradestack:clusters`
("true": a Kubernetes cluster in each site that runs a stateless service) and `tradestack:machines` ("true":
every host but the edge routers boots as a Debian machine with systemd in its namespace, lab/machines.py; the
lab then serves their packages and time from this host).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import yaml

from ..topology import load_topology
from . import daemons
from .plan import LabPlan, plan_lab
from . import cluster, machines
from .resources import Bridge, Cluster, Daemon, DefaultRoute, KeyPair, Machine, Namespace, NftTable, Route, Veth
from .resources import NFT_TABLE


def program() -> None:
    config = pulumi.Config("tradestack")
    stack = pulumi.get_stack()
    topology = load_topology(config.require("topology"))
    slot = config.get_int("mgmtSlot")
    workdir = Path(config.require("workdir"))
    plan = plan_lab(topology, stack, slot, clusters=config.get_bool("clusters") or False)
    image = machines.lab_image() if config.get_bool("machines") else None
    access = declare(plan, workdir, image)
    pulumi.export("topology", topology.name)
    pulumi.export("inventory", yaml.safe_dump(plan.inventory(topology), sort_keys=False))
    pulumi.export("fault_map", plan.fault_map)
    pulumi.export("site_prefixes", plan.site_prefixes)
    pulumi.export("clients", {"netns": plan.clients_ns, "address": plan.clients_addr})
    pulumi.export("upstreams", plan.upstream_addrs)
    pulumi.export("mgmt_network", plan.mgmt_network)
    pulumi.export("edges", {e.site: {"host": e.netns, "address": e.mgmt_ip} for e in plan.edges})
    pulumi.export("ssh_public_key", access["key"].public_key)
    pulumi.export("ssh_private_key", pulumi.Output.secret(access["key"].private_key))
    pulumi.export("known_hosts", access["known_hosts"])
    pulumi.export("clusters", {site: {"server": c.server, "node": c.node}  # type: ignore[attr-defined]
                               for site, c in access["clusters"].items()})
    pulumi.export("kubeconfigs", pulumi.Output.secret(
        {site: c.kubeconfig for site, c in access["clusters"].items()}))  # type: ignore[attr-defined]


def declare(plan: LabPlan, workdir: Path, image: machines.BaseImage | None = None) -> dict[str, Any]:
    """Turn a plan into Pulumi resources, with dependencies so creation and deletion are ordered. With an `image`,
    each host (not the edge routers) is a machine booted from it, with its own sshd, instead of the lab's sshd."""
    opts = pulumi.ResourceOptions
    key = KeyPair("ssh-key", {"comment": f"tradestack-{plan.stack}", "public_key": None, "private_key": None},
                  opts(additional_secret_outputs=["private_key"]))
    ns = {n.name: Namespace(f"ns-{n.name}", {"name": n.name, "forwarding": n.forwarding,
                                             "loopback": list(n.loopback)}) for n in plan.namespaces}
    for n in plan.namespaces:
        NftTable(f"nft-{n.name}", {"netns": n.name, "table": NFT_TABLE}, opts(depends_on=[ns[n.name]]))
    bridges = {}
    for b in plan.bridges:
        deps = [ns[b.netns]] if b.netns else []
        bridges[(b.netns, b.ifname)] = Bridge(f"br-{b.key}", {"netns": b.netns, "ifname": b.ifname,
                                                              "address": b.address}, opts(depends_on=deps))
    link_of: dict[str, list[pulumi.Resource]] = {}
    for lk in plan.links:
        deps: list[pulumi.Resource] = []
        props: dict[str, object] = {"up": True}
        for side, end in (("a", lk.a), ("b", lk.b)):
            props.update({f"{side}_netns": end.netns, f"{side}_ifname": end.ifname,
                          f"{side}_address": end.address, f"{side}_bridge": end.bridge})
            if end.netns:
                deps.append(ns[end.netns])
            if end.bridge:
                deps.append(bridges[(end.netns, end.bridge)])
        veth = Veth(f"veth-{lk.key}", props, opts(depends_on=deps))
        for end in (lk.a, lk.b):
            if end.netns:
                link_of.setdefault(end.netns, []).append(veth)

    for r in plan.routers:
        Daemon(f"bird-{r.netns}", {"netns": r.netns, "kind": "bird", "workdir": str(workdir / r.netns),
                                   "config": daemons.bird_config(r, str(workdir / r.netns / "bird.log")),
                                   "authorized_key": None, "pid": None},
               opts(depends_on=[ns[r.netns], *link_of.get(r.netns, []),
                                *([bridges[(r.netns, "lan")]] if r.announce_lan else [])]))
    proxy: pulumi.Resource | None = None
    if image is not None:  # the machines' packages come through this host, never from outside directly
        mgmt = next(b for b in plan.bridges if b.key == "mgmt")
        address = str(mgmt.address).split("/")[0]
        proxy = Daemon("apt-proxy", {"netns": "", "kind": "apt-proxy", "workdir": str(workdir / "apt-proxy"),
                                     "config": daemons.apt_proxy_config(address, workdir / "apt-proxy"),
                                     "authorized_key": None, "pid": None},
                       opts(depends_on=[bridges[(None, mgmt.ifname)]]))
        apt_proxy = f"http://{address}:{daemons.APT_PROXY_PORT}"
        # and their time from this host's clock, which they share and may not set (machines.CAPABILITIES)
        Daemon("time-server", {"netns": "", "kind": "time-server", "workdir": str(workdir / "time-server"),
                               "config": daemons.time_server_config(address, plan.mgmt_network,
                                                                    workdir / "time-server"),
                               "authorized_key": None, "pid": None},
               opts(depends_on=[bridges[(None, mgmt.ifname)]]))
        pulumi.export("time_server", address)
    known: list[pulumi.Output[str]] = []
    for h in [*plan.hosts, *plan.edges]:
        ready: list[pulumi.Resource] = list(link_of[h.netns])
        if h.gateway:  # site hosts; venues and clients route with BGP
            ready.append(DefaultRoute(f"route-{h.netns}", {"netns": h.netns, "gateway": h.gateway},
                                      opts(depends_on=link_of[h.netns])))
        if image is not None and h in plan.hosts:
            sshd = Machine(f"machine-{h.netns}", {
                "name": h.netns, "netns": h.netns, "state": str(workdir / h.netns / "machine"),
                "release": image.release, "packages": list(image.packages), "mirror": image.mirror,
                "authorized_key": key.public_key, "apt_proxy": apt_proxy, "running": True, "host_key": None},
                opts(depends_on=[*ready, *([proxy] if proxy else [])]))
        else:
            sshd = Daemon(f"sshd-{h.netns}", {"netns": h.netns, "kind": "sshd", "workdir": str(workdir / h.netns),
                                              "config": daemons.sshd_config(h, workdir / h.netns),
                                              "authorized_key": key.public_key, "pid": None, "host_key": None},
                          opts(depends_on=ready))
        known.append(sshd.host_key.apply(lambda k, ip=h.mgmt_ip: f"{ip} {k[0]} {k[1]}"))  # type: ignore[attr-defined]
    clusters = {}
    for c in plan.clusters:
        spec = cluster.spec_for(plan.stack, c, workdir)
        edge = f"{plan.stack}-{c.site}-edge"
        ready = []
        for node in spec.nodes:  # each node: its default route, and the edge routes the node's share of pods to it
            ready += [*link_of[node.netns], DefaultRoute(f"route-{node.netns}", {"netns": node.netns,
                                                                                 "gateway": c.gateway},
                                                         opts(depends_on=link_of[node.netns]))]
            ready.append(Route(f"route-{edge}-pods{node.key}", {"netns": edge, "dst": node.pod_subnet,
                                                                "gateway": node.node_ip},
                               opts(depends_on=link_of[edge])))
        clusters[c.site] = Cluster(f"cluster-{spec.name}", {
            **cluster.props(spec), "components": spec.components, "kubeconfig": None, "server": None},
            opts(depends_on=ready, additional_secret_outputs=["kubeconfig"]))
    return {"key": key, "known_hosts": pulumi.Output.all(*known).apply(lambda lines: "\n".join(lines) + "\n"),
            "clusters": clusters}
