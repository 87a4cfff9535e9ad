"""Adapter over pyroute2 and `ip netns exec`: the only module that changes the lab's kernel state."""

from __future__ import annotations

import ctypes
import ipaddress
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute

from ..errors import TradestackError

NETNS_DIR = "/run/netns"


class LabError(TradestackError):
    """A lab operation on the kernel failed."""


# pyroute2's NetNS forks a helper (without exec) to enter a namespace; inside the dynamic
# provider, a multi-threaded gRPC server, such forks crash. Instead the calling thread itself
# enters the namespace with setns(2) (per-thread on Linux), opens a netlink socket (which stays
# bound to that namespace) and comes back. Namespaces are created and removed by `ip netns`.
_LOCK = threading.RLock()
_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise LabError(f"setns failed: {os.strerror(err)}")


@contextmanager
def entered(ns: str | None) -> Iterator[None]:
    """Run the body with this thread inside namespace `ns` (None: stay where we are)."""
    if ns is None:
        yield
        return
    with _LOCK:
        try:
            target = os.open(os.path.join(NETNS_DIR, ns), os.O_RDONLY)
        except FileNotFoundError:
            raise LabError(f"network namespace {ns} does not exist") from None
        origin = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            _setns(target)
            yield
        finally:
            _setns(origin)
            os.close(origin)
            os.close(target)


@contextmanager
def ipr(ns: str | None) -> Iterator[Any]:
    with _LOCK:
        with entered(ns):
            handle = IPRoute()
        try:
            yield handle
        finally:
            handle.close()


def ns_exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def list_namespaces(prefix: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


def create_namespace(name: str, forwarding: bool, loopback: list[str]) -> None:
    if not ns_exists(name):
        run_in(None, ["ip", "netns", "add", name])
    with ipr(name) as ns:
        lo = ns.link_lookup(ifname="lo")[0]
        ns.link("set", index=lo, state="up")
        have = {a.get("address") for a in ns.addr("dump", index=lo)}
        for addr in loopback:
            if addr not in have:
                ns.addr("add", index=lo, address=addr, prefixlen=32)
    sysctls = {"net.ipv4.ip_forward": int(forwarding), "net.ipv4.fib_multipath_hash_policy": 1,
               "net.ipv4.conf.all.rp_filter": 0, "net.ipv4.conf.default.rp_filter": 0}
    run_in(name, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in sysctls.items())])


def delete_namespace(name: str) -> None:
    if not ns_exists(name):
        return
    kill_namespace_processes(name, signal.SIGKILL)
    run_in(None, ["ip", "netns", "del", name])


def namespace_pids(name: str) -> list[int]:
    """Processes whose network namespace is `name`."""
    try:
        target = os.stat(os.path.join(NETNS_DIR, name)).st_ino
    except FileNotFoundError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/net").st_ino == target:
                    pids.append(int(entry))
            except (FileNotFoundError, PermissionError, ProcessLookupError):
                continue
    return pids


def kill_namespace_processes(name: str, sig: int = signal.SIGKILL) -> list[int]:
    """Signal every process in the namespace. With SIGKILL, repeat until none is left: a supervisor
    killed a moment after one of its children may have started a replacement in between."""
    killed: list[int] = []
    for _ in range(50 if sig == signal.SIGKILL else 1):
        pids = namespace_pids(name)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        killed += pids
        if sig == signal.SIGKILL:
            time.sleep(0.02)
    return killed


def run_in(ns: str | None, argv: list[str], check: bool = True, timeout: float = 30,
           **kwargs: Any) -> subprocess.CompletedProcess[str]:
    full = (["ip", "netns", "exec", ns] if ns else []) + argv
    proc = subprocess.run(full, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(full)} exited {proc.returncode}: {proc.stderr.strip()[:500]}")
    return proc


def _index(ns: Any, ifname: str) -> int | None:
    found = ns.link_lookup(ifname=ifname)
    return found[0] if found else None


def create_bridge(ns_name: str | None, ifname: str, address: str | None) -> None:
    with ipr(ns_name) as ns:
        if _index(ns, ifname) is None:
            ns.link("add", ifname=ifname, kind="bridge")
        idx = _index(ns, ifname)
        _set_address(ns, idx, address)
        ns.link("set", index=idx, state="up")


def delete_link(ns_name: str | None, ifname: str) -> None:
    if ns_name and not ns_exists(ns_name):
        return
    with ipr(ns_name) as ns:
        idx = _index(ns, ifname)
        if idx is not None:
            ns.link("del", index=idx)


def interfaces_up(ns_name: str | None) -> dict[str, bool]:
    """Every interface of a namespace: is it administratively and operationally up? (empty: no namespace)"""
    if ns_name and not ns_exists(ns_name):
        return {}
    with ipr(ns_name) as ns:
        return {link.get_attr("IFLA_IFNAME"): bool(link["flags"] & 1) and link.get_attr("IFLA_OPERSTATE") == "UP"
                for link in ns.get_links()}


