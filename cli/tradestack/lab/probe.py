"""TCP probes between lab namespaces (only lab addresses, never anything outside)."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import time

from .plan import LAB_RANGE

_SERVER = ("import socket,sys\n"
           "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
           "s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(512); print('ready', flush=True)\n"
           "while True:\n    c,_=s.accept(); c.close()\n")
_CLIENT = ("import socket,sys\n"
           "try:\n    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()\n"
           "except OSError as e:\n    print(e); sys.exit(1)\n")


def _check(address: str) -> None:
    if ipaddress.ip_address(address) not in LAB_RANGE:
        raise ValueError(f"{address} is not a lab address")


def listen(netns: str, address: str, port: int) -> subprocess.Popen[str]:
    """A TCP listener in `netns`; terminate() it when done."""
    _check(address)
    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", _SERVER, address, str(port)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.readline()
    return proc


def connect(netns: str, address: str, port: int, timeout: float = 2.0) -> bool:
    _check(address)
    proc = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", _CLIENT, address, str(port),
                           str(timeout)], capture_output=True, text=True, timeout=timeout + 10, check=False)
    return proc.returncode == 0


def time_until(netns: str, address: str, port: int, limit: float, reachable: bool = True) -> float | None:
    """Seconds until `address` becomes reachable (or unreachable) from `netns`; None if not by `limit`."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if connect(netns, address, port, timeout=0.3) == reachable:
            return time.monotonic() - start
        time.sleep(0.02)
    return None
