"""Benchmark: catalogue drills, repeated on one deployed lab.

Prints, per drill, the pass rate, median and worst recovery time and client error rate (and the bounds they
suggest: the worst of the runs x 1.5, how the catalogue's bounds are derived, docs/drills.md), time without a
database leader and detection, and the orders left unsettled or out of line with their venue over every
repetition; the last report of each drill (JSON, HTML, timeline plot) is kept in tests/bench/results/DRILL/.
Needs root.

By default it brings up and deploys its own lab under run-unique names (stack, service user, state
root) and removes all of it afterwards; `--stack NAME` uses an already deployed stack instead.

Run: sudo .venv/bin/python tests/bench/bench_drills.py [--repeat 5] [--stack lab] [--drills all | NAME ...]
     [--kind kubernetes]
(about 1-2 min a run, 3 min for the kubernetes drills; the default is the database-crash drill and the power
loss of the standby's site and of the leader's; with `--kind kubernetes` the stack is deployed on the
kubernetes substrate and `all` means the drills of the catalogue's kubernetes folder)
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
from pathlib import Path

from tradestack.drills import engine, files, report

from benchstack import deployed_stack

RESULTS = Path(__file__).resolve().parent / "results"
DRILLS = ("db-primary-crash", "site-power-loss", "leader-site-power-loss")


def _figure(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "n/a"
    missing = f", {len(values) - len(known)} never" if len(known) < len(values) else ""
    return f"median {statistics.median(known):.2f} s, worst {max(known):.2f} s{missing}"


def _count(rec: dict | None, *keys: str) -> int | None:
    return None if rec is None else sum(rec[k]["count"] for k in keys)


def _bound(values: list[float | None]) -> str:
    """The bound the catalogue takes from these runs: the worst x 1.5 (none when a run has no figure)."""
    if not values or any(v is None for v in values):
        return "none (a run without the figure)"
    return f"{max(v for v in values if v is not None) * BOUND_MARGIN:.3g}"


BOUND_MARGIN = 1.5


def bench(stack: str, repeat: int, drills: tuple[str, ...] = DRILLS) -> None:
    print(f"{dt.date.today()}: {', '.join(drills)} x{repeat} on stack {stack}")
    for name in drills:
        results = []
        for k in range(repeat):
            result = engine.run(engine.plan(files.resolve(name), stack))
            results.append(result)
            f = result.figures
            print(f"  run {k + 1}: {result.verdict}; recovery {f.recovery_s if f else None} s, error rate "
                  f"{round(f.error_rate, 4) if f else None}; failed: "
                  f"{[(c['check'], c['actual']) for c in result.checks if not c['ok']]}", flush=True)
        figs = [r.figures for r in results]
        recs = [r.reconciliation for r in results]
        kept = report.write(results[-1].to_dict(), RESULTS / name)
        passed = sum(r.verdict == "pass" for r in results)
        unsettled = [_count(r, "unsettled", "venue_mismatch") for r in recs]
        lost = [_count(r, "acked_missing", "acked_id_mismatch") for r in recs]
        print(f"{name}: {passed}/{repeat} passed, verdicts {[r.verdict for r in results]}")
        print(f"  recovery (fault to sustained service): {_figure([f.recovery_s if f else None for f in figs])}")
        print(f"  without a database leader: {_figure([f.no_leader_s if f else None for f in figs])}")
        print(f"  detection: {_figure([f.detection_s if f else None for f in figs])}")
        rates = [f.error_rate if f else None for f in figs]
        print(f"  client error rate per run: {[None if r is None else round(r, 4) for r in rates]}")
        print(f"  suggested bounds (worst x {BOUND_MARGIN:g}): max_recovery_s "
              f"{_bound([f.recovery_s if f else None for f in figs])}, max_error_rate {_bound(rates)}")
        print(f"  orders per run: {[f.orders if f else None for f in figs]}; client errors: "
              f"{[f.client_errors if f else None for f in figs]}")
        retried = [f.failed_or_retried_rate if f else None for f in figs]
        print(f"  orders failed or retried by the client (issue 33: <= 1 %): "
              f"{[None if r is None else f'{r:.2%}' for r in retried]}; worst "
              f"{'n/a' if None in retried or not retried else f'{max(retried):.2%}'}")
        p99 = [f.latency_p99_ms.get('during') if f else None for f in figs]
        print(f"  p99 latency of orders sent during the fault (ms): {p99}")
        parked = [f.parked if f else None for f in figs]
        print(f"  orders parked by the gateways: {[p.orders if p else None for p in parked]}; their p99 wait (s, "
              f"bucket bound): {[p.wait_p99_s if p else None for p in parked]}; mean "
              f"{[None if p is None or p.wait_mean_s is None else round(p.wait_mean_s, 2) for p in parked]}")
        margins = [None if f is None or f.parked is None or f.parked.wait_p99_s is None or f.no_leader_s is None
                   else round(f.no_leader_s + 1 - f.parked.wait_p99_s, 2) for f in figs]
        print(f"  parked p99 under time without a leader + 1 s (issue 33; >= 0 meets it): {margins}")
        answers = [[v for v in f.first_answer_s.values() if v is not None] if f else [] for f in figs]
        worst = [round(max(a), 3) if a else None for a in answers]
        print(f"  fault to Patroni's promotion: {_figure([f.promoted_s if f else None for f in figs])}; promotion to "
              f"the gateways' first database answer, worst per run: {worst}")
        print(f"  acknowledged orders lost per run: {lost}; left unsettled or out of line with the venue: {unsettled}")
        print(f"  last report: {kept['html']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--stack", help="an already deployed stack (default: a run-unique one, removed after)")
    parser.add_argument("--drills", nargs="+", default=list(DRILLS),
                        help="drill names, or `all` for every catalogue drill of the substrate's kind")
    parser.add_argument("--kind", choices=("lab", "kubernetes"), default="lab",
                        help="the substrate of the stack this benchmark deploys (default: lab)")
    args = parser.parse_args()
    every = files.cluster_catalogue() if args.kind == "kubernetes" else files.catalogue()
    drills = tuple(sorted(every)) if args.drills == ["all"] else tuple(args.drills)
    if args.stack:
        bench(args.stack, args.repeat, drills)
        return
    with deployed_stack("bd", kind=args.kind) as name:
        bench(name, args.repeat, drills)


if __name__ == "__main__":
    main()
