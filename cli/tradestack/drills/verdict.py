"""A drill's verdict: each expectation, and the engine's own (every restore done, steady again), as a check;
and the abort condition watched while faults are applied."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from ..substrates import Substrate
from . import figures, model
from .journal import Journal


def abort_reason(drill: model.Drill, substrate: Substrate, ledger: Path) -> str | None:
    """Clients failing at or above the abort error rate for the whole abort window."""
    if drill.abort.error_rate >= 1.0:
        return None
    ledger = substrate.fetch(substrate.clients_host, ledger)
    if not ledger.exists():
        return None
    since = time.time() - drill.abort.for_s
    try:
        with sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=1) as conn:
            rows = conn.execute("SELECT first_sent, outcome, attempts, latency_ms FROM orders WHERE first_sent >= ?",
                                (since,)).fetchall()
            oldest = conn.execute("SELECT min(first_sent) FROM orders").fetchone()[0]
    except sqlite3.Error:
        return None
    if not rows or oldest is None or oldest > since:
        return None
    bad = sum(1 for _, outcome, attempts, latency in rows
              if not figures.ClientOrder(0, latency, outcome, attempts, "").clean)
    rate = bad / len(rows)
    if rate >= drill.abort.error_rate:
        return f"client error rate {rate:.0%} >= {drill.abort.error_rate:.0%} for {drill.abort.for_s:g} s"
    return None


def verdict_checks(drill: model.Drill, figs: figures.Figures | None, rec: dict[str, Any] | None,
                   journal: Journal, spike: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Each expectation (and the engine's own: restores and steady state) as {check, expected, actual, ok}."""
    e = drill.expect
    checks: list[dict[str, Any]] = []

    def add(name: str, expected: Any, actual: Any, ok: bool) -> None:
        actual = round(actual, 3) if isinstance(actual, float) else actual
        checks.append({"check": name, "expected": expected, "actual": actual, "ok": bool(ok)})

    failed = [s.name for s in journal.steps if s.ok is False]
    add("every step and restore succeeded", "no failed step", failed or "none failed", not failed)
    if journal.aborted:
        add("no abort condition", "none", journal.aborted, False)
    if e.max_recovery_s is not None:
        actual = figs.recovery_s if figs else None
        add("recovery time (s)", f"<= {e.max_recovery_s:g}", actual if actual is not None else "never recovered",
            actual is not None and actual <= e.max_recovery_s)
    if e.max_error_rate is not None:
        rate = figs.error_rate if figs else None
        add("client error rate", f"<= {e.max_error_rate:g}", rate, rate is not None and rate <= e.max_error_rate)
    if spike is not None:  # overload must be refused fast (429), never time out or fail
        bad = int(spike.get("server_errors", 0)) + int(spike.get("unknown", 0)) if spike.get("ok") else None
        add("load spike answered with 429s, no 5xx or timeouts", "0 of either",
            bad if bad is not None else f"spike load failed: {spike.get('error')}", bad == 0)
    if rec is None:
        add("reconciliation ran", "yes", "no", False)
        return checks
    lost = rec["acked_missing"]["count"] + rec["acked_id_mismatch"]["count"]
    add("acknowledged orders lost", f"<= {e.max_acked_lost}", lost, lost <= e.max_acked_lost)
    dupes = rec["duplicates"]["database"] + rec["duplicates"]["venues"]["count"]
    add("duplicate orders", f"<= {e.max_duplicates}", dupes, dupes <= e.max_duplicates)
    wrong = rec["bad_balances_seen"]["count"] + rec["wrong_balances"]["count"]
    add("wrong or zero balances shown", f"<= {e.wrong_balances}", wrong, wrong <= e.wrong_balances)
    # a fill or cancel the system of record missed leaves the account's cash and positions wrong
    missed = rec["venue_mismatch"]["count"]
    add("every order as its venue's book says", 0, missed, missed == 0)
    if e.every_order_accounted:
        open_ = rec["unsettled"]["count"] + rec["silently_ended"]["count"] + rec["not_placed_but_present"]["count"]
        add("every order accounted for (none pending, none ended without a reason)", 0, open_, open_ == 0)
    return checks
