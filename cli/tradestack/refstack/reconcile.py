"""Reconciliation: the clients' ledger against the system of record (and the venues' books).

What must hold after any failure: no acknowledged order missing, no order twice (in the
database or at the venues), every order settled in a final state with a reason where it was
not filled, every order's state equal to what its venue's book says of it, no balance shown to a
client as zero or unmarked-stale, and every account's cash and positions equal to what its fills
imply (so, with the states agreeing, to what the venues' fills imply).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from ..errors import InputError, TradestackError
from .ledger import Ledger
from .schema import FINAL_STATES

NEEDS_REASON = ("rejected", "cancelled", "cancelled_by_venue")


class ReconcileError(TradestackError):
    """The system of record or a venue could not be read."""


@dataclass
class Reconciliation:
    ledger_orders: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    acked_missing: list[str] = field(default_factory=list)           # must be empty
    id_mismatch: list[str] = field(default_factory=list)             # ack named another order: a duplicate
    duplicates_in_database: int = 0                                  # must be 0
    duplicates_at_venues: list[str] = field(default_factory=list)    # must be empty
    not_placed_but_present: list[str] = field(default_factory=list)  # 429/4xx answered, yet stored: must be empty
    unknown_resolved: dict[str, int] = field(default_factory=dict)   # client never learned; what it turned out to be
    final_states: dict[str, int] = field(default_factory=dict)
    unsettled: list[str] = field(default_factory=list)               # still live after settling: must be empty
    silent: list[str] = field(default_factory=list)                  # cancelled/rejected with no reason: must be empty
    assets_seen: dict[str, int] = field(default_factory=dict)
    bad_balances_seen: list[str] = field(default_factory=list)       # zero/empty/malformed shown: must be empty
    wrong_balances: list[str] = field(default_factory=list)          # cash/positions not implied by fills
    venue_mismatch: list[str] = field(default_factory=list)          # state differs from the venue's book
    settle_wait_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.acked_missing or self.id_mismatch or self.duplicates_in_database or self.duplicates_at_venues
                    or self.not_placed_but_present or self.unsettled or self.silent or self.bad_balances_seen
                    or self.wrong_balances or self.venue_mismatch)

    def to_dict(self, sample: int = 10) -> dict[str, Any]:
        def cut(items: list[str]) -> dict[str, Any]:
            return {"count": len(items), "sample": items[:sample]}

        return {
            "ok": self.ok, "ledger_orders": self.ledger_orders, "outcomes": self.outcomes,
            "acked_missing": cut(self.acked_missing), "acked_id_mismatch": cut(self.id_mismatch),
            "duplicates": {"database": self.duplicates_in_database, "venues": cut(self.duplicates_at_venues)},
            "not_placed_but_present": cut(self.not_placed_but_present),
            "unknown_outcomes_resolved": self.unknown_resolved, "final_states": self.final_states,
            "unsettled": cut(self.unsettled), "silently_ended": cut(self.silent),
            "assets_seen": self.assets_seen, "bad_balances_seen": cut(self.bad_balances_seen),
            "wrong_balances": cut(self.wrong_balances), "venue_mismatch": cut(self.venue_mismatch),
            "settle_wait_s": round(self.settle_wait_s, 2),
        }


def reconcile(ledger_path: Path, dsn: str, venue_admin: list[str] | None = None,
              settle_s: float = 15.0) -> Reconciliation:
    """Compare; first wait up to `settle_s` for orders still being routed to reach a final state."""
    if not ledger_path.exists():
        raise InputError("no such ledger (`tradestack refstack load --ledger` writes one)", source=ledger_path)
    ledger = Ledger(ledger_path)
    try:
        sent, seen = ledger.orders(), ledger.assets()
    finally:
        ledger.close()
    report = Reconciliation(ledger_orders=len(sent), outcomes=dict(Counter(o.outcome for o in sent)))
    keys = [(o.account, o.client_order_id) for o in sent]
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            report.settle_wait_s = _settle(conn, keys, settle_s)
            stored = _stored(conn, keys)
            report.wrong_balances = _wrong_balances(conn, sorted({o.account for o in sent}))
    except psycopg.OperationalError as exc:
        raise ReconcileError(f"cannot read the system of record: {str(exc).strip().splitlines()[0]}") from None

    for order in sent:
        rows = stored.get((order.account, order.client_order_id), [])
        report.duplicates_in_database += max(0, len(rows) - 1)
        row = rows[0] if rows else None
        ref = f"{order.account}/{order.client_order_id}"
        if order.outcome == "acked":
            if row is None:
                report.acked_missing.append(ref)
            elif order.order_id and str(row["id"]) != order.order_id:
                report.id_mismatch.append(f"{ref}: acked as {order.order_id}, stored as {row['id']}")
        elif order.outcome in ("refused", "rejected") and row is not None:
            report.not_placed_but_present.append(f"{ref} ({order.outcome}, stored as {row['state']})")
        elif order.outcome == "unknown":
            key = row["state"] if row else "never stored"
            report.unknown_resolved[key] = report.unknown_resolved.get(key, 0) + 1
        if row is None:
            continue
        report.final_states[row["state"]] = report.final_states.get(row["state"], 0) + 1
        if row["state"] not in FINAL_STATES and not (row["state"] == "acked" and row["order_type"] == "limit"):
            report.unsettled.append(f"{ref}: {row['state']} ({row['reason'] or 'no reason'})")
        if row["state"] in NEEDS_REASON and not row["reason"]:
            report.silent.append(f"{ref}: {row['state']} without a reason")

    report.assets_seen = dict(Counter(v.verdict for v in seen))
    report.bad_balances_seen = [f"{v.account} at {v.endpoint}: {v.detail}" for v in seen if v.verdict == "bad"]
    books = _venue_books(venue_admin or [])
    report.duplicates_at_venues = _venue_duplicates(books, {str(r["id"]) for rows in stored.values() for r in rows})
    if books:
        report.venue_mismatch = _venue_mismatch(stored, books)
    return report


def _settle(conn: psycopg.Connection[Any], keys: list[tuple[str, str]], settle_s: float) -> float:
    """Resting limit orders are settled; anything else live is waited for."""
    start = time.monotonic()
    accounts = [k[0] for k in keys]
    ids = [k[1] for k in keys]
    while True:
        live = conn.execute(
            "SELECT count(*) FROM orders o JOIN unnest(%s::text[], %s::text[]) AS k(account, cid) "
            "ON o.account = k.account AND o.client_order_id = k.cid "
            "WHERE o.state IN ('accepted', 'routing', 'sent', 'venue_unknown') "
            "OR (o.state = 'acked' AND o.order_type = 'market')", (accounts, ids)).fetchone()
        if not live or live[0] == 0 or time.monotonic() - start >= settle_s:
            return time.monotonic() - start
        time.sleep(0.2)


def _stored(conn: psycopg.Connection[Any], keys: list[tuple[str, str]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    cur = conn.cursor(row_factory=dict_row)
    cur.execute("SELECT o.id, o.account, o.client_order_id, o.state, o.reason, o.order_type, o.venue, "
                "o.venue_order_id FROM orders o "
                "JOIN unnest(%s::text[], %s::text[]) AS k(account, cid) "
                "ON o.account = k.account AND o.client_order_id = k.cid", ([k[0] for k in keys], [k[1] for k in keys]))
    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in cur.fetchall():
        found.setdefault((row["account"], row["client_order_id"]), []).append(row)
    return found


def _wrong_balances(conn: psycopg.Connection[Any], accounts: list[str]) -> list[str]:
    rows = conn.execute("""
        SELECT a.account, a.cash, a.initial_cash - COALESCE(f.spent, 0) AS expected
        FROM accounts a LEFT JOIN (
            SELECT account, sum(CASE WHEN side = 'buy' THEN 1 ELSE -1 END * qty * fill_price) AS spent
            FROM orders WHERE state = 'filled' GROUP BY account) f ON f.account = a.account
        WHERE a.account = ANY(%s) AND a.cash <> a.initial_cash - COALESCE(f.spent, 0)""", (accounts,)).fetchall()
    wrong = [f"{a}: cash {cash}, fills imply {expected}" for a, cash, expected in rows]
    rows = conn.execute("""
        SELECT COALESCE(p.account, f.account), COALESCE(p.symbol, f.symbol), COALESCE(p.qty, 0), COALESCE(f.qty, 0)
        FROM (SELECT * FROM positions WHERE account = ANY(%(a)s)) p
        FULL JOIN (SELECT account, symbol, sum(CASE WHEN side = 'buy' THEN qty ELSE -qty END) AS qty
                   FROM orders WHERE state = 'filled' AND account = ANY(%(a)s) GROUP BY account, symbol) f
          ON p.account = f.account AND p.symbol = f.symbol
        WHERE COALESCE(p.qty, 0) <> COALESCE(f.qty, 0)""", {"a": accounts}).fetchall()
    wrong += [f"{a} {s}: position {have}, fills imply {want}" for a, s, have, want in rows]
    return wrong


def _venue_books(admin_urls: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """venue name -> venue order id -> what the venue's own book says of it."""
    books: dict[str, dict[str, dict[str, Any]]] = {}
    for url in admin_urls:
        try:
            book = httpx.get(f"{url.rstrip('/')}/admin/orders", timeout=10).json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ReconcileError(f"cannot read the venue book at {url}: {exc}") from None
        books[book["venue"]] = {o["venue_order_id"]: o for o in book["orders"]}
    return books


