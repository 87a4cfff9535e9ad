"""Benchmark: wall time of `stack up` and `stack destroy` for the lab and a larger topology (root).

Run: sudo .venv/bin/python tests/bench/bench_lab.py
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from tradestack.lab.stack import LabStack

TOPOLOGIES = Path(__file__).resolve().parents[2] / "infra" / "topologies"


def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        os.environ["TRADESTACK_HOME"] = home
        for name, topo in (("benchlab", "lab.yaml"), ("benchreg", "regional.yaml")):
            stack = LabStack(name, TOPOLOGIES / topo)
            t0 = time.perf_counter()
            result, _ = stack.up()
            up = time.perf_counter() - t0
            t0 = time.perf_counter()
            stack.destroy()
            down = time.perf_counter() - t0
            print(f"{topo}: {result.changes.get('create', 0)} resources; up {up:.1f}s, destroy {down:.1f}s")


if __name__ == "__main__":
    main()
