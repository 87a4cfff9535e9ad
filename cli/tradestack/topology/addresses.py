"""Addresses the topology implies for a deployed stack: each site's public virtual IP."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from .model import Topology

VIP_HOST = 5  # the gateways' virtual IP is .5 of each site LAN


def gateway_sites(topology: Topology) -> list[str]:
    """The sites the topology places a gateway in: the ones with a public address."""
    gateway = next((s for s in topology.services if s.name == "gateway"), None)
    return [site for site, n in (gateway.placement.items() if gateway else []) if n > 0]


def site_vips(topology: Topology, site_prefixes: Mapping[str, str]) -> dict[str, str]:
    """Site -> its public virtual IP (held by one of its load balancers), for every site with gateways;
    `site_prefixes` are the stack's site LANs (its outputs)."""
    return {site: str(ipaddress.ip_network(site_prefixes[site]).network_address + VIP_HOST)
            for site in sorted(gateway_sites(topology))}