def _venue_duplicates(books: dict[str, dict[str, dict[str, Any]]], orders: set[str]) -> list[str]:
    """Which of `orders` (this ledger's, as stored) executed (not rejected) at more than one venue, or under
    two venue ids. An earlier run's duplicate is that run's finding, not every later run's."""
    executed: Counter[str] = Counter()
    for book in books.values():
        for order in book.values():
            if order["state"] != "rejected" and order["order_id"] in orders:
                executed[order["order_id"]] += 1
    return [f"order {oid} executed {n} times" for oid, n in executed.items() if n > 1]


# what the system of record may say of an order, given its venue's state for the order's venue order id
AGREES = {"filled": {"filled"}, "acked": {"acked"}, "cancelled": {"cancelled", "cancelled_by_venue"},
          "rejected": {"rejected"}}


def _venue_mismatch(stored: dict[tuple[str, str], list[dict[str, Any]]],
                    books: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """Orders whose state disagrees with their venue's book: a fill or cancel the system of record missed
    (a wrong balance), or an execution the venue never had."""
    wrong = []
    for rows in stored.values():
        for row in rows:
            if row["venue"] not in books or not row["venue_order_id"]:
                continue
            at_venue = books[row["venue"]].get(row["venue_order_id"])
            ref = f"{row['account']}/{row['client_order_id']} ({row['venue_order_id']} at {row['venue']})"
            if at_venue is None:
                if row["state"] in ("filled", "acked", "cancelled_by_venue"):
                    wrong.append(f"{ref}: {row['state']} here, unknown to the venue")
            elif row["state"] not in AGREES.get(at_venue["state"], set()):
                wrong.append(f"{ref}: {row['state']} here, {at_venue['state']} at the venue")
    return wrong


@dataclass
class Agreement:
    """The whole system of record against the venues' books, ledger aside."""

    orders: int = 0
    in_flight: list[str] = field(default_factory=list)       # neither final nor resting at a venue
    venue_mismatch: list[str] = field(default_factory=list)
    wrong_balances: list[str] = field(default_factory=list)
    duplicates_at_venues: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.in_flight or self.venue_mismatch or self.wrong_balances or self.duplicates_at_venues)


def agreement(dsn: str, venue_admin: list[str]) -> Agreement:
    """Does every order's state, and so every balance, agree with the venues right now?"""
    books = _venue_books(venue_admin)
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            cur = conn.cursor(row_factory=dict_row)
            cur.execute("SELECT id, account, client_order_id, state, order_type, venue, venue_order_id FROM orders")
            rows = cur.fetchall()
            accounts = sorted({r["account"] for r in rows})
            wrong = _wrong_balances(conn, accounts)
    except psycopg.OperationalError as exc:
        raise ReconcileError(f"cannot read the system of record: {str(exc).strip().splitlines()[0]}") from None
    stored = {(r["account"], r["client_order_id"]): [r] for r in rows}
    return Agreement(orders=len(rows),
                     in_flight=[f"{r['account']}/{r['client_order_id']}: {r['state']}" for r in rows
                                if r["state"] not in FINAL_STATES
                                and not (r["state"] == "acked" and r["order_type"] == "limit")],
                     venue_mismatch=_venue_mismatch(stored, books), wrong_balances=wrong,
                     duplicates_at_venues=_venue_duplicates(books, {str(r["id"]) for r in rows}))