def link_state(ns_name: str | None, ifname: str) -> dict[str, Any] | None:
    """{"up": bool (admin), "oper": "UP"|"DOWN"|..., "addresses": [...], "master": ifname|None}, or None."""
    if ns_name and not ns_exists(ns_name):
        return None
    with ipr(ns_name) as ns:
        idx = _index(ns, ifname)
        if idx is None:
            return None
        link = ns.link("get", index=idx)[0]
        master = link.get("master")
        master_name = ns.link("get", index=master)[0].get("ifname") if master else None
        addrs = sorted(f"{a.get('address')}/{a['prefixlen']}" for a in ns.addr("dump", index=idx))
        return {"up": bool(link["flags"] & 1), "oper": link.get_attr("IFLA_OPERSTATE"), "addresses": addrs,
                "master": master_name}


def create_veth(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Create a veth pair with one end in each namespace (None = root), then address and enslave."""
    if link_state(a.get("netns"), a["ifname"]) is None or link_state(b.get("netns"), b["ifname"]) is None:
        delete_link(a.get("netns"), a["ifname"])
        delete_link(b.get("netns"), b["ifname"])
        peer: dict[str, Any] = {"ifname": b["ifname"]}
        # the root side is this process's own namespace (its main thread never leaves it)
        fd = os.open(os.path.join(NETNS_DIR, b["netns"]) if b.get("netns") else "/proc/self/ns/net",
                     os.O_RDONLY)
        try:
            peer["net_ns_fd"] = fd
            with ipr(a.get("netns")) as ns:
                ns.link("add", ifname=a["ifname"], kind="veth", peer=peer)
        finally:
            os.close(fd)
    for end in (a, b):
        configure_end(end)


def configure_end(end: dict[str, Any]) -> None:
    with ipr(end.get("netns")) as ns:
        idx = _index(ns, end["ifname"])
        if idx is None:
            raise LabError(f"interface {end['ifname']} missing in {end.get('netns') or 'the root namespace'}")
        if end.get("bridge"):
            master = _index(ns, end["bridge"])
            if master is None:
                raise LabError(f"bridge {end['bridge']} missing in {end.get('netns') or 'the root namespace'}")
            ns.link("set", index=idx, master=master)
        _set_address(ns, idx, end.get("address"))
        ns.link("set", index=idx, state="up")


def set_link_up(ns_name: str | None, ifname: str, up: bool) -> None:
    with ipr(ns_name) as ns:
        idx = _index(ns, ifname)
        if idx is None:
            raise LabError(f"interface {ifname} missing in {ns_name}")
        ns.link("set", index=idx, state="up" if up else "down")


def _set_address(ns: Any, idx: int | None, address: str | None) -> None:
    if not address or idx is None:
        return
    ip, plen = address.split("/")
    have = {(a.get("address"), a["prefixlen"]) for a in ns.addr("dump", index=idx)}
    if (ip, int(plen)) not in have:
        ns.addr("add", index=idx, address=ip, prefixlen=int(plen))


def add_default_route(ns_name: str, gateway: str) -> None:
    with ipr(ns_name) as ns:
        routes = [r for r in ns.route("dump") if r.get("dst_len") == 0 and r.get("table") == 254]
        if not any(r.get("gateway") == gateway for r in routes):
            for r in routes:
                ns.route("del", dst="0.0.0.0/0", gateway=r.get("gateway"))
            ns.route("add", dst="0.0.0.0/0", gateway=gateway)


def set_route(ns_name: str, dst: str, gateway: str) -> None:
    """Route `dst` via `gateway` in the namespace (replacing any other route to it)."""
    with ipr(ns_name) as ns:
        ns.route("replace", dst=dst, gateway=gateway)


def route_via(ns_name: str, dst: str) -> str | None:
    """The gateway of the namespace's route to exactly `dst` (None: no such route, or no namespace)."""
    if not ns_exists(ns_name):
        return None
    network = ipaddress.ip_network(dst)
    with ipr(ns_name) as ns:
        for r in ns.route("dump"):
            if r.get("table") == 254 and r.get("dst") == str(network.network_address) \
                    and r.get("dst_len") == network.prefixlen:
                return r.get("gateway")
    return None


def delete_route(ns_name: str, dst: str) -> None:
    if route_via(ns_name, dst) is not None:
        with ipr(ns_name) as ns:
            ns.route("del", dst=dst)


def alive(pid: int) -> bool:
    """The process exists and has not ended (a zombie waiting for its parent has)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def pid_alive_in(pid: int, ns_name: str | None) -> bool:
    """`pid` runs in namespace `ns_name` (this host's own when empty or None, as for run_in)."""
    if not ns_name:
        return alive(pid)
    try:
        os.kill(pid, 0)
        return pid in namespace_pids(ns_name)
    except (ProcessLookupError, PermissionError):
        return False
