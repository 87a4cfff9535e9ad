"""Risk groups: explicit ones from the file plus the implicit site:, carrier: and upstream: ones."""

from __future__ import annotations

from dataclasses import dataclass, field

from .model import Site, Topology, Upstream


def site_groups(site: Site) -> list[str]:
    """Groups whose failure takes the whole site down (its own name, power feeds, ...)."""
    return _unique([f"site:{site.name}", *site.risk_groups])


def power_feed(topology: Topology, site: str) -> str | None:
    """The power risk group a power loss of `site` cuts: the first `power:` group the topology gives it."""
    found = next((s for s in topology.sites if s.name == site), None)
    return next((g for g in (site_groups(found) if found else []) if g.startswith("power:")), None)


def uplink_groups(site: Site, index: int) -> list[str]:
    """Groups whose failure cuts one uplink of `site` (its carrier, facilities, ...)."""
    uplink = site.uplinks[index]
    return _unique([f"carrier:{uplink.carrier}", *uplink.risk_groups])


def upstream_groups(upstream: Upstream) -> list[str]:
    return _unique([f"upstream:{upstream.name}", *upstream.risk_groups])


@dataclass(frozen=True)
class Tagged:
    """Everything one risk group takes down."""

    sites: list[str] = field(default_factory=list)
    uplinks: list[tuple[str, str]] = field(default_factory=list)  # (site, carrier)
    upstreams: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RiskGroupIndex:
    """Every risk group that tags at least one site, uplink or upstream, sorted by name."""

    groups: list[str]
    tags: dict[str, Tagged]

    def __len__(self) -> int:
        return len(self.groups)


def risk_group_index(topology: Topology) -> RiskGroupIndex:
    tags: dict[str, Tagged] = {}
    for site in topology.sites:
        for group in site_groups(site):
            tags.setdefault(group, Tagged()).sites.append(site.name)
        for i, uplink in enumerate(site.uplinks):
            for group in uplink_groups(site, i):
                tags.setdefault(group, Tagged()).uplinks.append((site.name, uplink.carrier))
    for upstream in topology.upstreams:
        for group in upstream_groups(upstream):
            tags.setdefault(group, Tagged()).upstreams.append(upstream.name)
    groups = sorted(tags)
    return RiskGroupIndex(groups, {g: tags[g] for g in groups})


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
