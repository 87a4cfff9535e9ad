"""Capacity as the clusters run it now: ready replicas take the place of declared placement, then the same
failure-domain check runs (every site, carrier, facility and power feed lost in turn, against peak x headroom).
A service scaled below what a site loss leaves needed fails by name; so does a replica that requests less
than its declared capacity needs (the scheduler would pack the node past what it can carry at peak).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from ..errors import TradestackError

from ..topology.model import Topology
from .check import check_capacity
from .report import CapacityReport
from ..topology.requests import requests


class LiveError(TradestackError):
    """The clusters could not be read."""


@dataclass(frozen=True)
class Observed:
    """One service in one site's cluster, as its API server says now."""

    site: str
    service: str
    ready: int
    cpu_request_m: int | None     # per replica; None: no request set


@dataclass(frozen=True)
class LiveProblem:
    site: str
    service: str
    message: str


@dataclass(frozen=True)
class LiveReport:
    report: CapacityReport        # the failure-domain check on what is ready now
    ready: dict[str, dict[str, int]]   # service -> site -> ready replicas
    declared: dict[str, dict[str, int]]
    problems: list[LiveProblem]

    @property
    def ok(self) -> bool:
        return self.report.ok and not self.problems


def observed(views: dict[str, dict[str, Any]]) -> list[Observed]:
    """Ready replicas and CPU requests of every service in each site's cluster, from the substrate's cluster view
    (`Substrate.cluster_view`). A cluster whose API did not answer raises: a site that cannot be seen is not
    counted as serving, nor as down."""
    unseen = {site: view["error"] for site, view in views.items() if view.get("error")}
    if unseen:
        raise LiveError("; ".join(f"site {site}'s cluster did not answer: {why}" for site, why in sorted(unseen.items())))
    return [Observed(site, name, int(s["ready"]), s.get("cpu_request_m"))
            for site, view in sorted(views.items()) for name, s in sorted(view["services"].items())]


def _clustered(topology: Topology, clustered: Collection[str] | None) -> list[str]:
    """The services the clusters run: those named (None: every stateless service)."""
    return [s.name for s in topology.services if s.kind == "stateless" and (clustered is None or s.name in clustered)]


def live_topology(topology: Topology, observed: list[Observed], clustered: Collection[str] | None = None) -> Topology:
    """The topology with each clustered service's placement replaced by its ready replicas; services the clusters
    do not run (on hosts) keep their declared placement."""
    names = _clustered(topology, clustered)
    ready: dict[tuple[str, str], int] = {}
    for o in observed:
        ready[(o.service, o.site)] = ready.get((o.service, o.site), 0) + o.ready
    services = []
    for svc in topology.services:
        if svc.name in names:
            placement = {site: ready.get((svc.name, site), 0) for site in svc.placement}
            svc = svc.model_copy(update={"placement": placement})
        services.append(svc)
    return topology.model_copy(update={"services": services})


def check_live(topology: Topology, observed: list[Observed], depth: int = 1,
               clustered: Collection[str] | None = None) -> LiveReport:
    """Judge what the clusters run now against the topology's peak x headroom, and each replica's request
    against its declared capacity. `clustered`: the services the clusters run (None: every stateless one)."""
    problems: list[LiveProblem] = []
    seen = {(o.site, o.service) for o in observed}
    names = _clustered(topology, clustered)
    for svc in topology.services:
        if svc.name not in names:
            continue
        for site, n in svc.placement.items():
            if (site, svc.name) not in seen:
                problems.append(LiveProblem(site, svc.name, f"{svc.name} is not deployed in {site}'s cluster "
                                                            f"(the topology places {n})"))
    for o in observed:
        if o.service not in names:
            continue
        want = requests(topology, o.service).cpu_m
        if o.cpu_request_m is None or o.cpu_request_m < want:
            got = "none" if o.cpu_request_m is None else f"{o.cpu_request_m}m"
            problems.append(LiveProblem(o.site, o.service, f"{o.service} in {o.site} requests {got} CPU per "
                                                           f"replica; its declared capacity needs {want}m"))
    live = live_topology(topology, observed, names)
    ready = {s.name: dict(s.placement) for s in live.services if s.name in names}
    declared = {s.name: dict(s.placement) for s in topology.services if s.name in names}
    return LiveReport(check_capacity(live, depth), ready, declared, problems)
