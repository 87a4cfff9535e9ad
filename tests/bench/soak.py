"""Soak: the declared peak for 30 minutes with no fault, counting false failovers (issue 33).

Runs the topology's peak (orders/s and sessions) through every site's public address and counts what failed over
anyway, from each part's own records: Patroni's leader changes, etcd's leader changes, HAProxy's database members
marked down, the observer's time without a leader; and prints the margin the settings leave: how close the leader
came to losing its lock (its longest gap between renewals against Patroni's ttl). Exit 0 when nothing failed over
and every part was read, 1 otherwise. Needs root.

By default it brings up and deploys its own lab under run-unique names and removes all of it afterwards;
`--stack NAME` soaks an already deployed stack instead. Not part of `make bench` or `make test` (`make soak`).

Run: sudo .venv/bin/python tests/bench/soak.py [--minutes 30] [--stack NAME] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

from tradestack.drills import soak
from tradestack.drills.lock import stack_lock
from tradestack.substrates import registry

from benchstack import deployed_stack

RESULTS = Path(__file__).resolve().parent / "results" / "soak"


def _soak(stack: str, minutes: float, as_json: bool) -> int:
    substrate = registry.open_stack(stack)
    ledger = substrate.work_dir / f"soak-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}.sqlite"
    with stack_lock(stack):  # no drill may run meanwhile: its failovers would be counted as false ones
        result = soak.run(substrate, minutes, ledger, progress=lambda line: print(line, file=sys.stderr, flush=True))
    document = result.to_dict()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "last.json").write_text(json.dumps(document, indent=1, default=str) + "\n")
    if as_json:
        print(json.dumps(document, default=str))
    else:
        patroni = document["patroni"]
        print(f"{dt.date.today()}: soak of {stack}, {result.rate:g} orders/s and {result.sessions} sessions for "
              f"{result.minutes:g} min: {result.verdict.upper()}")
        for check in result.checks:
            print(f"  {'ok  ' if check['ok'] else 'FAIL'} {check['check']}: {check['actual']} (expected "
                  f"{check['expected']})")
        print(f"  Patroni ttl {patroni['ttl_s']} s, loop_wait {patroni['loop_wait_s']} s: {patroni['renewals']} lock "
              f"renewals, the slowest {patroni['longest_renewal_gap_s']} s apart, margin {patroni['lock_margin_s']} s")
        print(f"  observer: {document['samples']} samples covering {document['watched']:.1%}; kept in "
              f"{RESULTS / 'last.json'}")
    return 0 if result.verdict == "pass" else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--stack", help="an already deployed stack (default: a run-unique one, removed after)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args()
    if args.minutes <= 0:
        parser.error("--minutes must be more than 0")
    if args.stack:
        sys.exit(_soak(args.stack, args.minutes, args.json))
    with deployed_stack("sk") as name:
        code = _soak(name, args.minutes, args.json)
    sys.exit(code)


if __name__ == "__main__":
    main()
