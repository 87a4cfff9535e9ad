"""An unprivileged operator made for one test run: a user of its own (removed after, with whatever it left), a
home with a checkout of this source tree, and this run's build caches (keyed by version) linked into its own.
docs/adopting-an-estate.md is followed as this user: step 1 by test_adopting_an_estate.py, steps 2 to 6 by
test_hosts_substrate.py."""

from __future__ import annotations

import fcntl
import hashlib
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
HOW_TO = ROOT / "docs" / "adopting-an-estate.md"


@dataclass
class Operator:
    user: str
    home: Path
    checkout: Path
    python: Path
    env: dict[str, str]

    def _ids(self) -> dict[str, Any]:
        return {"user": self.user, "group": self.user, "extra_groups": [], "env": self.env, "cwd": self.checkout}

    def run(self, argv: list[str], *, input: str | None = None,
            timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, capture_output=True, text=True, input=input, timeout=timeout, **self._ids())

    def cli(self, *args: str, input: str | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return self.run([str(self.python), "-m", "tradestack", *args], input=input, timeout=timeout)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([str(self.python), "-m", "tradestack", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, **self._ids())


def link_tree(source: Path, target: Path) -> None:
    """A build cache shared by hard links (same filesystem), else copied."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["cp", "-al", str(source), str(target)], capture_output=True).returncode != 0:
        shutil.copytree(source, target, dirs_exist_ok=True)


# Where an operator's tools live when the test does not follow the how-to's step 1 (test_adopting_an_estate.py
# does): a virtual environment of Debian's python3 with the project and its dependencies, readable by any user
# (this run's own environment is not: its python lives under root's home). A build cache keyed by the dependency
# set, built once on a machine (about a minute, from the package registry) and reused.
TOOLS_CACHE = Path("/var/cache/tradestack-it/tools")
TOOLS_KEEP = 2


def shared_tools() -> Path:
    """The shared tools' virtual environment for this source's dependency set (built first if missing)."""
    key = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    venv = TOOLS_CACHE / key
    TOOLS_CACHE.mkdir(parents=True, exist_ok=True)
    TOOLS_CACHE.parent.chmod(0o755)
    with open(TOOLS_CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # built in place (a virtual environment cannot move): one builder
        if not (venv / ".complete").exists():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True, capture_output=True)
            done = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check",
                                   str(ROOT)], capture_output=True, text=True, timeout=1200)
            assert done.returncode == 0, done.stderr[-3000:]
            subprocess.run(["chmod", "-R", "a+rX", str(venv)], check=True)
            (venv / ".complete").touch()
        os.utime(venv / ".complete")
        built = sorted((d for d in TOOLS_CACHE.iterdir() if (d / ".complete").exists()),
                       key=lambda d: (d / ".complete").stat().st_mtime, reverse=True)
        for old in built[TOOLS_KEEP:]:
            shutil.rmtree(old, ignore_errors=True)
    return venv


def install_step() -> tuple[list[str], str]:
    """The how-to's step 1: its commands (`$ ` lines) and the last line it shows they print."""
    section = HOW_TO.read_text().split("\n## 1. ", 1)[1].split("\n## ", 1)[0]
    block = section.split("```console\n", 1)[1].split("```", 1)[0].splitlines()
    commands = [line[2:] for line in block if line.startswith("$ ")]
    shown = [line for line in block if line and not line.startswith("$ ")]
    assert len(commands) >= 4 and shown, block
    return commands, shown[-1]


@contextmanager
def operator_account(checkout_at: str, owned: bool) -> Iterator[tuple[str, Path, Path]]:
    """(user, home, checkout): a new user, its home, and a copy of this source tree at `checkout_at` inside it
    (the user's own when `owned`, else root's and readable), with this run's wheelhouse and Pulumi build in the
    user's cache. Everything goes afterwards: the user and its processes, its files, its SSH control sockets."""
    from tradestack.builds import wheelhouse
    from tradestack.paths import cache_dir

    run = secrets.token_hex(3)
    user = f"tsop{run}"
    base = Path(tempfile.mkdtemp(prefix=f"tradestack-operator-{run}-"))
    base.chmod(0o755)
    home = base / "home"
    checkout = home / checkout_at
    subprocess.run(["useradd", "--user-group", "--no-create-home", "--home-dir", str(home), "--shell", "/bin/sh",
                    user], check=True, capture_output=True)
    try:
        for part in ("cli", "playbooks", "infra"):
            shutil.copytree(ROOT / part, checkout / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for part in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / part, checkout / part)
        cache = home / ".cache"
        wheels = wheelhouse.build(ROOT)  # what the lab's deploy built: the same source, so the same key
        link_tree(wheels.directory, cache / "tradestack" / "wheelhouse" / wheels.directory.name)
        link_tree(cache_dir() / "pulumi", cache / "tradestack" / "pulumi")
        # the user owns its home and the cache's directories; the cached files stay the shared cache's (hard
        # links: chown -R would hand root's own build cache to a user removed after the run)
        skip = [str(cache)] + ([] if owned else [str(checkout)])
        prune = [arg for path in skip for arg in ("-path", path, "-prune", "-o")]
        subprocess.run(["find", str(home), *prune, "-exec", "chown", f"{user}:{user}", "{}", "+"], check=True)
        subprocess.run(["find", str(cache), "-type", "d", "-exec", "chown", f"{user}:{user}", "{}", "+"], check=True)
        if not owned:
            subprocess.run(["chmod", "-R", "a+rX", str(checkout)], check=True)
        home.chmod(0o700)
        yield user, home, checkout
    finally:
        uid = subprocess.run(["id", "-u", user], capture_output=True, text=True).stdout.strip()
        # its SSH masters linger (ControlPersist) and userdel refuses a user with processes left
        for _ in range(20):
            if subprocess.run(["pkill", "-KILL", "-u", user], capture_output=True).returncode != 0:
                break
            time.sleep(0.25)
        subprocess.run(["userdel", user], capture_output=True)
        subprocess.run(["groupdel", user], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
        if uid.isdigit():
            shutil.rmtree(Path(tempfile.gettempdir()) / f"tradestack-ssh-{uid}", ignore_errors=True)
        # the audit runs pytest as the operator, which keeps its temporary directories under /tmp by user name
        shutil.rmtree(Path(tempfile.gettempdir()) / f"pytest-of-{user}", ignore_errors=True)
