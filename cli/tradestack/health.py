"""What "healthy" means for a deployed trading stack, once (pure).

Drill preflight and capacity verify (drills/steady.py, from the substrate's probes), `tradestack status`
(deploy/status.py, from a read-only playbook) and the audit's resilience controls (from testinfra) each
observe the stack their own way, and judge what they observed with these functions. Each returns the
problems found, one line each; empty means healthy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def synchronous_standbys(members: list[dict[str, Any]]) -> list[str]:
    """The members Patroni names synchronous standby that are streaming from the leader. Being named is not
    enough: Patroni names a node that came back after a cut while it still has to rewind onto the new timeline,
    and until it streams it holds none of the new commits (a failover to it then finds no healthy node)."""
    return [m["name"] for m in members if m.get("role") == "sync_standby" and m.get("state") == "streaming"]


def database_problems(members: list[dict[str, Any]], sites: Mapping[str, str | None] | None = None,
                      expected: int | None = None) -> list[str]:
    """One leader, and (with more than one member, or `expected` database hosts) a streaming synchronous standby,
    in another site than the leader when `sites` (member -> site) is given: a site lost with the leader must not
    take every acknowledged commit with it."""
    if not members:
        return ["database: no Patroni member answers"]
    leaders = [m["name"] for m in members if m.get("role") == "leader"]
    if not leaders:
        return ["database: no Patroni leader"]
    if len(leaders) > 1:
        return [f"database: {len(leaders)} leaders: {', '.join(sorted(leaders))}"]
    if max(len(members), expected or 0) == 1:
        return []
    syncs = synchronous_standbys(members)
    if not syncs:
        return ["database: no synchronous standby"]
    if sites is not None and not any(sites.get(s) != sites.get(leaders[0]) for s in syncs):
        return [f"database: no synchronous standby in another site than the leader {leaders[0]} "
                f"(synchronous standbys: {', '.join(syncs)})"]
    return []


def vip_problems(site: str, vip: str, holders: list[str]) -> list[str]:
    """Exactly one host holds a site's virtual IP (none: the site is unreachable; two: split brain)."""
    if not holders:
        return [f"{site}: nobody holds the VIP {vip}"]
    if len(holders) > 1:
        return [f"{site}: VIP {vip} held by {len(holders)} hosts: {', '.join(sorted(holders))}"]
    return []


def program_problems(host: str, programs: Mapping[str, str], expected: list[str] | None = None) -> list[str]:
    """Every supervised program of a host runs (and every one `expected` is there at all)."""
    if not programs:
        return [f"{host}: no supervised programs (not deployed, or crashed)"]
    found = [f"{host}: {p} is {s.lower()}" for p, s in sorted(programs.items()) if s.lower() != "running"]
    found += [f"{host}: {p} is not supervised" for p in expected or [] if p not in programs]
    return found


def cluster_problems(clusters: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Per site cluster (as `Substrate.cluster_view` reports it): its API answers, every node is Ready, every
    service it should run is deployed with all its replicas ready."""
    found: list[str] = []
    for site, c in sorted(clusters.items()):
        if c.get("error"):
            found.append(f"{site}: cluster: {c['error']}")
            continue
        found += [f"{site}: node {name} is not Ready" for name, ready in sorted(c["nodes"].items()) if not ready]
        for service in c["expected"]:
            svc = c["services"].get(service)
            if svc is None:
                found.append(f"{site}: {service} is not deployed in its cluster")
            elif svc["ready"] < svc["replicas"]:
                found.append(f"{site}: {service} has {svc['ready']} of {svc['replicas']} replicas ready")
    return found
