"""Benchmark: a newcomer's `make demo` on a fresh machine, to its first drill report and to its end.

A fresh machine is approximated on this one: a fresh clone of HEAD in a temporary directory, empty build caches
(tradestack's, Go's module and build caches, pip's), a state directory of its own, a run-unique stack name, and,
with --remove-debian-programs, the lab's Debian programs removed first (`make demo` installs them again; without
the flag they are kept, and the figure says so). Go itself and the package registries are what a fresh machine
here has. Prints the time to the drill's report line and to the end of the demo, with each step's time; removes
the stack and the temporary directories afterwards. Needs root; about 10 minutes.

Run: sudo .venv/bin/python tests/bench/bench_demo.py [--remove-debian-programs]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# what `make setup-lab` installs and a fresh machine lacks (python3-venv, curl and the SSH client are kept: the
# bench itself and apt need no more, and a Debian machine with Python has python3-venv or gets it first)
LAB_PROGRAMS = ("bird2", "etcd-server", "etcd-client", "patroni", "python3-etcd", "haproxy", "keepalived",
                "supervisor", "postgresql", "nftables", "openssh-server")
STEP = re.compile(r"^\S*/tradestack (\w+(?: \w+)?)")


def _removed() -> list[str]:
    present = [p for p in LAB_PROGRAMS if subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True,
                                                          text=True).stdout.endswith("installed")]
    if present:
        subprocess.run(["apt-get", "remove", "-y", "-qq", *present], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return present


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--remove-debian-programs", action="store_true")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench_demo needs root (the lab does)")
    work = Path(tempfile.mkdtemp(prefix="ts-demo-"))
    stack = f"dm{uuid.uuid4().hex[:6]}"
    clone = work / "tradestack"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    env = {**os.environ, "XDG_CACHE_HOME": str(work / "cache"), "GOMODCACHE": str(work / "go" / "mod"),
           "GOCACHE": str(work / "go" / "build"), "GOPATH": str(work / "go"), "PIP_CACHE_DIR": str(work / "pip"),
           "TRADESTACK_HOME": str(work / "home"), "STACK": stack}
    removed = _removed() if args.remove_debian_programs else []
    print(f"{dt.date.today()}: make demo from a fresh clone, empty caches, stack {stack}; Debian programs "
          + (f"removed first: {', '.join(removed)}" if removed else "kept (not a fresh machine's)"), flush=True)
    t0 = time.monotonic()
    first_report: float | None = None
    steps: list[tuple[str, float]] = []
    proc = subprocess.Popen(["make", "demo"], cwd=clone, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        now = time.monotonic() - t0
        m = STEP.match(line)
        if m:
            steps.append((m.group(1), now))
        if first_report is None and steps and steps[-1][0] == "drill run" and line.lstrip().startswith("report:"):
            first_report = now
    rc = proc.wait()
    total = time.monotonic() - t0
    print(f"  make demo exited {rc} after {total / 60:.1f} min; first drill report at "
          + (f"{first_report / 60:.1f} min" if first_report is not None else "never (no report line)"))
    starts = [("set-up (make setup-lab)", 0.0)] + steps
    for (name, at), (_, nxt) in zip(starts, [*steps, ("end", total)]):
        print(f"    {name}: {nxt - at:.0f} s")
    subprocess.run([str(clone / ".venv" / "bin" / "tradestack"), "stack", "destroy", "--stack", stack, "--json"],
                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
