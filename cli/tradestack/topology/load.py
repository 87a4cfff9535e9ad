"""Read a topology file and check that everything it names exists and is consistent."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

from ..errors import TopologyError
from ..yamlsource import YamlDocument, load_yaml, parse_yaml, validate_model
from .model import Topology


def load_topology(path: Path | str) -> Topology:
    """Load and fully validate a topology file; raise TopologyError listing every problem."""
    path = Path(path)
    return _validate(load_yaml(path, TopologyError))


def parse_topology(text: str, path: Path | str = Path("<topology>")) -> Topology:
    """Same as load_topology, for text already in memory (`path` names it in messages)."""
    return _validate(parse_yaml(text, Path(path), TopologyError))


def _validate(doc: YamlDocument) -> Topology:
    if not isinstance(doc.data, dict):
        raise TopologyError([doc.problem((), "a topology file must be a mapping (name:, sites:, ...)")],
                           source=doc.path)
    topology = validate_model(Topology, doc, TopologyError)
    problems = [doc.problem(f.loc, f.message, at_key=f.at_key) for f in check_references(topology)]
    if problems:
        raise TopologyError(problems, source=doc.path)
    return topology


class Finding(NamedTuple):
    loc: tuple[str | int, ...]
    message: str
    at_key: bool = False  # the problem is a mapping key itself (a placement's site, a capacity metric)


def check_references(t: Topology) -> list[Finding]:
    """Cross-field rules a schema cannot express: names defined once, references resolve, no cycles."""
    found: list[Finding] = []
    for section in ("carriers", "sites", "upstreams", "services"):
        found += _duplicates(section, [item.name for item in getattr(t, section)])

    carriers = {c.name for c in t.carriers}
    sites = {s.name: s for s in t.sites}
    upstreams = {u.name for u in t.upstreams}
    services = {s.name for s in t.services}

    if not any(s.role == "active" for s in t.sites):
        found.append(Finding(("sites",), "no site has role `active`: nothing would serve clients"))
    for i, site in enumerate(t.sites):
        seen: set[str] = set()
        for j, uplink in enumerate(site.uplinks):
            loc = ("sites", i, "uplinks", j, "carrier")
            if uplink.carrier not in carriers:
                found.append(Finding(loc, f"carrier {uplink.carrier!r} is not defined{_known(carriers)}"))
            elif uplink.carrier in seen:
                found.append(Finding(loc, f"site {site.name!r} has two uplinks to carrier {uplink.carrier!r}; "
                                   "list each carrier once per site"))
            seen.add(uplink.carrier)

    for i, svc in enumerate(t.services):
        for site_name in svc.placement:
            if site_name not in sites:
                found.append(Finding(("services", i, "placement", site_name),
                                     f"site {site_name!r} is not defined{_known(sites)}", at_key=True))
        for metric in svc.capacity:
            if metric not in t.peak:
                found.append(Finding(("services", i, "capacity", metric),
                                     f"metric {metric!r} has no peak value; add it under `peak:`"
                                     f"{_known(t.peak)}", at_key=True))
        for j, name in enumerate(svc.upstreams):
            if name not in upstreams:
                found.append(Finding(("services", i, "upstreams", j),
                              f"upstream {name!r} is not defined{_known(upstreams)}"))
        for j, name in enumerate(svc.requires):
            if name == svc.name:
                found.append(Finding(("services", i, "requires", j), f"service {svc.name!r} requires itself"))
            elif name not in services:
                found.append(Finding(("services", i, "requires", j),
                              f"service {name!r} is not defined{_known(services)}"))
        if svc.kind == "replicated" and svc.replication == "asynchronous":
            if not any(s in sites and sites[s].role == "active" for s in svc.placement):
                found.append(Finding(("services", i, "placement"),
                              "an asynchronous replicated service needs an instance in an active site "
                              "(its primary)"))
    found += _cycles(t)
    return found


def _duplicates(section: str, names: list[str]) -> list[Finding]:
    first: dict[str, int] = {}
    out: list[Finding] = []
    for i, name in enumerate(names):
        if name in first:
            out.append(Finding((section, i, "name"),
                        f"duplicate name {name!r} (also {section}[{first[name]}])"))
        else:
            first[name] = i
    return out


def _cycles(t: Topology) -> list[Finding]:
    """Report each `requires` cycle once, as a readable chain."""
    graph = {s.name: [r for r in s.requires if r != s.name] for s in t.services}
    position = {s.name: i for i, s in enumerate(t.services)}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []
    out: list[Finding] = []
    reported: set[frozenset[str]] = set()

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                key = frozenset(cycle)
                if key not in reported:
                    reported.add(key)
                    out.append(Finding(("services", position[nxt], "requires"),
                                "`requires` cycle: " + " -> ".join(cycle)))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name)
    return out


def _known(names: Iterable[str]) -> str:
    names = sorted(names)
    return f" (known: {', '.join(names)})" if names else " (none are defined)"
