"""Benchmark: how long a deploy takes, and a fresh lab to its first drill report. Prints figures; asserts nothing.

On a lab of its own (run-unique stack, service user and state roots, all removed afterwards), it times:
`stack up` + `deploy` from nothing, a second `deploy` with nothing to change (and how many tasks changed),
and the first drill report (`site-power-loss`, the drill `make demo` runs). Together: what `make demo`
takes up to its drill report once `make setup` is done. Needs root.

Run: sudo .venv/bin/python tests/bench/bench_deploy.py [--drill site-power-loss]
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from tradestack.deploy import run as deploy_run
from tradestack.drills import engine, files

from benchstack import fresh_stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drill", default="site-power-loss")
    args = parser.parse_args()
    with fresh_stack("bp") as stack:
        t0 = time.perf_counter()
        stack.up()
        up = time.perf_counter() - t0
        first = deploy_run.apply(deploy_run.plan(stack.name))
        from_nothing = time.perf_counter() - t0
        if not first.ok:
            raise SystemExit(f"deploy failed: {[vars(f) for f in first.failures]}")
        t1 = time.perf_counter()
        again = deploy_run.apply(deploy_run.plan(stack.name))
        unchanged = time.perf_counter() - t1
        t2 = time.perf_counter()
        result = engine.run(engine.plan(files.resolve(args.drill), stack.name))
        drill = time.perf_counter() - t2
        hosts = len(first.hosts)
    print(f"{dt.date.today()}: lab topology, {hosts} hosts")
    print(f"deploy from nothing (stack up {up:.0f} s + deploy): {from_nothing:.0f} s")
    print(f"deploy with nothing to change: {unchanged:.0f} s, {again.changed} task(s) changed "
          f"({'ok' if again.ok else 'FAILED'})")
    print(f"{args.drill} drill to its report: {drill:.0f} s (verdict {result.verdict})")
    print(f"fresh lab to first drill report (make demo after make setup, up to the drill): "
          f"{from_nothing + drill:.0f} s")


if __name__ == "__main__":
    main()
