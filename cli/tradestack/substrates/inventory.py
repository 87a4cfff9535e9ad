"""The Ansible inventory every substrate hands the playbooks, in one shape: groups per service, per site and
per site role, `outside` for hosts in no site (venues, clients), and each host's site prefix and role (pure)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def inventory(entries: Iterable[tuple[str, dict[str, Any]]], roles: Mapping[str, str], prefixes: Mapping[str, str],
              common: dict[str, Any]) -> dict[str, Any]:
    """`entries`: (inventory name, host variables with `service`, and `site` for a host in a site)."""
    hosts: dict[str, dict[str, Any]] = {}
    groups: dict[str, dict[str, Any]] = {}
    for name, hostvars in entries:
        hostvars = dict(hostvars)
        names = [str(hostvars["service"]).replace("-", "_")]
        site = hostvars.get("site")
        if site:
            hostvars |= {"site_prefix": prefixes[site], "site_role": roles[site]}
            names += [f"site_{site}", f"role_{roles[site]}"]
        else:
            names.append("outside")
        hosts[name] = hostvars
        for group in names:
            groups.setdefault(group, {"hosts": {}})["hosts"][name] = {}
    return {"all": {"hosts": hosts, "children": groups, "vars": common}}
