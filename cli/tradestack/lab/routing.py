"""Has BGP converged? Every session whose link is up must be Established (BIRD, read through birdc).

A restored carrier is only usable once its sessions are back; a drill or test that takes the next
carrier down before that isolates a site it never meant to (the lab's BIRD reconnects within ~1-5 s).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..polling import until_clear
from . import netlink

BIRDC = "/usr/sbin/birdc"


@dataclass(frozen=True)
class Session:
    netns: str
    ifname: str
    state: str          # BIRD's info column: Established, Active, Connect, ...
    link_up: bool       # the interface under it is operationally up

    @property
    def healthy(self) -> bool:
        return self.state == "Established" or not self.link_up


def sessions(workdir: Path) -> list[Session]:
    """Every BGP session of every BIRD instance of one lab stack (`workdir`: the stack's daemon folder)."""
    found: list[Session] = []
    for socket in sorted(workdir.glob("*/bird.ctl")):
        netns = socket.parent.name
        up = netlink.interfaces_up(netns)
        ifnames = {"n_" + "".join(ch if ch.isalnum() else "_" for ch in name): name for name in up}
        done = subprocess.run([BIRDC, "-s", str(socket), "show", "protocols"], capture_output=True, text=True,
                              timeout=10, check=False)
        for line in done.stdout.splitlines():
            cols = line.split()
            if len(cols) >= 2 and cols[1] == "BGP" and cols[0] in ifnames:
                ifname = ifnames[cols[0]]
                found.append(Session(netns, ifname, cols[5] if len(cols) > 5 else cols[3], up[ifname]))
    return found


def unconverged(workdir: Path) -> list[str]:
    """Sessions that should be up and are not, as `netns/ifname: state` (empty: converged)."""
    return [f"{s.netns}/{s.ifname}: {s.state}" for s in sessions(workdir) if not s.healthy]


def wait_converged(workdir: Path, timeout: float = 30.0) -> list[str]:
    """Wait until every session on a live link is Established; return what is still not (empty: converged)."""
    return until_clear(lambda: unconverged(workdir), timeout)
