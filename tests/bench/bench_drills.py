"""Benchmark: recovery times of `db-primary-crash` and `carrier-outage`, repeated on one deployed lab.

Brings up its own lab stack (`benchdr`), deploys it, runs each drill REPEAT times and prints the
median and worst recovery time, detection time and time without a database leader; the last run
of each drill's report (JSON, HTML, timeline plot) is kept in tests/bench/results/DRILL/ (the README
shows it). Needs root.

Run: sudo .venv/bin/python tests/bench/bench_drills.py [REPEAT]   (default 3; about 2 min a run)
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

from tradestack.deploy import run as deploy_run
from tradestack.drills import engine, files, report
from tradestack.lab.stack import LabStack

TOPOLOGIES = Path(__file__).resolve().parents[2] / "infra" / "topologies"
RESULTS = Path(__file__).resolve().parent / "results"


def _figure(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "n/a"
    missing = f", {len(values) - len(known)} never" if len(known) < len(values) else ""
    return f"median {statistics.median(known):.2f} s, worst {max(known):.2f} s{missing}"


def main() -> None:
    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    with tempfile.TemporaryDirectory() as home:
        os.environ["TRADESTACK_HOME"] = home
        stack = LabStack("benchdr", TOPOLOGIES / "lab.yaml")
        stack.up()
        try:
            deployed = deploy_run.apply(deploy_run.plan(stack.name))
            if not deployed.ok:
                raise SystemExit(f"deploy failed: {[vars(f) for f in deployed.failures]}")
            for name in ("db-primary-crash", "carrier-outage"):
                results = [engine.run(engine.plan(files.resolve(name), stack.name)) for _ in range(repeat)]
                figs = [r.figures for r in results]
                kept = report.write(results[-1].to_dict(), RESULTS / name)
                print(f"  last report: {kept['html']}")
                print(f"{name} x{repeat}: verdicts {[r.verdict for r in results]}")
                print(f"  recovery (fault to sustained service): {_figure([f.recovery_s if f else None for f in figs])}")
                print(f"  detection: {_figure([f.detection_s if f else None for f in figs])}")
                print(f"  without a database leader: {_figure([f.no_leader_s if f else None for f in figs])}")
        finally:
            stack.destroy()


if __name__ == "__main__":
    main()
