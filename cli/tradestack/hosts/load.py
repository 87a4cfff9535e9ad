"""Read a hosts file and check it realises its topology: every placed instance on a host of its site, every
uplink on an edge interface, one client host, one venue host per upstream (file:line:column on each problem)."""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..topology import load_topology
from ..topology.model import Topology
from ..topology.riskgroups import risk_group_index
from ..yamlsource import YamlDocument, load_yaml, validate_model
from .model import HostsFile

OUTSIDE = ("venue", "loadgen")  # services that run outside every site


class HostsFileError(InputError):
    """A hosts file is unreadable, invalid, or does not realise its topology."""


@dataclass(frozen=True)
class Estate:
    """A checked hosts file with what it refers to, resolved."""

    path: Path
    spec: HostsFile
    topology_path: Path
    topology: Topology
    private_key: Path


def load_hosts_file(path: Path | str) -> Estate:
    path = Path(path).resolve()
    doc = load_yaml(path, HostsFileError)
    if not isinstance(doc.data, dict):
        raise HostsFileError([doc.problem((), "a hosts file must be a mapping (topology:, ssh:, sites:, hosts:)")],
                             source=path)
    spec = validate_model(HostsFile, doc, HostsFileError)
    topology_path = (path.parent / spec.topology).resolve()
    if not topology_path.exists():
        raise HostsFileError([doc.problem(("topology",), f"no topology file at {topology_path}")], source=path)
    topology = load_topology(topology_path)
    problems = _check(spec, topology, doc)
    if problems:
        raise HostsFileError(problems, source=path)
    key = Path(spec.ssh.private_key).expanduser()
    return Estate(path, spec, topology_path, topology, key if key.is_absolute() else (path.parent / key).resolve())


def _check(spec: HostsFile, topology: Topology, doc: YamlDocument) -> list:
    """Every way the file and the topology disagree, each with the file's line (all of them, at once)."""
    found = _Found(doc)
    _unique_machines(spec, found)
    _sites(spec, topology, found)
    _hosts(spec, topology, found)
    _risk_groups(spec, topology, found)
    return found.problems


class _Found:
    def __init__(self, doc: YamlDocument):
        self.doc = doc
        self.problems: list = []

    def bad(self, loc: tuple, message: str, at_key: bool = False) -> None:
        self.problems.append(self.doc.problem(loc, message, at_key=at_key))


def _unique_machines(spec: HostsFile, found: _Found) -> None:
    """No two machines (hosts and edge routers) share a name or an address."""
    machines = [("sites", i, "edge", s.edge.name, s.edge.address) for i, s in enumerate(spec.sites)] + \
               [("hosts", i, None, h.name, h.address) for i, h in enumerate(spec.hosts)]
    seen_names: dict[str, tuple] = {}
    seen_addresses: dict[str, tuple] = {}
    for section, i, sub, name, address in machines:
        loc = (section, i, *((sub,) if sub else ()))
        if name in seen_names:
            found.bad((*loc, "name"), f"duplicate name {name!r}")
        if address in seen_addresses:
            found.bad((*loc, "address"), f"address {address} is also {seen_addresses[address][1]}'s")
        seen_names[name], seen_addresses[address] = loc, (loc, name)


def _sites(spec: HostsFile, topology: Topology, found: _Found) -> None:
    """Each site of the file is the topology's, with an edge interface for exactly its uplinks; every site the
    topology places a service in has an entry."""
    sites = {s.name: s for s in topology.sites}
    declared_sites = set()
    for i, site in enumerate(spec.sites):
        if site.name not in sites:
            found.bad(("sites", i, "name"), f"site {site.name!r} is not in the topology (known: {', '.join(sites)})")
            continue
        declared_sites.add(site.name)
        wanted = {u.carrier for u in sites[site.name].uplinks}
        for carrier in site.edge.uplinks:
            if carrier not in wanted:
                found.bad(("sites", i, "edge", "uplinks", carrier),
                          f"site {site.name} has no uplink to carrier {carrier!r} in the topology", at_key=True)
        for carrier in sorted(wanted - set(site.edge.uplinks)):
            found.bad(("sites", i, "edge", "uplinks"),
                      f"no interface for site {site.name}'s uplink to carrier {carrier!r}")
    for name in sites:
        if name not in declared_sites and any(name in s.placement for s in topology.services):
            found.problems.append(found.doc.problem(("sites",), f"site {name!r} of the topology has no entry"))


def _hosts(spec: HostsFile, topology: Topology, found: _Found) -> None:
    """Each host runs a service of the topology in a site of the file, on its LAN; as many per site as the
    topology places; one load generator and one venue per upstream, outside every site."""
    services = {s.name for s in topology.services}
    prefixes = {s.name: ipaddress.ip_network(s.prefix) for s in spec.sites}
    placed: Counter[tuple[str, str]] = Counter()
    for i, host in enumerate(spec.hosts):
        if host.service in OUTSIDE:
            if host.site is not None:
                found.bad(("hosts", i, "site"), f"a {host.service} host runs outside every site; remove `site`")
            if host.service == "venue" and host.upstream not in {u.name for u in topology.upstreams}:
                found.bad(("hosts", i, "upstream"), f"a venue host names its upstream (one of "
                                                    f"{', '.join(u.name for u in topology.upstreams)})")
            continue
        if host.service not in services:
            found.bad(("hosts", i, "service"), f"service {host.service!r} is not in the topology (known: "
                                               f"{', '.join(sorted(services | set(OUTSIDE)))})")
            continue
        if host.site is None or host.site not in prefixes:
            found.bad(("hosts", i, "site"), f"a {host.service} host needs a site of this file "
                                            f"({', '.join(prefixes) or 'none declared'})")
            continue
        if ipaddress.ip_address(host.lan_address) not in prefixes[host.site]:
            found.bad(("hosts", i, "lan_address"), f"{host.lan_address} is not in site {host.site}'s prefix "
                                                   f"{prefixes[host.site]}")
        placed[(host.service, host.site)] += 1
    whole = found.doc.problem
    for service in topology.services:
        for site, count in service.placement.items():
            if placed[(service.name, site)] != count:
                found.problems.append(whole(("hosts",), f"the topology places {count} {service.name} in {site}; "
                                                        f"the file has {placed[(service.name, site)]}"))
    outside = Counter(h.service for h in spec.hosts if h.service in OUTSIDE)
    if outside["loadgen"] != 1:
        found.problems.append(whole(("hosts",), f"one loadgen host (where the clients run) is needed; "
                                                f"the file has {outside['loadgen']}"))
    venues = Counter(h.upstream for h in spec.hosts if h.service == "venue")
    for upstream in topology.upstreams:
        if venues[upstream.name] != 1:
            found.problems.append(whole(("hosts",), f"upstream {upstream.name!r} needs one venue host; "
                                                    f"the file has {venues[upstream.name]}"))


def _risk_groups(spec: HostsFile, topology: Topology, found: _Found) -> None:
    """Risk groups the file adds are the topology's, and their members are hosts of the file."""
    groups = set(risk_group_index(topology).groups)
    names = {h.name for h in spec.hosts}
    for group, members in spec.risk_groups.items():
        if group not in groups:
            found.bad(("risk_groups", group), f"risk group {group!r} is not in the topology", at_key=True)
        for j, member in enumerate(members):
            if member not in names:
                found.bad(("risk_groups", group, j), f"no host {member!r} in this file")
