"""Has BGP converged? Every session whose link is up must be Established (BIRD, read through its control socket).

A restored carrier is only usable once its sessions are back; a drill or test that takes the next
carrier down before that isolates a site it never meant to (the lab's BIRD reconnects within ~1-5 s).
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from pathlib import Path

from ..polling import until_clear
from . import netlink

_FINAL = re.compile(rb"^\d{4} ", re.M)  # a reply's last line: its code, then a space (not a dash)


@dataclass(frozen=True)
class Session:
    netns: str
    ifname: str
    state: str          # BIRD's info column: Established, Active, Connect, ...
    link_up: bool       # the interface under it is operationally up

    @property
    def healthy(self) -> bool:
        return self.state == "Established" or not self.link_up


def show_protocols(control: Path, timeout: float = 10.0) -> list[list[str]]:
    """BIRD's `show protocols` table through its control socket, one list of columns per line: what birdc does,
    without a process per question (a drill's observer asks every instance twice a second). Empty when BIRD
    does not answer."""
    try:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(timeout)
            conn.connect(str(control))
            _reply(conn)  # its greeting: "0001 BIRD x.y ready."
            conn.sendall(b"show protocols\n")
            text = _reply(conn)
    except OSError:
        return []
    return [cols for line in text if (cols := line.split())]


def _reply(conn: socket.socket) -> list[str]:
    """One reply's lines without their codes: `NNNN-text` and ` text` go on, `NNNN text` ends it."""
    data = b""
    while not (data.endswith(b"\n") and _FINAL.search(data)):
        chunk = conn.recv(65536)
        if not chunk:
            raise ConnectionError("BIRD closed its control socket mid-reply")
        data += chunk
    return [line[5:] if line[:4].isdigit() else line[1:] for line in data.decode().splitlines()]


def _bgp(control: Path) -> list[tuple[str, str]]:
    """(protocol name, BIRD's info column: Established, Active, ...) of each BGP session of one instance."""
    return [(cols[0], cols[5] if len(cols) > 5 else cols[3])
            for cols in show_protocols(control) if len(cols) >= 4 and cols[1] == "BGP"]


def sessions(workdir: Path) -> list[Session]:
    """Every BGP session of every BIRD instance of one lab stack (`workdir`: the stack's daemon folder)."""
    found: list[Session] = []
    for control in sorted(workdir.glob("*/bird.ctl")):
        netns = control.parent.name
        up = netlink.interfaces_up(netns)
        ifnames = {"n_" + "".join(ch if ch.isalnum() else "_" for ch in name): name for name in up}
        for name, state in _bgp(control):
            if name in ifnames:
                found.append(Session(netns, ifnames[name], state, up[ifnames[name]]))
    return found


def established(workdir: Path) -> int:
    """How many BGP sessions of the stack are Established (no interface lookups: the observer's cheap count)."""
    return sum(state == "Established" for control in sorted(workdir.glob("*/bird.ctl")) for _, state in _bgp(control))


def unconverged(workdir: Path) -> list[str]:
    """Sessions that should be up and are not, as `netns/ifname: state` (empty: converged)."""
    return [f"{s.netns}/{s.ifname}: {s.state}" for s in sessions(workdir) if not s.healthy]


def wait_converged(workdir: Path, timeout: float = 30.0) -> list[str]:
    """Wait until every session on a live link is Established; return what is still not (empty: converged)."""
    return until_clear(lambda: unconverged(workdir), timeout)
