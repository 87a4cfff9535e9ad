"""After a drill: the clients' ledger against the system of record and the venues (the reference stack's own
reconciliation, run on a host of the stack that reaches the database)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..substrates import Substrate


def reconcile(substrate: Substrate, ledgers: list[Path], settle_s: float) -> dict[str, Any]:
    """The reference stack's reconciliation, run where the database proxy is (a live router host); the clients'
    ledger is brought there from the clients' host."""
    vantage = substrate.database_vantage().name
    merged: dict[str, Any] = {}
    for path in ledgers:
        local = substrate.fetch(substrate.clients_host, path)
        if not local.exists():
            continue
        staged = path.with_name(f"{path.stem}.reconcile{path.suffix}")  # never over the clients' own ledger
        substrate.put(vantage, local, staged)
        done = substrate.run(vantage, [*substrate.tool_argv(vantage), "refstack", "reconcile", "--ledger", str(staged),
                                       "--settle", f"{settle_s:g}", "--json",
                                       *[a for url in substrate.venue_admins() for a in ("--venue-admin", url)]],
                             timeout=settle_s + 300, env={"PATH": "/usr/bin:/bin", "TRADESTACK_DSN": substrate.db_dsn()})
        try:
            report = json.loads(done.stdout)
        except ValueError:
            raise RuntimeError(f"reconcile failed: {done.why()}") from None
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
