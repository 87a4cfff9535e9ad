"""Several routers share the work exactly once; a router killed mid-load loses nothing and doubles nothing."""

from __future__ import annotations

import asyncio
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from tradestack.refstack.loadgen import LoadPlan, run_load
from tradestack.refstack.reconcile import reconcile

from .conftest import ACCOUNTS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def second_router(refstack):
    refstack.add_router("router-2")
    yield "router-2"
    refstack.stop_service("router-2")


def _run(gateway, ledger, seconds, rate=120):
    plan = LoadPlan(endpoints=(gateway,), rate=rate, duration_s=seconds, sessions=12, accounts=ACCOUNTS,
                    overnight_share=0.5, assets_every_s=0, seed=3)
    return asyncio.run(run_load(plan, ledger))


def _sent_events(dsn, run):
    with psycopg.connect(dsn) as conn:
        per_order = conn.execute(
            "SELECT o.router, count(e.id) FROM orders o LEFT JOIN order_events e ON e.order_id = o.id "
            "AND e.state = 'sent' WHERE o.client_order_id LIKE %s GROUP BY o.id, o.router", (f"{run}-%",)).fetchall()
    return per_order


def test_two_routers_each_route_a_share_and_every_order_is_sent_exactly_once(second_router, endpoints, gateway,
                                                                             tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    run, stats = _run(gateway, ledger, 4)
    report = reconcile(ledger, endpoints["database"], [v["admin"] for v in endpoints["venues"].values()])
    assert report.ok, report.to_dict()
    per_order = _sent_events(endpoints["database"], run)
    assert len(per_order) == stats.sent
    assert {count for _, count in per_order} == {1}  # claimed once, sent once
    assert {router for router, _ in per_order} == {"router-1", "router-2"}


def test_a_router_killed_mid_load_leaves_no_order_lost_doubled_or_pending(second_router, refstack, endpoints,
                                                                          gateway, tmp_path):
    ledger = tmp_path / "ledger.sqlite"
    with ThreadPoolExecutor(1) as pool:
        load = pool.submit(_run, gateway, ledger, 5, 150)
        time.sleep(2)
        refstack.stop_service(second_router, signal.SIGKILL)  # no goodbye: leases and in-flight sends orphaned
        run, stats = load.result()
    report = reconcile(ledger, endpoints["database"], [v["admin"] for v in endpoints["venues"].values()],
                       settle_s=30)
    document = report.to_dict()
    print(f"\nrouter-2 killed: settled {document['settle_wait_s']} s after the load; {document['final_states']}")
    assert report.ok, document
    assert document["duplicates"]["venues"]["count"] == 0 and document["acked_missing"]["count"] == 0
    assert document["outcomes"] == {"acked": stats.sent}
    with psycopg.connect(endpoints["database"]) as conn:
        taken_over = conn.execute("SELECT count(*) FROM orders WHERE client_order_id LIKE %s AND router = 'router-2' "
                                  "AND state NOT IN ('filled', 'acked')", (f"{run}-%",)).fetchone()[0]
    assert taken_over == 0


def _orphan(dsn: str, state: str, **columns: object) -> str:
    """An order left behind by a router that died ('ghost'), as it would be in the database."""
    import uuid

    oid = str(uuid.uuid4())
    fields = {"id": oid, "account": "acct-00009", "client_order_id": f"orphan-{oid[:8]}", "symbol": "AAPL",
              "side": "buy", "qty": 2, "order_type": "market", "session": "regular", "state": state,
              "router": "ghost", **columns}
    with psycopg.connect(dsn) as conn:
        conn.execute(f"INSERT INTO orders ({', '.join(fields)}) VALUES ({', '.join(['%s'] * len(fields))})",
                     list(fields.values()))
    return oid


def _state(dsn: str, oid: str) -> tuple[str, int, str | None]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT state, attempt, venue_order_id FROM orders WHERE id = %s", (oid,)).fetchone()


def _wait_filled(dsn: str, oid: str, timeout: float = 15) -> tuple[str, int, str | None]:
    deadline = time.monotonic() + timeout
    while (row := _state(dsn, oid))[0] != "filled":
        assert time.monotonic() < deadline, row
        time.sleep(0.1)
    return row


def _venue_book(endpoints: dict, venue: str) -> dict:
    import httpx

    return httpx.get(f"{endpoints['venues'][venue]['admin']}/admin/orders", timeout=10).json()


def test_an_order_claimed_by_a_dead_router_is_routed_when_its_lease_ends(endpoints):
    dsn = endpoints["database"]
    oid = _orphan(dsn, "routing", lease_until="2020-01-01T00:00:00Z")
    state, attempt, vid = _wait_filled(dsn, oid)
    assert attempt == 1 and vid == f"{oid}.1"


def test_an_order_sent_by_a_dead_router_that_never_reached_the_venue_is_fenced_then_routed_again(endpoints):
    dsn = endpoints["database"]
    oid = _orphan(dsn, "sent", venue="exchange", attempt=1, sent_at="2020-01-01T00:00:00Z")
    with psycopg.connect(dsn) as conn:  # its write-ahead said: attempt 1 went to the exchange
        conn.execute("UPDATE orders SET venue_order_id = %s WHERE id = %s", (f"{oid}.1", oid))
    state, attempt, vid = _wait_filled(dsn, oid)
    assert (attempt, vid) == (2, f"{oid}.2")  # the exchange said "unknown" for .1, which it now refuses forever
    executions = [o for o in _venue_book(endpoints, "exchange")["orders"] if o["order_id"] == oid]
    assert [o["venue_order_id"] for o in executions] == [f"{oid}.2"]


def test_an_order_sent_by_a_dead_router_that_did_reach_the_venue_is_not_sent_twice(endpoints):
    import socket

    from tradestack.refstack import protocol

    dsn = endpoints["database"]
    oid = _orphan(dsn, "sent", venue="exchange", attempt=1, sent_at="2020-01-01T00:00:00Z")
    with psycopg.connect(dsn) as conn:
        conn.execute("UPDATE orders SET venue_order_id = %s WHERE id = %s", (f"{oid}.1", oid))
    host, port = endpoints["venues"]["exchange"]["orders"].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:  # what the dead router sent first
        sock.sendall(protocol.encode({"type": "new", "venue_order_id": f"{oid}.1", "symbol": "AAPL", "side": "buy",
                                      "qty": 2, "order_type": "market", "limit_price": None}))
        answers = sock.makefile("rb")
        assert b'"ack"' in answers.readline() and b'"fill"' in answers.readline()
    state, attempt, vid = _wait_filled(dsn, oid)
    assert (attempt, vid) == (1, f"{oid}.1")  # the venue's answer was taken, no second attempt
    executions = [o for o in _venue_book(endpoints, "exchange")["orders"] if o["order_id"] == oid]
    assert len(executions) == 1
