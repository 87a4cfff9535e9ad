"""Topology: sites, carriers, risk groups, upstreams and where each service runs."""

from .load import load_topology, parse_topology
from .model import Carrier, Service, Site, Topology, Uplink, Upstream
from .riskgroups import RiskGroupIndex, risk_group_index

__all__ = [
    "Carrier", "RiskGroupIndex", "Service", "Site", "Topology", "Uplink", "Upstream",
    "load_topology", "parse_topology", "risk_group_index",
]
