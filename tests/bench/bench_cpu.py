"""Benchmark: where the deployed lab's CPU goes, per acknowledged order. Prints figures; asserts nothing.

Drives the deployed lab through every site's VIP at stepped rates (the drills' own load generator in
the clients namespace) and prints, per step, the carried rate, p50/p99, and per component the CPU
milliseconds per acknowledged order, from the kernel's per-process accounting of each lab host
(`/proc/PID/stat`, grouped by network namespace). The database primary and standby are told apart.

Usage: python tests/bench/bench_cpu.py [--stack lab] [--steps 100,200,300] [--seconds 15] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from tradestack.drills import actions
from tradestack.drills.lab import Lab
from tradestack.lab import procstat
from tradestack.lab.stack import LabStack

TAIL_S = 2.0  # routing and fills of the last orders still count


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / procstat.TICKS_PER_S, sum(values) / procstat.TICKS_PER_S


def step(lab: Lab, rate: float, seconds: float, sessions: int, assets_every_s: float) -> dict:
    leader = lab.database_leader()

    def label(host: str, comp: str) -> str:
        if comp == "postgres":
            return "postgres primary" if host == leader else "postgres standby"
        return comp

    with tempfile.TemporaryDirectory(dir=lab.ledger_dir.parent if lab.ledger_dir.parent.exists() else None) as tmp:
        sampler = procstat.Sampler(f"{lab.name}-")
        busy0, total0 = machine_busy()
        sampler.start()
        proc = actions.start_load(lab, Path(tmp) / "ledger.sqlite", rate, seconds, sessions, 0.0, 0.0,
                                  assets_every_s=assets_every_s)
        summary = actions.finish_load(proc, timeout=seconds + 90)
        time.sleep(TAIL_S)
        sampler.stop()
        busy1, total1 = machine_busy()
    acked = int(summary.get("acked", 0))
    per = procstat.by_component(sampler.used(), label)
    return {"offered_per_s": rate, "acked_per_s": round(acked / seconds, 1), "sent": summary.get("sent"),
            "latency_ms": summary.get("latency_ms"), "throttled": summary.get("throttled"),
            "server_errors": summary.get("server_errors"), "unknown": summary.get("unknown"),
            "assets_ok": summary.get("assets_ok"), "assets_unavailable": summary.get("assets_unavailable"),
            "machine_busy_share": round((busy1 - busy0) / max(1e-9, total1 - total0), 3),
            "cpu_ms_per_order": {k: round(v * 1000 / max(1, acked), 2)
                                 for k, v in sorted(per.items(), key=lambda kv: -kv[1])},
            "cpu_ms_per_order_total": round(sum(per.values()) * 1000 / max(1, acked), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default="lab")
    parser.add_argument("--steps", default="100,200,300,400", help="offered orders/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--sessions", type=int, default=64)
    parser.add_argument("--assets-every", type=float, default=0.0,
                        help="each session refreshes its balance screen this often (0: orders only)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    lab = Lab(LabStack(args.stack))
    results = []
    for rate in (float(r) for r in args.steps.split(",")):
        r = step(lab, rate, args.seconds, args.sessions, args.assets_every)
        results.append(r)
        if not args.json:
            lat = r["latency_ms"] or {}
            print(f"offered {rate:5.0f}/s  acked {r['acked_per_s']:6.1f}/s  p50 {lat.get('p50')} ms  "
                  f"p99 {lat.get('p99')} ms  machine busy {r['machine_busy_share']:.0%}  "
                  f"CPU {r['cpu_ms_per_order_total']} ms/order", flush=True)
            for comp, ms in r["cpu_ms_per_order"].items():
                if ms >= 0.05:
                    print(f"    {comp:18s} {ms:7.2f} ms/order")
    if args.json:
        print(json.dumps({"stack": args.stack, "steps": results}, indent=2))


if __name__ == "__main__":
    main()
