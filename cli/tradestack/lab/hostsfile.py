"""A hosts file for a lab stack: its namespaces described as the remote machines a real estate has (management
addresses, pinned host keys, which edge interface faces which carrier), so the `hosts` substrate can be proved
on the lab without a second data centre."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..substrates.inventory import read_hosts
from ..topology import load_topology

if TYPE_CHECKING:
    from .stack import LabStack


def hosts_file(stack: "LabStack", private_key: Path) -> dict[str, Any]:
    """The hosts file's content (a mapping, ready for YAML) for a lab stack that is up."""
    outputs = stack.outputs()
    missing = [k for k in ("known_hosts", "edges", "site_prefixes") if k not in outputs]
    if missing:  # e.g. an `up` that failed part way: its outputs were never written
        raise InputError(f"lab stack {stack.name!r} is not up (no {', '.join(missing)} in its outputs): run "
                         f"`tradestack stack up --stack {stack.name}` until it succeeds")
    keys = {line.split()[0]: " ".join(line.split()[1:3]) for line in outputs["known_hosts"].splitlines() if line}
    inventory = read_hosts(stack.access_files().inventory)
    topology = stack.topology_path()
    sites = []
    for site in load_topology(topology).sites:
        edge = outputs["edges"][site.name]
        sites.append({"name": site.name, "prefix": outputs["site_prefixes"][site.name],
                      "edge": {"name": edge["host"], "address": edge["address"], "host_key": keys[edge["address"]],
                               "uplinks": {u.carrier: {"interface": f"c-{u.carrier}", "bgp_protocol": f"n_c_{u.carrier}"}
                                           for u in site.uplinks},
                               "birdc": f"/usr/sbin/birdc -s {stack.daemons_dir / edge['host'] / 'bird.ctl'}"}})
    machines = stack.boots_machines()
    hosts = []
    for name, host in inventory.items():
        assert host.address is not None, name  # the lab's inventory gives every host its management address
        entry = {"name": name, "service": host.service, "address": host.address, "lan_address": host.lan_address,
                 "host_key": keys[host.address]}
        if not machines:  # a namespace's sshd is the lab's own; a machine's is its /etc/ssh/sshd_config
            entry["sshd_config"] = str(stack.daemons_dir / name / "sshd_config")
        if host.site:
            entry["site"] = host.site
        if host.upstream:
            entry["upstream"] = host.upstream
        hosts.append(entry)
    # booted machines are real hosts but for their time server (the lab's: they have no route out); namespaces
    # share one kernel and one filesystem and have no systemd
    traits = ({"time_servers": [outputs["time_server"]]} if machines else
              {"shared_filesystem": True, "supervisor": "supervisord", "install_packages": False,
               "manage_sshd": False, "time_sync": False})
    document = {"topology": str(topology), "ssh": {"user": "root", "private_key": str(private_key)},
                "traits": traits, "sites": sites, "hosts": hosts}
    if machines:  # their power switch, as a BMC's would be named: this lab's own (switch.py; root)
        switch = [sys.executable, "-m", "tradestack.lab.switch", "--lab", str(stack.daemons_dir), "{host}"]
        document["power"] = {"off": [*switch, "off"], "on": [*switch, "on"]}
    return document
