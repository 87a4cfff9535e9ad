"""Evaluate scenarios against a topology, many at once.

Each scenario is a row of failed risk-group indices. Membership matrices (group x entity) turn
"which sites, uplinks and upstreams does this scenario take down" into a few gathers and ORs,
and "how many instances of each service survive" into one matrix product, so ~180,000
depth-2 scenarios of a 100-site topology take about a second.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..topology.model import Topology
from ..topology.riskgroups import risk_group_index, site_groups, upstream_groups, uplink_groups
from .report import CODE, CapacityReport, Reason, ServiceSpec
from .scenarios import enumerate_scenarios

CHUNK = 32_768


@dataclass(frozen=True)
class _Compiled:
    groups: list[str]
    site_names: list[str]
    site_member: np.ndarray  # (G+1, S) bool: group takes the whole site down
    uplink_member: np.ndarray  # (G+1, U) bool: group cuts the uplink
    uplink_starts: np.ndarray  # (S,) first uplink column of each site (uplinks grouped by site)
    upstream_names: list[str]
    upstream_member: np.ndarray  # (G+1, K) bool
    counts: np.ndarray  # (S, N) float32 instances of each service per site
    specs: list[ServiceSpec]
    order: list[int]  # services in dependency order (required ones first)
    primary: list[int | None]  # site index of an asynchronous service's primary
    upstream_cols: list[list[int]]
    require_cols: list[list[int]]


def check_capacity(topology: Topology, depth: int = 1, scenarios: Sequence[Sequence[str]] | None = None,
                   required: Mapping[str, float] | None = None) -> CapacityReport:
    """Check the intact topology and every combination of up to `depth` failed risk groups.

    With `scenarios`, check exactly those sets of failed groups instead (plus the intact topology).
    With `required`, a metric's requirement is that figure instead of peak x headroom (an observed peak).
    SPOFs are always derived from the single-group scenarios.
    """
    c = _compile(topology, required or {})
    g = len(c.groups)
    singles = enumerate_scenarios(g, 1)
    if scenarios is None:
        rows = enumerate_scenarios(g, depth)
    else:
        rows = _explicit(c.groups, scenarios)
        depth = rows.shape[1] if rows.size else 0
    reasons, up, sites_down, upstream_failed = _evaluate(c, rows)
    spofs = _spofs(c, singles)
    return CapacityReport(topology.name, depth, c.groups, c.specs, rows, reasons, up, sites_down,
                          c.site_names, upstream_failed, c.upstream_names, spofs)


def _explicit(groups: list[str], scenarios: Sequence[Sequence[str]]) -> np.ndarray:
    index = {name: i for i, name in enumerate(groups)}
    unknown = sorted({name for s in scenarios for name in s if name not in index})
    if unknown:
        raise InputError(f"unknown risk group(s): {', '.join(unknown)}; known: {', '.join(groups)}")
    width = max([len(set(s)) for s in scenarios] + [1])
    rows = np.full((len(scenarios) + 1, width), len(groups), dtype=np.int32)
    for r, scenario in enumerate(scenarios, start=1):
        ids = sorted({index[name] for name in scenario})
        rows[r, :len(ids)] = ids
    return rows


def _spofs(c: _Compiled, singles: np.ndarray) -> list[str]:
    reasons = _evaluate(c, singles)[0]
    intact_ok = reasons[0] == 0
    fails_alone = ((reasons[1:] != 0) & intact_ok).any(axis=1)
    return sorted(c.groups[i] for i in np.flatnonzero(fails_alone))


def _compile(t: Topology, required: Mapping[str, float]) -> _Compiled:
    index = risk_group_index(t)
    groups = index.groups
    gi = {name: i for i, name in enumerate(groups)}
    g, s = len(groups), len(t.sites)

    site_member = np.zeros((g + 1, s), dtype=bool)
    uplink_cols: list[list[int]] = []
    starts = []
    for si, site in enumerate(t.sites):
        site_member[[gi[x] for x in site_groups(site)], si] = True
        starts.append(len(uplink_cols))
        uplink_cols += [[gi[x] for x in uplink_groups(site, u)] for u in range(len(site.uplinks))]
    uplink_member = np.zeros((g + 1, len(uplink_cols)), dtype=bool)
    for u, gs in enumerate(uplink_cols):
        uplink_member[gs, u] = True

    upstream_member = np.zeros((g + 1, len(t.upstreams)), dtype=bool)
    for k, upstream in enumerate(t.upstreams):
        upstream_member[[gi[x] for x in upstream_groups(upstream)], k] = True

    site_pos = {site.name: i for i, site in enumerate(t.sites)}
    svc_pos = {svc.name: i for i, svc in enumerate(t.services)}
    up_pos = {u.name: i for i, u in enumerate(t.upstreams)}
    counts = np.zeros((s, len(t.services)), dtype=np.float32)
    specs, primary = [], []
    for j, svc in enumerate(t.services):
        for site_name, n in svc.placement.items():
            counts[site_pos[site_name], j] = n
        p = None
        if svc.kind == "replicated" and svc.replication == "asynchronous":
            p = next(site_pos[x] for x in svc.placement if t.site(x).role == "active")
        primary.append(p)
        specs.append(ServiceSpec(
            name=svc.name, kind=svc.kind, instances=svc.instances, capacity=dict(svc.capacity),
            required={m: required.get(m, t.required(m)) for m in svc.capacity},
            primary_site=t.sites[p].name if p is not None else None,
            upstreams=list(svc.upstreams), requires=list(svc.requires)))
    return _Compiled(
        groups=groups, site_names=[x.name for x in t.sites], site_member=site_member,
        uplink_member=uplink_member, uplink_starts=np.array(starts, dtype=np.intp),
        upstream_names=[u.name for u in t.upstreams], upstream_member=upstream_member,
        counts=counts, specs=specs, order=_dependency_order(t, svc_pos), primary=primary,
        upstream_cols=[[up_pos[u] for u in svc.upstreams] for svc in t.services],
        require_cols=[[svc_pos[r] for r in svc.requires] for svc in t.services])


def _dependency_order(t: Topology, svc_pos: dict[str, int]) -> list[int]:
    done: list[int] = []
    seen: set[int] = set()

    def visit(j: int) -> None:
        if j in seen:
            return
        seen.add(j)
        for r in t.services[j].requires:
            visit(svc_pos[r])
        done.append(j)

    for j in range(len(t.services)):
        visit(j)
    return done


def _any_member(member: np.ndarray, rows: np.ndarray) -> np.ndarray:
    out = member[rows[:, 0]]
    for k in range(1, rows.shape[1]):
        out = out | member[rows[:, k]]
    return out


def _evaluate(c: _Compiled, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    n, nsvc = rows.shape[0], len(c.specs)
    reasons = np.zeros((n, nsvc), dtype=np.int8)
    up_all = np.zeros((n, nsvc), dtype=np.int32)
    down_all = np.zeros((n, len(c.site_names)), dtype=bool)
    upfail_all = np.zeros((n, len(c.upstream_names)), dtype=bool)
    for lo in range(0, n, CHUNK):
        chunk = rows[lo:lo + CHUNK]
        site_failed = _any_member(c.site_member, chunk)
        alive = (~_any_member(c.uplink_member, chunk)).view(np.uint8)
        has_uplink = np.add.reduceat(alive, c.uplink_starts, axis=1) > 0
        site_up = ~site_failed & has_uplink
        upstream_failed = _any_member(c.upstream_member, chunk)
        up = np.rint(site_up.astype(np.float32) @ c.counts).astype(np.int32)
        reasons[lo:lo + CHUNK] = _services(c, site_up, up, upstream_failed)
        up_all[lo:lo + CHUNK] = up
        down_all[lo:lo + CHUNK] = ~site_up
        upfail_all[lo:lo + CHUNK] = upstream_failed
    return reasons, up_all, down_all, upfail_all


def _services(c: _Compiled, site_up: np.ndarray, up: np.ndarray, upstream_failed: np.ndarray) -> np.ndarray:
    reasons = np.zeros(up.shape, dtype=np.int8)
    for j in c.order:
        spec, u = c.specs[j], up[:, j]
        r = np.zeros(u.shape[0], dtype=np.int8)

        def mark(cond: np.ndarray, reason: Reason) -> None:
            r[(r == 0) & cond] = CODE[reason]

        if c.primary[j] is not None:
            mark(~site_up[:, c.primary[j]], Reason.RPO)
        mark(u == 0, Reason.UNAVAILABLE)
        if spec.kind == "quorum":
            mark(2 * u <= spec.instances, Reason.QUORUM)
        else:
            for metric, per_instance in spec.capacity.items():
                available = per_instance * (u if spec.kind == "stateless" else (u > 0))
                mark(available + 1e-9 < spec.required[metric], Reason.CAPACITY)
        if c.upstream_cols[j]:
            mark(upstream_failed[:, c.upstream_cols[j]].all(axis=1), Reason.UPSTREAMS)
        if c.require_cols[j]:
            mark((reasons[:, c.require_cols[j]] != 0).any(axis=1), Reason.REQUIRES)
        reasons[:, j] = r
    return reasons
