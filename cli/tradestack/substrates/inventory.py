"""The Ansible inventory every substrate hands the playbooks, in one shape: groups per service, per site and
per site role, `outside` for hosts in no site (venues, clients), and each host's site prefix and role; and the
one reader of it, whose hosts an opened stack holds (`Substrate.hosts`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Host:
    """One host of a deployed stack, as its inventory names it."""

    name: str            # inventory name, e.g. lab-sz1-orderdb-1
    service: str
    site: str | None
    lan_address: str
    lan_interface: str = "lan0"
    upstream: str | None = None   # a venue host: the upstream it stands for
    address: str | None = None    # where Ansible and SSH reach it (its management address)


def host_named(ref: str, names: Iterable[str], stack: str) -> str | None:
    """The host a drill's short name means: the host of that name (a real estate's), the stack's (the lab names
    hosts `<stack>-sz1-orderdb-1`), or the one host whose name ends with `-<ref>` (an estate adopted under another
    stack name than the prefix of its hosts, as a lab of machines is); None when none or several do."""
    names = list(names)
    for candidate in (ref, f"{stack}-{ref}"):
        if candidate in names:
            return candidate
    ending = [n for n in names if n.endswith(f"-{ref}")]
    return ending[0] if len(ending) == 1 else None


def read_hosts(path: Path) -> dict[str, Host]:
    """The hosts of an inventory file this module wrote, by inventory name."""
    hosts = yaml.safe_load(path.read_text())["all"]["hosts"]
    return {name: Host(name, hv["service"], hv.get("site"), hv["lan_address"], hv.get("lan_interface", "lan0"),
                       hv.get("upstream"), hv.get("ansible_host")) for name, hv in hosts.items()}


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
