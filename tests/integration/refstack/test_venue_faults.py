"""Each venue fault mode under client load: the router's breaker opens within its bound, orders are
rerouted or rejected with a reason, and after recovery nothing is pending, lost, doubled or silently cancelled."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest

from tradestack.refstack.loadgen import LoadPlan, run_load
from tradestack.refstack.reconcile import reconcile

from .conftest import ACCOUNTS, BREAKER
from .helpers import breaker, place, set_fault, settled, time_until

pytestmark = pytest.mark.integration

# The breaker must open within the ack timeout plus one heartbeat period and some scheduling slack.
DETECTION_BOUND_S = BREAKER.ack_timeout_s + 1.0


def _load(gateway: str, ledger: Path, **plan: object) -> tuple[str, object]:
    options = {"rate": 40.0, "duration_s": 4.0, "sessions": 8, "accounts": ACCOUNTS, "overnight_share": 1.0,
               "limit_share": 0.3, "seed": 7, **plan}
    return asyncio.run(run_load(LoadPlan(endpoints=(gateway,), **options), ledger))


def _venue_of_run(dsn: str, run: str) -> dict[tuple[str | None, str], int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT venue, state, count(*) FROM orders WHERE client_order_id LIKE %s "
                            "GROUP BY venue, state", (f"{run}-%",)).fetchall()
    return {(venue, state): n for venue, state, n in rows}


@pytest.mark.parametrize("mode, options", [
    ("down", {}), ("hang", {}), ("slow", {"latency_ms": 2000}), ("reject-all", {}), ("cancel-all", {}),
    ("flap", {"flap_period_ms": 300}),
], ids=["down", "hang", "slow", "reject-all", "cancel-all", "flap"])
def test_overnight_venue_fault_is_detected_and_no_order_is_lost_or_left_pending(
        mode, options, endpoints, gateway, router, tmp_path):
    venue = endpoints["venues"]["overnight-ats"]["admin"]
    trips_before = breaker(router, "overnight-ats")["trips"]
    ledger = tmp_path / "ledger.sqlite"
    with ThreadPoolExecutor(1) as pool:
        load = pool.submit(_load, gateway, ledger)
        time.sleep(0.7)
        set_fault(venue, mode, **options)
        try:
            detected = time_until(lambda: breaker(router, "overnight-ats")["trips"] > trips_before, timeout=10)
        finally:
            run, stats = load.result()
            set_fault(venue, "normal")
    recovered = time_until(lambda: breaker(router, "overnight-ats")["state"] == "closed", timeout=20)
    print(f"\n{mode}: breaker opened {detected:.2f} s after the fault; closed {recovered:.2f} s after recovery; "
          f"load {stats.summary()}")
    report = reconcile(ledger, endpoints["database"], [v["admin"] for v in endpoints["venues"].values()],
                       settle_s=20)
    document = report.to_dict()
    assert report.ok, document
    assert document["acked_missing"]["count"] == 0 and document["duplicates"]["venues"]["count"] == 0
    assert document["outcomes"].get("acked", 0) == stats.sent  # load this light is never refused
    assert detected < DETECTION_BOUND_S

    placed = _venue_of_run(endpoints["database"], run)
    if mode == "hang":  # orders in flight when it hung were in doubt, then settled by asking the venue
        with psycopg.connect(endpoints["database"]) as conn:
            in_doubt = conn.execute("SELECT count(DISTINCT e.order_id) FROM order_events e JOIN orders o "
                                    "ON o.id = e.order_id WHERE e.state = 'venue_unknown' AND "
                                    "o.client_order_id LIKE %s", (f"{run}-%",)).fetchone()[0]
        assert in_doubt > 0
    if mode == "cancel-all":
        assert placed.get(("overnight-ats", "cancelled_by_venue"), 0) > 0
        with psycopg.connect(endpoints["database"]) as conn:
            kinds = {k for (k,) in conn.execute("SELECT kind FROM alerts WHERE venue = 'overnight-ats'")}
        assert "venue_mass_cancel" in kinds
    else:  # the overnight route's alternate took the orders the venue could not
        assert placed.get(("exchange", "filled"), 0) + placed.get(("exchange", "acked"), 0) > 0


def test_without_an_alternate_orders_are_rejected_with_the_reason_not_left_pending(endpoints, gateway, router):
    exchange = endpoints["venues"]["exchange"]["admin"]
    with httpx.Client(timeout=10) as http:
        set_fault(exchange, "down")
        try:
            time_until(lambda: breaker(router, "exchange")["state"] != "closed", timeout=10)
            order = place(http, gateway, client_order_id="no-alt-1", session="regular").json()
            rejected = settled(http, gateway, order["id"], ("rejected",))
        finally:
            set_fault(exchange, "normal")
        assert rejected["reason"].startswith("not routed: exchange unavailable")
        time_until(lambda: breaker(router, "exchange")["state"] == "closed", timeout=20)
        later = place(http, gateway, client_order_id="no-alt-2", session="regular").json()
        assert settled(http, gateway, later["id"], ("filled",))["venue"] == "exchange"
