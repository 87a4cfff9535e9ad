"""The hosts stack's Pulumi program: every machine of the hosts file registered, the outputs every substrate's
stack has. Config: `tradestack:hostsFile` (path), the host settings (`tradestack:stateRoot`, ...)."""

from __future__ import annotations

import pulumi
import yaml

from ..hostsettings import HostSettings
from . import plan
from .load import load_hosts_file
from .resources import RegisteredHost


def program() -> None:
    config = pulumi.Config("tradestack")
    stack = pulumi.get_stack()
    estate = load_hosts_file(config.require("hostsFile"))
    settings = HostSettings.from_config({f"tradestack:{k}": v for k in HostSettings.KEYS.values()
                                         if (v := config.get(k)) is not None})
    spec = estate.spec
    edges = {s.edge.name: [u.interface for u in s.edge.uplinks.values()] for s in spec.sites}
    registered = {}
    for name, (address, host_key) in plan.machines(estate).items():
        registered[name] = RegisteredHost(f"host-{name}", {
            "name": name, "address": address, "port": spec.ssh.port, "user": spec.ssh.user,
            "become": spec.ssh.become, "private_key": str(estate.private_key), "host_key": host_key,
            "state_dir": f"{settings.state_root}/{stack}-drills", "interfaces": edges.get(name, []),
            "kernel": None, "hostname": None, "python": None, "added_table": None, "added_dir": None})
    for key, value in plan.outputs(estate, stack).items():
        pulumi.export(key, value)
    pulumi.export("inventory", yaml.safe_dump(plan.inventory(estate, stack), sort_keys=False))
    pulumi.export("known_hosts", plan.known_hosts(estate))
    pulumi.export("facts", {name: r.hostname for name, r in registered.items()})  # type: ignore[attr-defined]
