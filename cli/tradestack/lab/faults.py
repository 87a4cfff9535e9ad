"""Fail and restore risk groups through the lab's fault map (a stack output)."""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from . import netlink


def set_group(fault_map: dict[str, Any], group: str, failed: bool) -> list[str]:
    """Take every link of `group` down (failed=True) or up again; return the links touched."""
    if group not in fault_map:
        raise InputError(f"risk group {group!r} is not in the fault map; known: {', '.join(sorted(fault_map))}")
    touched = []
    for link in fault_map[group]["links"]:
        netlink.set_link_up(link["netns"], link["ifname"], not failed)
        touched.append(link["link"])
    return touched
