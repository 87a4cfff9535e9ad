"""A throw-away PostgreSQL on loopback: initdb into a directory, pg_ctl start/stop, nothing else touched.

Used by `tradestack refstack run` and by the tests. PostgreSQL refuses to run as root, so as
root the server runs as the `postgres` user that Debian's package creates.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import EnvironmentProblem, TradestackError


class PostgresError(TradestackError):
    """The local PostgreSQL could not be created, started or stopped."""


def find_bindir() -> Path:
    """Directory holding initdb/pg_ctl: $TRADESTACK_PG_BINDIR, Debian's newest, or PATH."""
    env = os.environ.get("TRADESTACK_PG_BINDIR")
    candidates = [Path(env)] if env else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)
                         if p.parent.name.isdigit() else 0, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    for path in candidates:
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            return path
    raise EnvironmentProblem("PostgreSQL server programs (initdb, pg_ctl) not found: install Debian's "
                             "postgresql package (make setup does) or set TRADESTACK_PG_BINDIR")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalPostgres:
    directory: Path
    port: int
    host: str = "127.0.0.1"
    user: str = "tradestack"
    database: str = "tradestack"

    @property
    def dsn(self) -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={self.database}"

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @classmethod
    def temporary(cls, prefix: str = "tradestack-pg-") -> "LocalPostgres":
        """A fresh directory in the system temp dir (reachable by the `postgres` user when we are root)."""
        return cls(Path(tempfile.mkdtemp(prefix=prefix)), free_port())

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def _runas(self) -> tuple[str | None, int | None, int | None]:
        if os.geteuid() != 0:
            return None, None, None
        try:
            entry = pwd.getpwnam("postgres")
        except KeyError:
            raise EnvironmentProblem("running as root, PostgreSQL needs the 'postgres' user "
                                     "(created by Debian's postgresql package)") from None
        return entry.pw_name, entry.pw_uid, entry.pw_gid

    def _run(self, *argv: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        user, _, _ = self._runas()
        result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, user=user,
                                cwd=self.directory, timeout=120)
        if check and result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
            raise PostgresError(f"{Path(str(argv[0])).name} failed: " + " / ".join(tail))
        return result

    def init(self) -> None:
        """Create the cluster and the database (trust on loopback only; the directory is private)."""
        bindir = find_bindir()
        self.directory.mkdir(parents=True, exist_ok=True)
        _, uid, gid = self._runas()
        if uid is not None:
            os.chown(self.directory, uid, gid or -1)
        os.chmod(self.directory, 0o700)
        if (self.data / "PG_VERSION").exists():
            return
        self._run(bindir / "initdb", "-D", self.data, "-U", self.user, "--auth=trust", "-E", "UTF8",
                  "--no-instructions", "--locale=C.UTF-8")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"\n# tradestack local run\nlisten_addresses = '{self.host}'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.directory}'\nmax_connections = 200\n"
                       "shared_buffers = 64MB\nlogging_collector = off\n")
        with (self.data / "pg_hba.conf").open("w") as hba:
            hba.write(f"local all all trust\nhost all all {self.host}/32 trust\n")

    def start(self, timeout: int = 30) -> None:
        bindir = find_bindir()
        self._run(bindir / "pg_ctl", "-D", self.data, "-l", self.directory / "postgres.log", "-w",
                  "-t", str(timeout), "-o", f"-p {self.port}", "start")
        probe = self._run(bindir / "psql", "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", "postgres",
                          "-Atc", f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'")
        if probe.stdout.strip() != "1":
            self._run(bindir / "createdb", "-h", self.host, "-p", str(self.port), "-U", self.user, self.database)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; mode `immediate` is a crash (recovery from WAL on the next start)."""
        if (self.data / "postmaster.pid").exists():
            self._run(find_bindir() / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop", check=False)

    def running(self) -> bool:
        return self._run(find_bindir() / "pg_ctl", "-D", self.data, "status", check=False).returncode == 0

    def log_tail(self, lines: int = 20) -> str:
        path = self.directory / "postgres.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
