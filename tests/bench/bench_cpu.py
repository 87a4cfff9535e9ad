"""Benchmark: where the deployed lab's CPU goes, per acknowledged order. Prints figures; asserts nothing.

Drives the deployed lab through every site's VIP at stepped rates (the drills' own load generator in
the clients namespace) and prints, per step, the carried rate, p50/p99, and per component the CPU
milliseconds per acknowledged order, from the kernel's per-process accounting of each lab host
(`/proc/PID/stat`, grouped by network namespace). The database primary and standby are told apart.
Then the highest step carried at p99 <= 100 ms, and `capacity verify` at peak x headroom (orders and
the peak's sessions) with every site up and each site cut off.

By default it deploys a lab of its own (run-unique names, removed after); `--stack NAME` uses a deployed one.
Its own lab declares each gateway at `--gateway-capacity` orders/s (default 500) instead of what `lab.yaml`
declares: a gateway's admission control refuses (429) beyond its declared capacity x 1.25, so with `lab.yaml`'s
own figure the ladder would measure that policy (4 gateways x 75/s), not what the stack carries. Everything
else, the peak included, is `lab.yaml`'s; the 429s of each step are printed.

Usage: python tests/bench/bench_cpu.py [--stack lab] [--steps 100,200,300] [--seconds 15] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
import time
from pathlib import Path

import yaml

from tradestack.capacity import verify
from tradestack.drills import actions
from tradestack.drills.steady import wait_steady
from tradestack.lab.substrate import LabSubstrate as Lab
from tradestack.lab import procstat
from tradestack.lab.stack import LabStack

from benchstack import TOPOLOGIES, deployed_stack

TAIL_S = 2.0  # routing and fills of the last orders still count
P99_BOUND_MS = 100.0


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / procstat.TICKS_PER_S, sum(values) / procstat.TICKS_PER_S


def step(lab: Lab, rate: float, seconds: float, sessions: int, assets_every_s: float) -> dict:
    leader = lab.probe.database_leader()

    def label(host: str, comp: str) -> str:
        if comp == "postgres":
            return "postgres primary" if host == leader else "postgres standby"
        return comp

    with tempfile.TemporaryDirectory(dir=lab.work_dir.parent if lab.work_dir.parent.exists() else None) as tmp:
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


def _within(r: dict) -> bool:
    """Carried (95% of what was offered) with p99 within the bound."""
    p99 = (r["latency_ms"] or {}).get("p99")
    return p99 is not None and p99 <= P99_BOUND_MS and r["acked_per_s"] >= 0.95 * r["offered_per_s"]


def bench(stack: str, args: argparse.Namespace) -> None:
    lab = Lab(LabStack(stack))
    peak = lab.topology.peak.get("orders_per_second", 100)
    # by default a ladder up to where the stack stops carrying within the bound (the figure is that ceiling,
    # not the top of a ladder that never reached it)
    ladder = args.steps is None
    rates = [float(r) for r in args.steps.split(",")] if args.steps else [round(peak * f) for f in
                                                                          (0.5, 1, 2, 3, 4, 5, 6, 8)]
    # a stack just deployed is still settling (the first step then measured that, not the order path): steady
    # first, as a drill or capacity verify requires, then one unmeasured step
    left = wait_steady(lab, 180)
    if left:
        raise SystemExit(f"stack {stack} is not steady: {'; '.join(left[:5])}")
    step(lab, rates[0], args.seconds, args.sessions, args.assets_every)
    results = []
    for rate in rates:
        r = step(lab, rate, args.seconds, args.sessions, args.assets_every)
        results.append(r)
        beyond = not _within(r)
        if not args.json:
            lat = r["latency_ms"] or {}
            print(f"offered {rate:5.0f}/s  acked {r['acked_per_s']:6.1f}/s  p50 {lat.get('p50')} ms  "
                  f"p99 {lat.get('p99')} ms  429s {r['throttled'] or 0}  machine busy {r['machine_busy_share']:.0%}  "
                  f"CPU {r['cpu_ms_per_order_total']} ms/order", flush=True)
            for comp, ms in r["cpu_ms_per_order"].items():
                if ms >= 0.05:
                    print(f"    {comp:18s} {ms:7.2f} ms/order")
        if ladder and beyond:
            break  # past the ceiling: higher steps would only saturate the machine for longer
    within = [r for r in results if _within(r)]
    best = max((r["acked_per_s"] for r in within), default=None)
    scenarios = [] if args.no_verify else verify.verify(stack, duration_s=args.seconds)
    if args.json:
        print(json.dumps({"stack": stack, "steps": results, "carried_at_p99_bound_per_s": best,
                          "verify": [m.to_dict() for m in scenarios]}, indent=2))
        return
    print(f"\n{dt.date.today()}: whole deployed lab, acked orders/s at p99 <= {P99_BOUND_MS:g} ms, every site up: "
          f"{best if best is not None else 'none of the steps'}")
    for m in scenarios:
        screens = "-" if m.refreshes_answered is None else f"{m.refreshes_answered:.2%}"
        print(f"capacity verify, {m.scenario}: {m.acked_per_s:g} of {m.target_per_s:g} orders/s, p99 {m.p99_ms} ms, "
              f"{m.sessions} sessions held, balance screens answered {screens}: "
              f"{'pass' if m.ok else 'FAIL ' + m.detail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", help="an already deployed stack (default: a run-unique one, removed after)")
    parser.add_argument("--steps", help="offered orders/s, comma-separated (default: 0.5 x the peak upwards, "
                                        "until a step is not carried within the p99 bound)")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--sessions", type=int, default=64)
    parser.add_argument("--assets-every", type=float, default=0.0,
                        help="each session refreshes its balance screen this often (0: orders only)")
    parser.add_argument("--gateway-capacity", type=float, default=500.0,
                        help="its own lab only: orders/s declared per gateway, which sets its admission limit "
                             "(0: as lab.yaml declares)")
    parser.add_argument("--no-verify", action="store_true", help="only the stepped rates")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.stack:
        bench(args.stack, args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        topology = "lab.yaml" if not args.gateway_capacity else str(
            with_gateway_capacity(TOPOLOGIES / "lab.yaml", args.gateway_capacity, Path(tmp)))
        with deployed_stack("bc", topology) as name:
            bench(name, args)


def with_gateway_capacity(source: Path, per_gateway: float, into: Path) -> Path:
    """A copy of `source` whose gateways are declared at `per_gateway` orders/s each (nothing else changed)."""
    doc = yaml.safe_load(source.read_text())
    gateway = next(s for s in doc["services"] if s["name"] == "gateway")
    gateway["capacity"]["orders_per_second"] = per_gateway
    target = into / source.name
    target.write_text(yaml.safe_dump(doc, sort_keys=False))
    return target


if __name__ == "__main__":
    main()
