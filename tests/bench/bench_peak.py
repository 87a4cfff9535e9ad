"""Benchmark: `tradestack capacity peak` over 30 days of 15 s samples (issue 35's goal: <= 2 s). Prints figures;
asserts nothing.

A real Prometheus on loopback holds 31 days of both client totals at 15 s (backfilled with promtool, as
test_observed_peak.py does at one sample a minute); the command is run as a user runs it, --repeat times.

Run: .venv/bin/python tests/bench/bench_peak.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.integration.promhistory import build_blocks, serving, write_openmetrics  # noqa: E402

DAY, STEP = 86400, 15


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    tool = str(Path(sys.executable).with_name("tradestack"))
    with tempfile.TemporaryDirectory(prefix="bench-peak-") as tmp:
        work = Path(tmp)
        end = int(time.time()) // STEP * STEP - 300
        start = end - 31 * DAY
        orders, sessions = [], []
        for t in range(start + STEP, end + 1, STEP):
            day, sec = divmod(t - start, DAY)
            bump = math.exp(-((sec - 36000) / 3600) ** 2) * (0.9 + 0.002 * day)
            orders.append((t, round(4 + 40 * bump, 3)))
            sessions.append((t, round(40 + 200 * bump)))
        began = time.monotonic()
        write_openmetrics(work / "h.om", {"tradestack:client_orders_per_second": orders,
                                          "tradestack:client_sessions": sessions})
        build_blocks(work / "h.om", work / "data")
        backfill_s = time.monotonic() - began
        print(f"history: 31 days of 15 s samples, 2 series, {len(orders) * 2:,} samples; "
              f"backfilled in {backfill_s:.1f} s")
        with serving(work / "data", work) as url:
            times = []
            for _ in range(args.repeat):
                began = time.monotonic()
                done = subprocess.run([tool, "capacity", "peak", "--prometheus", url, "--window", "30d", "--json"],
                                      capture_output=True, text=True)
                times.append(time.monotonic() - began)
                if done.returncode != 0:
                    print(f"capacity peak exited {done.returncode}: {done.stdout[-500:]}{done.stderr[-500:]}")
                    return
        print(f"capacity peak --window 30d: median {statistics.median(times):.2f} s, max {max(times):.2f} s over "
              f"{len(times)} runs (goal <= 2 s: {'met' if max(times) <= 2 else 'not met'}; the CLI's start included)")


if __name__ == "__main__":
    main()
