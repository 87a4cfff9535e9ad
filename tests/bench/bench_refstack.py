"""Benchmark: orders per second one gateway instance sustains on this machine (p50/p99), and the
router's routing rate. Prints figures; asserts nothing (timing goals live here, not in tests).

Open-loop steps of increasing rate against one gateway with admission limits lifted; a step is
sustained when at least 99% of its orders are acknowledged at the offered rate with p99 under
the bound. The load generator runs in its own process so it does not share the gateway's core.

Usage: python tests/bench/bench_refstack.py [--steps 200,400,...] [--seconds 6] [--p99-ms 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import tempfile
import time
from pathlib import Path

import psycopg

from tradestack.refstack.config import Admission
from tradestack.refstack.local import LocalRefStack
from tradestack.refstack.loadgen import LoadPlan, run_load


def _load(plan: LoadPlan, ledger: str, queue: multiprocessing.Queue) -> None:
    run, stats = asyncio.run(run_load(plan, Path(ledger)))
    queue.put((run, stats.summary()))


def step(gateway: str, rate: float, seconds: float, sessions: int, accounts: int) -> tuple[str, dict]:
    plan = LoadPlan(endpoints=(gateway,), rate=rate, duration_s=seconds, sessions=sessions, accounts=accounts,
                    assets_every_s=0, give_up_s=10, request_timeout_s=5)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        process = context.Process(target=_load, args=(plan, f"{tmp}/ledger.sqlite", queue))
        process.start()
        run, summary = queue.get()
        process.join()
    return run, summary


def routing(dsn: str, run: str, settle_s: float = 30) -> dict:
    """Router throughput for one step: orders filled per second between the first claim and the last fill."""
    with psycopg.connect(dsn) as conn:
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline:
            live = conn.execute("SELECT count(*) FROM orders WHERE client_order_id LIKE %s AND state NOT IN "
                                "('filled', 'rejected', 'cancelled', 'cancelled_by_venue')", (f"{run}-%",)).fetchone()[0]
            if live == 0:
                break
            time.sleep(0.2)
        n, first, last, p50, p99 = conn.execute(
            "SELECT count(*), min(created_at), max(updated_at), "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at)), "
            "percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM updated_at - created_at)) "
            "FROM orders WHERE client_order_id LIKE %s AND state = 'filled'", (f"{run}-%",)).fetchone()
    span = (last - first).total_seconds() if n else 0
    return {"filled": n, "filled_per_s": round(n / span, 1) if span else None,
            "accept_to_fill_ms": {"p50": round(p50 * 1000, 1) if p50 else None,
                                  "p99": round(p99 * 1000, 1) if p99 else None}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="200,400,600,800,1000,1200")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--sessions", type=int, default=64)
    parser.add_argument("--p99-ms", type=float, default=100.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    accounts = 2000
    lifted = Admission(max_in_flight=10_000, orders_per_second=1_000_000, burst=1_000_000)
    results = []
    with LocalRefStack(accounts=accounts, admission=lifted) as stack:
        endpoints = stack.endpoints()
        gateway = endpoints["gateways"]["gateway-1"]
        step(gateway, 100, 2, 16, accounts)  # warm-up
        for rate in (float(r) for r in args.steps.split(",")):
            run, load = step(gateway, rate, args.seconds, args.sessions, accounts)
            route = routing(endpoints["database"], run)
            acked_share = load["acked"] / max(1, load["sent"])
            achieved = load["acked"] / args.seconds
            sustained = acked_share >= 0.99 and achieved >= 0.95 * rate and \
                (load["latency_ms"]["p99"] or 1e9) <= args.p99_ms
            results.append({"offered_per_s": rate, "acked_per_s": round(achieved, 1), "sustained": sustained,
                            "latency_ms": load["latency_ms"], "router": route})
            if not args.json:
                print(f"offered {rate:6.0f}/s  acked {achieved:7.1f}/s  p50 {load['latency_ms']['p50']} ms  "
                      f"p99 {load['latency_ms']['p99']} ms  {'sustained' if sustained else 'NOT sustained'}  | "
                      f"router {route['filled_per_s']} fills/s, accept->fill p50 {route['accept_to_fill_ms']['p50']} "
                      f"ms p99 {route['accept_to_fill_ms']['p99']} ms", flush=True)
            if not sustained:
                break
    best = max((r for r in results if r["sustained"]), key=lambda r: r["offered_per_s"], default=None)
    sustained = best["offered_per_s"] if best else None
    # Declared capacity keeps a margin below the measured ceiling: run at <= 70% of it.
    suggested = int(sustained * 0.7 // 50 * 50) if sustained else None
    summary = {"one_gateway_sustains_per_s": sustained, "at": best["latency_ms"] if best else None,
               "router_fills_per_s": best["router"]["filled_per_s"] if best else None,
               "suggested_capacity_per_instance": suggested, "steps": results}
    print(json.dumps(summary, indent=2) if args.json else
          f"\none gateway instance sustains {sustained} orders/s (p50 {summary['at']['p50'] if best else '-'} ms, "
          f"p99 {summary['at']['p99'] if best else '-'} ms) on this machine; the router kept pace at "
          f"{summary['router_fills_per_s']} fills/s.\nSuggested per-instance capacity (70%): {suggested} orders/s")


if __name__ == "__main__":
    main()
