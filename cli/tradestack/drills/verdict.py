"""A drill's verdict: each expectation, and the engine's own (the clients ran as planned, the stack was watched,
every restore done, steady again, the reconciliation ran), as a check; and the abort condition watched while
faults are applied. A check with nothing to judge fails: a PASS says what was judged."""

from __future__ import annotations

from typing import Any

from . import figures, model
from .clients import SILENT_S, Clients
from .journal import Journal
from .observer import Observer


def abort_reason(drill: model.Drill, clients: Clients) -> str | None:
    """Clients failing at or above the abort error rate for the whole abort window (their own reports)."""
    if drill.abort.error_rate >= 1.0:
        return None
    rate = clients.error_rate(drill.abort.for_s)
    if rate is not None and rate >= drill.abort.error_rate:
        return f"client error rate {rate:.0%} >= {drill.abort.error_rate:.0%} for {drill.abort.for_s:g} s"
    return None


def load_problems(clients: Clients | None, summary: dict[str, Any] | None, figs: figures.Figures | None,
                  window: figures.Window) -> list[str]:
    """Why the clients' load does not count as run as planned (empty: it does): never started or sent, died or
    went silent while needed, did not exit cleanly, or fell short before the fault or after the restore."""
    if clients is None:
        return ["the load generator did not start"]
    if not clients.sending:
        return ["the clients never sent an order, so nothing was tested"]
    problems = [clients.failure] if clients.failure else []
    rc = clients.proc.returncode
    if rc != 0 or not (summary or {}).get("ok"):
        problems.append(f"the load generator ended with rc {rc}"
                        + (f": {summary.get('error')}" if summary and summary.get("error") else ""))
    if window.start is not None and (silence := figures.longest_silence(clients.reports, window.start,
                                                                         window.ended)) > SILENT_S:
        problems.append(f"no progress report from the clients for {silence:.1f} s")
    if figs is None or not figs.load:
        problems.append("no order in the clients' ledger")
        return problems
    for phase, words in (("baseline", "before the fault"), ("after", "after the restore")):
        problems += [f"{words}: {s}" for s in figs.load[phase].shortfalls()]
    return problems


def watch_problems(observer: Observer, window: figures.Window) -> list[str]:
    """Why the observer's samples cannot support the drill's figures (empty: they can)."""
    samples = list(observer.samples)
    errors = f"; {observer.errors} probe error(s), the last: {observer.last_error}" if observer.errors else ""
    if not samples:
        return [f"no sample of the stack was taken{errors}"]
    problems = []
    start = window.start if window.start is not None else samples[0].t
    share = figures.watched(samples, start, window.ended)
    if share < figures.WATCH_SHARE:
        problems.append(f"samples cover {share:.0%} of the drill (at least {figures.WATCH_SHARE:.0%} asked){errors}")
    if window.restored > window.injected and not any(window.injected <= s.t <= window.restored for s in samples):
        problems.append(f"no sample while the fault was applied{errors}")
    return problems


def verdict_checks(drill: model.Drill, figs: figures.Figures | None, rec: dict[str, Any] | None,
                   journal: Journal, spike: dict[str, Any] | None = None, *, load: list[str],
                   watch: list[str]) -> list[dict[str, Any]]:
    """Each expectation, and the engine's own (the clients' load, the observer's samples, restores and steady
    state, the reconciliation), as {check, expected, actual, ok}. `load` and `watch` are the problems found with
    the clients' load and the observer's samples (load_problems, watch_problems)."""
    e = drill.expect
    checks: list[dict[str, Any]] = []

    def add(name: str, expected: Any, actual: Any, ok: bool) -> None:
        actual = round(actual, 3) if isinstance(actual, float) else actual
        checks.append({"check": name, "expected": expected, "actual": actual, "ok": bool(ok)})

    def phase(name: str) -> str:
        p = figs.load[name] if figs and name in figs.load else None
        return "" if p is None else (f"{name} {p.sent}/{p.planned} orders, "
                                     f"{p.sessions_held}/{p.sessions_planned} sessions")

    add("the load ran as planned", f"clients sending before the fault, alive and reporting until stopped, exit 0; "
        f">= {figures.LOAD_SHARE:.0%} of planned orders and sessions before the fault and after the restore",
        "; ".join(load) or "; ".join(filter(None, (phase("baseline"), phase("after"), "exit 0"))), not load)
    add("the stack was watched", f"samples every <= {figures.WATCH_GAP_S:g} s over >= {figures.WATCH_SHARE:.0%} "
        "of the drill, one or more during the fault",
        "; ".join(watch) or f"{figs.samples if figs else 0} samples, {figs.watched if figs else 0:.0%} covered",
        not watch)
    failed = [s.name for s in journal.steps if s.ok is False]
    add("every step and restore succeeded", "no failed step", failed or "none failed", not failed)
    if journal.aborted:
        add("no abort condition", "none", journal.aborted, False)
    if e.max_recovery_s is not None:
        actual = figs.recovery_s if figs else None
        add("recovery time (s)", f"<= {e.max_recovery_s:g}", actual if actual is not None else "never recovered",
            actual is not None and actual <= e.max_recovery_s)
    if e.max_error_rate is not None:
        rate = figs.error_rate if figs and figs.orders else None
        add("client error rate", f"<= {e.max_error_rate:g}", rate if rate is not None else "no order to judge",
            rate is not None and rate <= e.max_error_rate)
    if spike is not None:  # overload must be refused fast (429), never time out or fail
        bad = int(spike.get("server_errors", 0)) + int(spike.get("unknown", 0)) if spike.get("ok") else None
        add("load spike answered with 429s, no 5xx or timeouts", "0 of either",
            bad if bad is not None else f"spike load failed: {spike.get('error')}", bad == 0)
    if not rec:
        step = next((s for s in journal.steps if s.name == "reconcile"), None)
        why = ("not run: the clients sent no order" if step is None else
               step.detail if step.ok is False else "no result")
        add("reconciliation ran", "the clients' ledger reconciled with the database and the venues", why, False)
        return checks
    reconciled = int(rec.get("ledger_orders") or 0)
    add("reconciliation ran", "the clients' ledger reconciled with the database and the venues",
        f"{reconciled} ledger orders reconciled", reconciled > 0)
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
