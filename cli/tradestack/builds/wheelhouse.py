"""What a host installs, built once per source tree and cached outside the clone: the project's wheel, the
packages its trading services and `tradestack refstack` commands need there (not the operator's tools: Pulumi,
Ansible, the Kubernetes client, matplotlib, pytest stay on the operator's machine), and Patroni."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ..errors import TradestackError
from ..paths import cache_dir


# Host software installed from the wheelhouse rather than the distribution. Debian 12's Patroni 3.0.2 let a demoted
# leader take the leader key back after a healed partition and promote a second, diverged timeline (patroni/patroni
# #2689, fixed in 3.0.3): seen here when capacity verify cut one site and then the other, the new timeline began
# behind what the other node had already acknowledged. 3.1 has the fix and still takes a 10 s ttl; from 3.2 on
# Patroni raises any ttl below 20 s to 20, which doubles the time without a leader (22 s here, against 12 s).
# 3.1 has no psycopg3 extra: the driver is named on its own (psycopg 3, as the trading services use).
PATRONI = ("patroni[etcd3]==3.1.2", "psycopg[binary]>=3.2,<4")


# What the trading services import (the site clusters' image holds these and nothing else: builds/pyimage.py)
SERVICES = ("fastapi", "uvicorn", "uvloop", "httptools", "psycopg[binary]", "psycopg-pool", "httpx", "aiohttp",
            "prometheus-client", "pydantic", "PyYAML")
# What a host installs beside the project's wheel: the services, and what `tradestack refstack` (serve, migrate,
# load, reconcile) needs to start. Each at the version range the project declares (its wheel's Requires-Dist). The
# whole dependency set would put Ansible, Pulumi and pytest on every trading host: 46 s of a lab deploy's 100 s
# went to installing it, 1 GB on each host.
HOST_PACKAGES = (*SERVICES, "typer", "rich", "numpy")
HOST_REQUIREMENTS = "host-requirements.txt"

# Wheelhouses kept: every source change builds one (~40 MB with what hosts need), so a checkout that changes often
# would fill the disk; the ones used last stay, for checkouts of other versions deploying side by side.
KEEP = 4


class WheelhouseError(TradestackError):
    """The wheelhouse could not be built."""


@dataclass(frozen=True)
class Wheelhouse:
    directory: Path
    wheel: str      # file name of the project's own wheel
    sha256: str


def source_digest(root: Path) -> str:
    digest = hashlib.sha256()
    files = [root / "pyproject.toml", *sorted((root / "cli").rglob("*.py"))]
    digest.update(" ".join(PATRONI).encode())
    for path in files:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build(root: Path) -> Wheelhouse:
    """Build (or reuse) the wheelhouse for the source tree at `root`."""
    target = cache_dir() / "wheelhouse" / source_digest(root)
    done = target / ".complete"
    if not done.exists():
        _build_once(root, target)
    else:
        try:  # last used now: pruning keeps the wheelhouses used most recently
            os.utime(done)
        except OSError:  # a shared cache's file this user may read but not touch: it is then not refreshed
            pass
    prune(target.parent, keep=KEEP)
    wheels = sorted(target.glob("tradestack-*.whl"))
    if len(wheels) != 1:
        raise WheelhouseError(f"expected one tradestack wheel in {target}, found {len(wheels)}")
    return Wheelhouse(target, wheels[0].name, hashlib.sha256(wheels[0].read_bytes()).hexdigest())


def _build_once(root: Path, target: Path) -> None:
    """Build into a directory of this process's own, then rename it into place: two deploys building the same
    source at once (two test workers, two operators) must not both write into `target`, where the second's wheel
    (builds are not byte-reproducible) replaced the first's after the first had installed it, and a later deploy
    saw a different wheel and reinstalled it everywhere. Whoever renames first wins; the other's build is dropped."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--wheel-dir",
               str(staging)]
        result = subprocess.run([*pip, "--no-deps", str(root)], capture_output=True, text=True, timeout=1800)
        if result.returncode == 0:
            wanted = host_requirements(next(staging.glob("tradestack-*.whl")))
            (staging / HOST_REQUIREMENTS).write_text("".join(f"{r}\n" for r in wanted))
            result = subprocess.run([*pip, *wanted, *PATRONI], capture_output=True, text=True, timeout=1800)
        if result.returncode != 0:
            raise WheelhouseError("building the wheelhouse failed: " + result.stderr.strip()[-800:])
        (staging / ".complete").touch()
        if target.exists() and not (target / ".complete").exists():
            shutil.rmtree(target, ignore_errors=True)  # left half-built by a run that died (the old way)
        try:
            staging.rename(target)
        except OSError:
            if not (target / ".complete").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def host_requirements(wheel: Path) -> list[str]:
    """HOST_PACKAGES as the project's wheel declares them (name, extras and version range), in that order.
    Raises WheelhouseError when the project no longer declares one of them."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        declared = [Requirement(r) for r in Parser().parsestr(archive.read(metadata).decode()).get_all(
            "Requires-Dist", [])]
    by_name = {canonicalize_name(r.name): r for r in declared if r.marker is None}
    missing = [p for p in HOST_PACKAGES if canonicalize_name(Requirement(p).name) not in by_name]
    if missing:
        raise WheelhouseError(f"the project does not declare {', '.join(missing)}, which hosts need "
                              "(builds/wheelhouse.py HOST_PACKAGES)")
    return [str(by_name[canonicalize_name(Requirement(p).name)]) for p in HOST_PACKAGES]


def prune(parent: Path, *, keep: int) -> list[Path]:
    """Remove all but the `keep` wheelhouses used most recently (and any left half-built over a day ago)."""
    complete = sorted((d for d in parent.iterdir() if (d / ".complete").exists() and not d.name.startswith(".")),
                      key=lambda d: (d / ".complete").stat().st_mtime, reverse=True)
    stale = complete[keep:]
    day_ago = time.time() - 86_400
    stale += [d for d in parent.iterdir() if d.is_dir() and not (d / ".complete").exists()
              and d.stat().st_mtime < day_ago]
    for directory in stale:
        shutil.rmtree(directory, ignore_errors=True)
    return stale
