"""After a drill: the clients' ledger against the system of record and the venues (the reference stack's own
reconciliation, run on a host of the stack that reaches the database)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import TradestackError
from ..substrates import Substrate

# what a reconciliation reports (refstack reconcile --json); anything else is an error document, not a result
REPORTED = ("acked_missing", "acked_id_mismatch", "duplicates", "bad_balances_seen", "wrong_balances",
            "venue_mismatch", "unsettled", "silently_ended", "not_placed_but_present")


class ReconcileFailed(TradestackError):
    """The reconciliation did not run to its end: the verdict says why, it never judges a partial one."""


def reconcile(substrate: Substrate, ledgers: list[Path], settle_s: float) -> dict[str, Any]:
    """The reference stack's reconciliation, run where the database proxy is (a live router host); the clients'
    ledger is brought there from the clients' host. Raises ReconcileFailed when a ledger is missing or the
    reconciliation could not reach what it compares (the database, a venue)."""
    vantage = substrate.probe.database_vantage().name
    merged: dict[str, Any] = {}
    for path in ledgers:
        local = substrate.fetch(substrate.clients_host, path)
        if not local.exists():
            raise ReconcileFailed(f"the clients' ledger {path} is missing on {substrate.clients_host}")
        staged = path.with_name(f"{path.stem}.reconcile{path.suffix}")  # never over the clients' own ledger
        substrate.put(vantage, local, staged)
        done = substrate.run(vantage, [*substrate.tool_argv(vantage), "refstack", "reconcile", "--ledger", str(staged),
                                       "--settle", f"{settle_s:g}", "--json",
                                       *[a for url in substrate.venue_admins() for a in ("--venue-admin", url)]],
                             timeout=settle_s + 300, env={"PATH": "/usr/bin:/bin", "TRADESTACK_DSN": substrate.probe.db_dsn()})
        try:
            report = json.loads(done.stdout)
        except ValueError:
            report = None
        if not isinstance(report, dict) or any(k not in report for k in REPORTED):
            errors = report.get("errors") if isinstance(report, dict) else None
            raise ReconcileFailed(f"reconciling on {vantage} failed (rc {done.rc}): "
                                  + ("; ".join(map(str, errors)) if errors else done.why()))
        merged = report if not merged else merge(merged, report)
    return merged


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two reconciliations as one: counts add up, samples are kept from the first."""
    out = dict(a)
    out["ok"] = a.get("ok", False) and b.get("ok", False)
    for key, value in b.items():
        if isinstance(value, dict) and "count" in value:
            out[key] = {"count": a.get(key, {}).get("count", 0) + value["count"],
                        "sample": (a.get(key, {}).get("sample") or []) + value["sample"][:5]}
        elif isinstance(value, int) and key != "ok" and not isinstance(value, bool):
            out[key] = a.get(key, 0) + value
    out["duplicates"] = {"database": a["duplicates"]["database"] + b["duplicates"]["database"],
                         "venues": {"count": a["duplicates"]["venues"]["count"] + b["duplicates"]["venues"]["count"],
                                    "sample": a["duplicates"]["venues"]["sample"]}}
    return out
