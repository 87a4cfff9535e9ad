"""A lab machine's power switch, as a BMC offers one: off, on, status.

Off: its LAN port goes dark and every process of the machine ends at once (no shutdown); on: the port lit again
with the routes it had, and the machine boots from its own disk (what is enabled starts; nothing is deployed).

`tradestack stack power` is the operator's way in. A drill through `hosts` runs the switch the hosts file names
at the moment of its fault, on a machine busy with the load, and the drill's recovery is counted from then: so
the hosts file names this module's own entry point, which loads the machine and the network code alone (about
0.2 s of CPU, against 0.9 s for the whole CLI and three Pulumi processes before; a gateway crash through it took
6 s to switch off on a busy host):

    python -m tradestack.lab.switch --lab LAB_DIR HOST off|on|status

Exit 0 with the state after (`on`/`off`) on stdout; 2 for a bad argument or no such machine; 1 when switching
failed (what failed on stderr).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError, TradestackError
from . import machines, netlink
from .privileges import require_net_admin

ACTIONS = ("off", "on", "status")


def machine_in(lab_dir: Path, host: str) -> machines.Machine | None:
    """The machine `host` of the lab whose working directory is `lab_dir`, found by its disk (None: no such)."""
    state = lab_dir / host / "machine"
    if not (state / "upper").is_dir():  # its disk: made when the machine was first booted
        return None
    return machines.Machine(host, host, state, machines.lab_image())


def power(machine: machines.Machine, action: str) -> str:
    """Switch `machine` off or on, or say whether it is on; its state after (`on`/`off`)."""
    if action not in ACTIONS:
        raise InputError(f"power {action!r}: say off, on or status")
    if action == "status":
        return "on" if machine.running() else "off"
    require_net_admin()
    host, routes = machine.netns, machine.state / "lan-routes"
    if action == "off":
        if machine.running():
            kept = netlink.run_in(host, ["ip", "-4", "route", "show", "dev", "lan0"], check=False)
            routes.write_text(kept.stdout)
            netlink.set_link_up(host, "lan0", False)
            machine.power_off()
        return "off"
    netlink.set_link_up(host, "lan0", True)
    for route in (routes.read_text().splitlines() if routes.exists() else []):
        if not any(f"proto {p}" in route for p in ("kernel", "bird")):  # those come back with the port, BGP
            netlink.run_in(host, ["ip", "-4", "route", "replace", *route.split(), "dev", "lan0"])
    machine.boot()
    return "on"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tradestack.lab.switch",
                                     description="A lab machine's power switch (root).")
    parser.add_argument("--lab", required=True, type=Path, help="the lab's working directory")
    parser.add_argument("host", help="the machine, by its name in the lab")
    parser.add_argument("action", choices=ACTIONS)
    args = parser.parse_args(argv)
    machine = machine_in(args.lab, args.host)
    if machine is None:
        print(f"error: no machine {args.host!r} in the lab at {args.lab}", file=sys.stderr)
        return 2
    try:
        print(power(machine, args.action))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (TradestackError, OSError) as exc:
        print(f"error: {args.host}: power {args.action} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
