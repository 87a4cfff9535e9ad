"""OpenSSH wrapped once: a command on a host (argv, quoted for the remote shell), a process started there that
can be stopped with SIGTERM, a file fetched back. Host keys are pinned (a known_hosts file, strict checking),
authentication is by key only, and a vanished host is given up in seconds, not after TCP's timeouts.

Secrets never go on a command line (the remote `ps` would show them): `run(..., secret_env=...)` hands them
over on standard input and the remote shell exports them before it runs the command.
"""

from __future__ import annotations

import shlex
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .commands import CommandResult, StreamedPopen, run as run_here

# reads NAME=VALUE lines from stdin until an empty line, exports them, then runs the command ("$@")
_SECRET_PRELUDE = 'while IFS= read -r kv && [ -n "$kv" ]; do export "$kv"; done; exec "$@"'
# prints its own pid (the command's, after exec) so the process can be signalled later
_PID_PRELUDE = 'echo "$$"; exec "$@"'
# A master connection's socket is CONTROL_DIR/%C (40 hex digits), created under a name 17 characters longer; a
# unix socket's path holds at most 107 bytes
MAX_CONTROL_DIR = 107 - 1 - 40 - 17


@dataclass(frozen=True)
class SshTarget:
    """Where to log in: the host's management address, the user, the port."""

    address: str
    user: str
    port: int = 22

    def __str__(self) -> str:
        return f"{self.user}@{self.address}"


@dataclass(frozen=True)
class SshOptions:
    """How to log in: the private key, the pinned host keys, where to keep shared connections (a directory whose
    path is too long for the socket in it means one connection per command: slower, never broken)."""

    private_key: Path
    known_hosts: Path
    control_dir: Path | None = None      # multiplexed connections (ControlMaster), one per host
    connect_timeout_s: int = 10

    def argv(self, target: SshTarget) -> list[str]:
        """`ssh` and its options for `target`, up to (not including) the remote command."""
        argv = ["ssh", "-i", str(self.private_key), "-p", str(target.port),
                "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", "PasswordAuthentication=no", "-o", f"ConnectTimeout={self.connect_timeout_s}",
                "-o", "ServerAliveInterval=2", "-o", "ServerAliveCountMax=3", "-o", "LogLevel=ERROR"]
        if self.control_dir is not None and len(str(self.control_dir)) <= MAX_CONTROL_DIR:
            argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={self.control_dir}/%C",
                     "-o", "ControlPersist=60s"]
        return [*argv, str(target), "--"]


def close_masters(control_dir: Path) -> int:
    """Ask every master connection whose socket is in `control_dir` to exit (the commands that used it are done,
    so it would otherwise linger for its ControlPersist); returns how many were asked."""
    sockets = [p for p in control_dir.iterdir() if p.is_socket()] if control_dir.is_dir() else []
    for socket in sockets:
        run_here(["ssh", "-o", f"ControlPath={socket}", "-O", "exit", "master"], timeout=10)
    return len(sockets)


def remote_command(argv: Sequence[str], prelude: str | None = None) -> str:
    """The one string the remote shell runs: every argument quoted; a prelude runs first with argv as "$@"."""
    if prelude is None:
        return shlex.join(argv)
    return shlex.join(["sh", "-c", prelude, "sh", *argv])


def run(options: SshOptions, target: SshTarget, argv: Sequence[str], *, input: str | None = None,
        timeout: float = 30.0, secret_env: Mapping[str, str] | None = None) -> CommandResult:
    """Run `argv` on `target` and wait. rc 255 is ssh's own failure (unreachable, host key changed, refused)."""
    if secret_env:
        stdin = "".join(f"{k}={v}\n" for k, v in secret_env.items()) + "\n" + (input or "")
        remote = remote_command(argv, _SECRET_PRELUDE)
    else:
        stdin, remote = input, remote_command(argv)
    done = run_here([*options.argv(target), remote], input=stdin, timeout=timeout)
    return CommandResult(tuple(argv), done.rc, done.stdout, done.stderr, done.duration_s)


class RemoteProcess(StreamedPopen):
    """A process started over SSH. Stopping it sends SIGTERM to the remote process itself (closing the local
    `ssh` would leave it running there), then waits for its output."""

    def __init__(self, options: SshOptions, target: SshTarget, argv: Sequence[str]):
        self.options, self.target = options, target
        popen = subprocess.Popen([*options.argv(target), remote_command(argv, _PID_PRELUDE)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                 text=True, start_new_session=True)
        assert popen.stdout is not None
        first = popen.stdout.readline().strip()  # the prelude's line, before the streams are read for the caller
        self.pid: int | None = int(first) if first.isdigit() else None
        super().__init__(popen)

    def terminate(self) -> None:
        """SIGTERM to the remote process (it ends cleanly); the local ssh follows when it exits."""
        if self.popen.poll() is None and self.pid is not None:
            run(self.options, self.target, ["kill", "-TERM", str(self.pid)], timeout=15)


def fetch(options: SshOptions, target: SshTarget, remote: Path, local: Path, timeout: float = 120.0) -> Path:
    """Copy `remote` on `target` to `local` (bytes as they are, through `cat`); returns `local`.
    Raises FileNotFoundError when the remote file is not there, OSError when ssh fails."""
    local.parent.mkdir(parents=True, exist_ok=True)
    partial = local.with_name(local.name + ".part")
    started = time.monotonic()
    with open(partial, "wb") as sink:
        done = subprocess.run([*options.argv(target), remote_command(["cat", "--", str(remote)])], stdout=sink,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=timeout, check=False)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        why = done.stderr.decode(errors="replace").strip()[-300:]
        if "No such file" in why:
            raise FileNotFoundError(f"{target}:{remote}: {why}")
        raise OSError(f"fetching {target}:{remote} failed (rc {done.returncode}) after "
                      f"{time.monotonic() - started:.1f} s: {why}")
    partial.replace(local)
    return local


def put(options: SshOptions, target: SshTarget, local: Path, remote: Path, prefix: Sequence[str] = (),
        timeout: float = 120.0) -> None:
    """Copy `local` to `remote` on `target`, bytes as they are (through `cat` on standard input); `prefix` runs
    the remote side with privileges (e.g. `sudo -n`). Raises OSError when it fails."""
    with open(local, "rb") as source:
        done = subprocess.run([*options.argv(target), remote_command([*prefix, "sh", "-c", 'cat > "$1"', "sh",
                                                                      str(remote)])],
                              stdin=source, capture_output=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise OSError(f"copying {local} to {target}:{remote} failed (rc {done.returncode}): "
                      f"{done.stderr.decode(errors='replace').strip()[-300:]}")
