"""Booted Debian machines in the lab: systemd as init, a disk of their own, in a host's existing network namespace.

A base root filesystem is built once per Debian release and package set (debootstrap from this machine's Debian
mirror, cached outside the clone under a key of what went into it, like the Go builds); each machine is an overlay
of it (its own upper layer: its own /etc, users, packages, data), booted by systemd-nspawn inside the namespace
that already holds the host's addresses and links. Killing the machine's init ends every process at once: a power
loss, but the host's page cache survives it, so writes the machine had not synced are not lost as they would be
on real hardware.

Nothing here knows the topology or Pulumi: lab/resources.py makes a machine a Pulumi resource, and a lab stack
brought up with machines boots every host but its edge routers as one (lab/program.py); a `hosts` stack adopts
them to deploy and drill (lab/hostsfile.py). A machine reboots itself as a real one does (POWER_SUPPLY).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import EnvironmentProblem
from ..paths import cache_dir
from ..polling import wait_for
from .netlink import LabError, alive

RELEASE = "bookworm"
# what every machine boots with: init, its bus, sshd for Ansible, ip for its network, Python for Ansible's modules,
# and what any Debian server has (priority important) and tradestack's drills use: nftables, procps
BASE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "openssh-server", "iproute2", "python3", "nftables", "procps")
# a real host's services need no more: keepalived's VRRP and the drills' nftables (CAP_NET_ADMIN), raw sockets
# for VRRP and ping (CAP_NET_RAW); no CAP_SYS_TIME, so a time service can only read the shared clock
CAPABILITIES = ("CAP_NET_ADMIN", "CAP_NET_RAW")
NSPAWN = "systemd-nspawn"
# nspawn mounts /proc/sys read-only; its network part belongs to the machine's own namespace (the lab host's), whose
# sysctls a real host sets for itself (the database's TCP keepalives): writable, as with --private-network
NSPAWN_ENV = {"SYSTEMD_NSPAWN_API_VFS_WRITABLE": "network"}
# the image's recipe beyond debootstrap (_prepare): part of its cache key, raised when the recipe changes
RECIPE = 2
DEBOOTSTRAP = "debootstrap"
# a machine reboots itself: nspawn exits 133 when the machine's init asks for a reboot (systemd-nspawn@.service
# restarts it on that code); this loop, the machine's power supply, starts it again and ends on any other exit
POWER_SUPPLY = 'while "$@"; [ "$?" -eq 133 ]; do :; done'
# A machine's init, logind and getty hold inotify instances, counted against one limit for root summed over every
# machine (fs.inotify.max_user_instances, 128 by default): lab.yaml's 14 machines hold about 128 (2026-12-06), and a
# machine started beyond the limit dies at once ("Failed to allocate manager object: Too many open files"). `make
# setup` raises it as container hosts do; a boot checks it first.
INOTIFY_LIMIT = Path("/proc/sys/fs/inotify/max_user_instances")
INOTIFY_PER_MACHINE = 16
INOTIFY_WANTED = 8192  # the Makefile's INOTIFY_INSTANCES


class MachineError(LabError):
    """A machine could not be built, booted or removed."""


def debian_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The first Debian archive this machine's apt uses (deb822 `URIs:` or a one-line `deb` entry)."""
    files = sorted((sources / "sources.list.d").glob("*.sources")) + [sources / "sources.list",
                                                                       *sorted((sources / "sources.list.d").glob("*.list"))]
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        for uri in re.findall(r"^\s*URIs:\s*(\S+)", text, re.M) + re.findall(r"^\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.M):
            if "security" not in uri:
                return uri
    raise EnvironmentProblem(f"no Debian mirror found in {sources}: apt must know one to build a machine image")


@dataclass(frozen=True)
class BaseImage:
    """A root filesystem: a Debian release with a package set, from a mirror."""

    release: str = RELEASE
    packages: tuple[str, ...] = BASE_PACKAGES
    mirror: str = ""

    @property
    def key(self) -> str:
        text = "\n".join([f"recipe {RECIPE}", self.release, self.mirror, *sorted(self.packages)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def directory(self) -> Path:
        return cache_dir() / "machines" / f"debian-{self.release}-{self.key}"

    @property
    def root(self) -> Path:
        return self.directory / "root"

    @property
    def built(self) -> bool:
        return (self.directory / ".complete").exists()


def lab_image() -> BaseImage:
    """The image a lab's machines boot from: this release and package set, from this machine's mirror."""
    return BaseImage(mirror=debian_mirror())


def debootstrap_argv(image: BaseImage, target: Path) -> list[str]:
    return [DEBOOTSTRAP, "--variant=minbase", f"--include={','.join(sorted(image.packages))}", image.release,
            str(target), image.mirror]


def build_image(image: BaseImage, on_step: Callable[[str], None] = lambda s: None) -> Path:
    """The image's root, built first if this machine has not got it (minutes, once per key). Built into a
    directory of this process's own and renamed into place, so two builds at once never share a half-made root."""
    if image.built:
        return image.root
    if shutil.which(DEBOOTSTRAP) is None:
        raise EnvironmentProblem("debootstrap is not installed: run `make setup` (machines are built with it)")
    image.directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{image.directory.name}-", dir=image.directory.parent))
    try:
        on_step(f"building the Debian {image.release} machine image (debootstrap; once per package set)")
        done = subprocess.run(debootstrap_argv(image, staging / "root"), capture_output=True, text=True)
        if done.returncode != 0:
            raise MachineError(f"debootstrap failed (rc {done.returncode}): {(done.stderr or done.stdout)[-800:]}")
        _prepare(staging / "root")
        (staging / ".complete").write_text(image.key + "\n")
        try:
            staging.rename(image.directory)
        except OSError:  # another build renamed first: its root is as good as ours
            if not image.built:
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return image.root


def _prepare(root: Path) -> None:
    """What every machine needs before its first boot and debootstrap does not do: no login on a console nobody
    reads, an empty machine-id (each machine gets its own at boot), no host keys (each machine makes its own)."""
    (root / "etc" / "machine-id").write_text("")
    for key in (root / "etc" / "ssh").glob("ssh_host_*"):
        key.unlink()
    wants = root / "etc" / "systemd" / "system" / "getty.target.wants"
    shutil.rmtree(wants, ignore_errors=True)
    # sshd makes its host keys on its first boot, before Debian's own `sshd -t` check (which fails without them)
    dropin = root / "etc" / "systemd" / "system" / "ssh.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "host-keys.conf").write_text("[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\n"
                                           "ExecStartPre=/usr/sbin/sshd -t\n")
    (root / "etc" / "hostname").unlink(missing_ok=True)  # debootstrap copies this machine's; each sets its own


@dataclass(frozen=True)
class Machine:
    """One booted machine: `name` (its hostname), in network namespace `netns`, its layers under `state`."""

    name: str
    netns: str
    state: Path
    image: BaseImage

    @property
    def merged(self) -> Path:
        return self.state / "root"

    @property
    def pidfile(self) -> Path:
        """The pid of its power supply (POWER_SUPPLY), whose child is the running nspawn."""
        return self.state / "supply.pid"

    def overlay_options(self) -> str:
        return f"lowerdir={self.image.root},upperdir={self.state / 'upper'},workdir={self.state / 'work'}"

    def nspawn_argv(self) -> list[str]:
        return [NSPAWN, "--quiet", "-D", str(self.merged), f"--machine={self.name}", f"--hostname={self.name}",
                "--register=no", "--keep-unit", "--boot", f"--network-namespace-path=/run/netns/{self.netns}",
                f"--capability={','.join(CAPABILITIES)}", "--console=read-only"]

    # -- lifecycle ---------------------------------------------------------------------------------------
    def mounted(self) -> bool:
        return os.path.ismount(self.merged)

    def mount(self) -> None:
        if self.mounted():
            return
        for part in ("upper", "work", "root"):
            (self.state / part).mkdir(parents=True, exist_ok=True)
        done = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", self.overlay_options(), str(self.merged)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise MachineError(f"{self.name}: its root could not be mounted: {done.stderr.strip()[:300]}")
        hostname = self.merged / "etc" / "hostname"
        if not hostname.exists():  # its own from the first boot on, as an installer would write it
            hostname.write_text(self.name + "\n")

    def authorize(self, public_key: str) -> None:
        """`public_key` may log in as root (written into its disk; the machine need not be running)."""
        ssh_dir = self.merged / "root" / ".ssh"
        ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        keys = ssh_dir / "authorized_keys"
        keys.write_text(public_key.strip() + "\n" if public_key.strip() else "")
        keys.chmod(0o600)

    def use_apt_proxy(self, url: str) -> None:
        """apt fetches through `url` (the lab's package proxy; none: removed), and checks release files' dates as
        this host's own apt does (a mirror that is a dated snapshot would otherwise be refused as expired)."""
        conf = self.merged / "etc" / "apt" / "apt.conf.d" / "01tradestack-proxy"
        if not url:
            conf.unlink(missing_ok=True)
            return
        lines = [f'Acquire::http::Proxy "{url}";']
        for option in ("Acquire::Check-Valid-Until", "Acquire::Check-Date"):
            value = _apt_config(option)
            if value:
                lines.append(f'{option} "{value}";')
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text("\n".join(lines) + "\n")

    def ssh_host_key(self, timeout: float = 30.0) -> list[str]:
        """[type, key] of its sshd's ed25519 host key, once sshd runs with it (made at its first boot)."""
        public = self.merged / "etc" / "ssh" / "ssh_host_ed25519_key.pub"
        if not wait_for(lambda: public.exists() and self.run(["systemctl", "is-active", "ssh.service"],
                                                              timeout=10).stdout.strip() == "active", timeout, 0.3):
            raise MachineError(f"{self.name}: sshd is not active {timeout:g} s after boot; see "
                               f"{self.state / 'console.log'}")
        kind, key = public.read_text().split()[:2]
        return [kind, key]

    def init_pid(self) -> int | None:
        """The machine's PID 1 as this kernel numbers it (nspawn's child), or None when it is not running."""
        nspawn = self._nspawn_pid()
        if nspawn is None:
            return None
        children = _children(nspawn)
        return int(children[0]) if children else None

    def running(self) -> bool:
        return self.init_pid() is not None

    def boot(self, timeout: float = 60.0) -> None:
        """Mount its root and boot it; return once systemd says the machine is up (running or degraded)."""
        if self.running():
            return
        if shutil.which(NSPAWN) is None:
            raise EnvironmentProblem("systemd-nspawn is not installed: run `make setup` (package systemd-container)")
        problem = inotify_problem()
        if problem:
            raise EnvironmentProblem(f"{self.name} cannot boot: {problem}")
        self.mount()
        log = open(self.state / "console.log", "ab")
        written = log.tell()  # what this boot writes starts here
        try:
            proc = subprocess.Popen(["sh", "-c", POWER_SUPPLY, "power-supply", *self.nspawn_argv()],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                    env={**os.environ, **NSPAWN_ENV})
        finally:
            log.close()
        self.pidfile.write_text(f"{proc.pid}\n")
        if not wait_for(lambda: self.state_of() in ("running", "degraded"), timeout, 0.5):
            state = self.state_of()
            self.power_off()  # nothing half-booted stays behind: off and unmounted, its disk kept
            self.unmount()
            raise MachineError(f"{self.name} did not boot within {timeout:g} s (systemd says {state!r})"
                               f"{_hint(self, written)}; see {self.state / 'console.log'}")

    def state_of(self) -> str | None:
        """`systemctl is-system-running` inside the machine (starting, running, degraded ...), None when off."""
        pid = self.init_pid()
        if pid is None:
            return None
        done = self.run(["systemctl", "is-system-running"], timeout=10)
        return done.stdout.strip() or None

    def run(self, argv: list[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """A command inside the running machine (its namespaces, its root)."""
        pid = self.init_pid()
        if pid is None:
            raise MachineError(f"{self.name} is not running")
        return subprocess.run(["nsenter", "-t", str(pid), "-a", *argv], capture_output=True, text=True,
                              timeout=timeout)

    def power_off(self) -> None:
        """Every process of the machine ends at once (SIGKILL to its init): no shutdown, no sync of its own, and
        its power supply gone first, so it does not boot again."""
        supply, nspawn, init = self._supply_pid(), self._nspawn_pid(), self.init_pid()
        for pid in (supply, init):
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if nspawn is not None and not wait_for(lambda: not alive(nspawn), 10, 0.2):
            os.kill(nspawn, signal.SIGKILL)
        self.pidfile.unlink(missing_ok=True)

    def unmount(self) -> None:
        if self.mounted():
            done = subprocess.run(["umount", str(self.merged)], capture_output=True, text=True)
            if done.returncode != 0:
                raise MachineError(f"{self.name}: its root could not be unmounted: {done.stderr.strip()[:300]}")

    def remove(self) -> None:
        """Off, unmounted, its layers gone: nothing of the machine is left."""
        self.power_off()
        self.unmount()
        shutil.rmtree(self.state, ignore_errors=True)

    def _supply_pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if alive(pid) and POWER_SUPPLY in _arguments(pid) else None

    def _nspawn_pid(self) -> int | None:
        """The nspawn its power supply runs now (none between a reboot's exit and the next start)."""
        supply = self._supply_pid()
        if supply is None:
            return None
        children = [int(p) for p in _children(supply)]
        return next((p for p in children if _command(p).startswith(NSPAWN)), None)


def inotify_instances(uid: int = 0, proc: Path = Path("/proc")) -> int:
    """Inotify instances the processes of `uid` hold now (what the kernel counts against its limit)."""
    held = 0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            if int(status.split("\nUid:", 1)[1].split()[0]) != uid:
                continue
            fds = entry / "fd"
            held += sum(1 for fd in fds.iterdir() if os.readlink(fd) == "anon_inode:inotify")
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile, or not ours to read
    return held


def inotify_problem(limit_file: Path = INOTIFY_LIMIT, held: Callable[[], int] = inotify_instances) -> str:
    """Why one more machine cannot boot under root's inotify limit ("" when it can)."""
    try:
        limit = int(limit_file.read_text())
    except (OSError, ValueError):
        return ""  # not this kernel's to tell: the boot itself will say
    now = held()
    if limit - now >= INOTIFY_PER_MACHINE:
        return ""
    return (f"root holds {now} of its {limit} inotify instances (fs.inotify.max_user_instances) and a machine needs "
            f"about {INOTIFY_PER_MACHINE}: run `make setup` as root (it raises the limit to {INOTIFY_WANTED}) or "
            f"`sysctl -w fs.inotify.max_user_instances={INOTIFY_WANTED}`")


def _hint(machine: Machine, since: int = 0) -> str:
    """What the console (from byte `since`: this boot's part) says a machine died of, when it is a limit of this
    host's."""
    try:
        with open(machine.state / "console.log", "rb") as log:
            log.seek(since)
            console = log.read().decode(errors="replace")
    except OSError:
        return ""
    if "Too many open files" in console:
        return (f": its init ran out of inotify instances (fs.inotify.max_user_instances); run `make setup` as "
                f"root (it raises the limit to {INOTIFY_WANTED})")
    return ""


def _apt_config(option: str) -> str:
    """This host's apt setting `option` ("" when unset or apt is not here)."""
    try:
        done = subprocess.run(["apt-config", "dump", option], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    for line in done.stdout.splitlines():
        if line.startswith(f"{option} "):
            return line.split(" ", 1)[1].strip().rstrip(";").strip('"')
    return ""


def mounts_under(directory: Path, mountinfo: Path = Path("/proc/self/mountinfo")) -> list[str]:
    """Mount points at or under `directory` (a machine's root is one while it exists)."""
    prefix = str(directory.resolve()).rstrip("/") + "/"
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return []
    points = [line.split()[4].replace("\\040", " ") for line in lines if len(line.split()) > 4]
    return sorted(p for p in points if (p + "/").startswith(prefix))


def _children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


def _arguments(pid: int) -> list[str]:
    try:
        return [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
    except (OSError, UnicodeDecodeError):
        return []


def _command(pid: int) -> str:
    return (_arguments(pid) or [""])[0].rsplit("/", 1)[-1]
