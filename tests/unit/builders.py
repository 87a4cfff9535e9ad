"""Small topologies for hand-computed tests, built as dicts and parsed through the real loader."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from tradestack.topology import Topology, parse_topology


def base() -> dict[str, Any]:
    """Two active sites on two carriers, a witness, one stateless service."""
    return {
        "name": "t",
        "peak": {"orders_per_second": 100},
        "headroom": 1.0,
        "carriers": [{"name": "a"}, {"name": "b"}],
        "sites": [
            {"name": "s1", "role": "active", "uplinks": [{"carrier": "a"}, {"carrier": "b"}]},
            {"name": "s2", "role": "standby", "uplinks": [{"carrier": "a"}, {"carrier": "b"}]},
            {"name": "w", "role": "witness", "uplinks": [{"carrier": "b"}]},
        ],
        "upstreams": [],
        "services": [
            {"name": "web", "kind": "stateless", "capacity": {"orders_per_second": 50},
             "placement": {"s1": 2, "s2": 2}},
        ],
    }


def build(doc: dict[str, Any]) -> Topology:
    return parse_topology(yaml.safe_dump(doc, sort_keys=False), "t.yaml")


def with_services(*services: dict[str, Any], **top: Any) -> Topology:
    doc = copy.deepcopy(base())
    doc["services"] = list(services)
    doc.update(top)
    return build(doc)
