"""BIRD and sshd inside lab namespaces, and the package proxy and time server of a lab of machines on this host's
side of its management network: configuration text and lifecycle."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from ..polling import wait_for
from .netlink import LabError, pid_alive_in, run_in
from .plan import Host, Router

BIRD = "/usr/sbin/bird"
SSHD = "/usr/sbin/sshd"
APT_PROXY = "/usr/sbin/apt-cacher-ng"
APT_PROXY_PORT = 3142
CHRONYD = "/usr/sbin/chronyd"


def apt_proxy_config(address: str, workdir: Path) -> str:
    """apt-cacher-ng for a lab's machines (they have no route out): listening only on this host's address on the
    lab's management network, forwarding to the Debian mirror the machines name (no remapping to other mirrors),
    its cache, logs, pid file and socket in `workdir`."""
    return "\n".join([
        f"CacheDir: {workdir / 'cache'}", f"LogDir: {workdir / 'log'}", "SupportDir: /usr/lib/apt-cacher-ng",
        f"Port: {APT_PROXY_PORT}", f"BindAddress: {address}", f"PidFile: {workdir / 'apt-proxy.pid'}",
        f"SocketPath: {workdir / 'apt-proxy.socket'}", "ExThreshold: 4", "ForeGround: 0", "ReportPage:", ""])


def time_server_config(address: str, network: str, workdir: Path) -> str:
    """chronyd as the lab's NTP server: it serves this host's clock (`local`: no upstream, no internet) to the
    management network only, listens on this host's address there alone, and never sets the clock (run with -x)."""
    return "\n".join([
        f"bindaddress {address}", "port 123", f"allow {network}", "local stratum 8", "cmdport 0",
        f"pidfile {workdir / 'time-server.pid'}", ""])


def bird_config(r: Router, log: str) -> str:
    """BGP with BFD (100 ms x 3) on every neighbor; ECMP into the kernel; fast reconnects."""
    if r.role in ("carrier", "ix"):
        export = "if source = RTS_BGP then accept; reject;"
    elif r.role == "edge":
        export = "if source = RTS_DEVICE then accept; reject;"  # a site is never transit
    else:
        export = "if source = RTS_STATIC then accept; reject;"
    # clients and venues originate traffic from their announced /32, not from a link address
    src = f"krt_prefsrc = {r.announce_static[0]}; " if r.announce_static else ""
    lines = [
        f"router id {r.router_id};",
        f'log "{log}" {{ info, warning, error, fatal }};',
        "protocol device { scan time 2; }",
        "protocol kernel {",
        f"  ipv4 {{ import none; export filter {{ if source = RTS_BGP then {{ {src}accept; }} reject; }}; }};",
        "  merge paths on; scan time 10;",
        "}",
        "protocol bfd { interface \"*\" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; }",
    ]
    if r.announce_lan:
        lines.append(f'protocol direct {{ ipv4; interface "{r.announce_lan}"; }}')
    if r.announce_static:
        routes = " ".join(f'route {a}/32 via "lo";' for a in r.announce_static)
        lines.append(f"protocol static {{ ipv4; {routes} }}")
    for n in r.neighbors:
        name = "n_" + "".join(ch if ch.isalnum() else "_" for ch in n.ifname)
        lines += [
            f"protocol bgp {name} {{",
            f"  local {n.local} as {r.asn}; neighbor {n.peer} as {n.peer_as};",
            "  bfd on; hold time 9; keepalive time 3; connect retry time 1; error wait time 1, 5;",
            f"  ipv4 {{ import all; export filter {{ {export} }}; }};",
            "}",
        ]
    return "\n".join(lines) + "\n"


def sshd_config(host: Host, workdir: Path) -> str:
    """Listens only on the management address; key-only root login; everything in `workdir`.

    A lab host shares this machine's home directories, so a login there would run this machine's root's shell
    start-up: bash reads ~/.bashrc for a command sshd starts (a developer's pyenv init there costs 0.1 s of CPU
    per command, and a drill through SSH asks about twenty a second). A real server's root has its own; the lab's
    logins skip it: bash reads it only at the first shell level, and SHLVL=1 makes the command's bash the second."""
    return "\n".join([
        f"ListenAddress {host.mgmt_ip}",
        "Port 22",
        f"HostKey {workdir}/ssh_host_ed25519_key",
        f"PidFile {workdir}/sshd.pid",
        f"AuthorizedKeysFile {workdir}/authorized_keys",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "UsePAM no",
        "StrictModes no",
        "UseDNS no",
        "MaxStartups 100:30:200",
        "SetEnv SHLVL=1",
        "Subsystem sftp internal-sftp",
        "",
    ])


def start(kind: str, netns: str, workdir: str, config: str, extra: dict[str, Any]) -> dict[str, Any]:
    """Write the config and start the daemon in `netns`; return its pid and outputs."""
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    pidfile = wd / f"{kind}.pid"
    stop(kind, netns, workdir)
    outs: dict[str, Any] = {}
    if kind == "bird":
        conf = wd / "bird.conf"
        conf.write_text(config)
        run_in(netns, [BIRD, "-c", str(conf), "-s", str(wd / "bird.ctl"), "-P", str(pidfile)])
    elif kind == "sshd":
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
        key = wd / "ssh_host_ed25519_key"
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", netns, "-f", str(key)],
                           check=True, capture_output=True)
        auth = wd / "authorized_keys"
        auth.write_text(extra["authorized_key"].strip() + "\n")
        auth.chmod(0o600)
        conf = wd / "sshd_config"
        conf.write_text(config)
        run_in(netns, [SSHD, "-f", str(conf)])
        outs["host_key"] = (wd / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    elif kind == "apt-proxy":  # on this host (netns ""), where the mirror is reachable
        conf = wd / "conf"
        for part in (conf, wd / "cache", wd / "log"):
            part.mkdir(parents=True, exist_ok=True)
        (conf / "acng.conf").write_text(config)
        run_in(None, [APT_PROXY, "-c", str(conf)])
    elif kind == "time-server":  # on this host (netns ""), as the package proxy
        conf = wd / "chrony.conf"
        conf.write_text(config)
        run_in(None, [CHRONYD, "-x", "-f", str(conf)])
    else:
        raise LabError(f"unknown daemon kind {kind}")
    if not wait_for(lambda: _pid(pidfile) is not None and pid_alive_in(_pid(pidfile) or 0, netns), 5):
        raise LabError(f"{kind} did not start in {netns}; see {wd}")
    outs["pid"] = _pid(pidfile)
    return outs


def running(kind: str, netns: str, workdir: str) -> int | None:
    pid = _pid(Path(workdir) / f"{kind}.pid")
    return pid if pid and pid_alive_in(pid, netns) else None



def stop(kind: str, netns: str, workdir: str) -> None:
    pid = running(kind, netns, workdir)
    if pid:
        os.kill(pid, signal.SIGTERM)
        if not wait_for(lambda: running(kind, netns, workdir) is None, 3):
            os.kill(pid, signal.SIGKILL)
    (Path(workdir) / f"{kind}.pid").unlink(missing_ok=True)


def _pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
