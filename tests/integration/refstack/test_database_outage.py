"""The database crashes mid-load and comes back: orders wait for it (parked) and balance screens get honest 503s
meanwhile, then recovery, and the clients' ledger reconciles to zero acknowledged orders lost, zero duplicates and
no zero balance ever shown."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tradestack.refstack.local import LocalRefStack
from tradestack.refstack.loadgen import LoadPlan, run_load
from tradestack.refstack.reconcile import reconcile

from .helpers import time_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def crash_stack():
    """A stack of its own: crashing the shared one's database would couple these tests to the others."""
    stack = LocalRefStack(accounts=100)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def test_database_crash_mid_load_parks_orders_loses_nothing_and_never_shows_a_zero_balance(crash_stack, tmp_path):
    """Orders that arrive while the database is away wait for it (parked, the gateway staying ready) and are
    answered once committed: the clients see latency, not errors; balance screens meanwhile get 503 with the
    last value, marked stale."""
    endpoints = crash_stack.endpoints()
    gateway = endpoints["gateways"]["gateway-1"]
    ledger = tmp_path / "ledger.sqlite"
    plan = LoadPlan(endpoints=(gateway,), rate=50, duration_s=9, sessions=10, accounts=100, assets_every_s=0.5,
                    overnight_share=0.2, give_up_s=30, seed=11)
    order = {"account": "acct-00050", "client_order_id": "crash-1", "symbol": "AAPL", "side": "buy", "qty": 1}
    with httpx.Client(timeout=20) as http, ThreadPoolExecutor(2) as pool:
        seen = http.get(f"{gateway}/v1/accounts/acct-00050/assets").json()  # the gateway now knows a value
        load = pool.submit(lambda: asyncio.run(run_load(plan, ledger)))
        time.sleep(2.5)
        crash_stack.pg.stop("immediate")  # a crash: recovery from WAL on restart
        crashed = time.monotonic()
        during = http.get(f"{gateway}/v1/accounts/acct-00050/assets")
        placing = pool.submit(lambda: (http.post(f"{gateway}/v1/orders", json=order), time.monotonic()))
        ready_meanwhile = http.get(f"{gateway}/readyz")
        time.sleep(2.0)
        restarting = time.monotonic()  # the database may commit before start() returns
        crash_stack.pg.start()
        restarted = time.monotonic()
        placed, answered = placing.result(timeout=30)
        back = time_until(lambda: http.get(f"{gateway}/readyz").status_code == 200, timeout=30)
        run, stats = load.result()
        metrics = http.get(f"{gateway}/metrics").text
    print(f"\ndatabase down {restarted - crashed:.1f} s; the order placed meanwhile answered "
          f"{answered - restarting:.2f} s after the restart began; load {stats.summary()}")

    assert during.status_code == 503 and int(during.headers["Retry-After"]) >= 1
    last = during.json()["last_known"]
    assert last["stale"] is True and last["as_of"] == seen["as_of"] and last["cash"] == seen["cash"]
    assert placed.status_code == 201, placed.text  # parked, then committed: one answer, after the commit
    assert answered > restarting
    assert ready_meanwhile.status_code == 200 and "parking" in ready_meanwhile.json(), ready_meanwhile.text
    parked = next(float(line.split()[-1]) for line in metrics.splitlines()
                  if line.startswith("tradestack_gateway_orders_parked_total "))
    assert parked >= 1
    assert stats.acked_first == stats.sent and stats.retries == 0, stats.summary()  # nobody had to try again

    report = reconcile(ledger, endpoints["database"], [v["admin"] for v in endpoints["venues"].values()],
                       settle_s=30)
    document = report.to_dict()
    assert report.ok, document
    assert document["acked_missing"]["count"] == 0
    assert document["duplicates"] == {"database": 0, "venues": {"count": 0, "sample": []}}
    assert document["bad_balances_seen"]["count"] == 0
    assert document["assets_seen"].get("stale", 0) + document["assets_seen"].get("unavailable", 0) > 0
    assert document["outcomes"].get("acked", 0) == stats.sent  # every order got through


def test_after_a_long_outage_the_services_try_the_database_again_within_seconds(crash_stack):
    """A database away for 45 s (a site cut off from its primary for a while): once it is back, gateway and router
    serve again within seconds. Pools used to double the wait between reconnection attempts for up to an hour, so
    after 45 s away their next attempt came only about 18 s after the database was back."""
    gateway = crash_stack.endpoints()["gateways"]["gateway-1"]
    with httpx.Client(timeout=5) as http:
        def ready() -> bool:  # the gateway answers from the database and a router's heartbeat is fresh in it
            try:
                answer = http.get(f"{gateway}/readyz")
                return answer.status_code == 200 and answer.json().get("routers", 0) > 0
            except httpx.HTTPError:
                return False

        time_until(ready, timeout=30, interval=0.2)
        crash_stack.pg.stop("immediate")
        stopped, seen = time.monotonic(), []
        while time.monotonic() - stopped < 45:  # asked every second, as its load balancer asks (more often)
            seen.append((time.monotonic() - stopped, http.get(f"{gateway}/readyz")))
            time.sleep(1)
        crash_stack.pg.start()
        back = time_until(ready, timeout=120, interval=0.2)
    print(f"\nafter 45 s without the database: gateway and router ready {back:.1f} s after it was back")
    # while orders may be parked it stays ready; away longer than that, it says it is not, and why
    assert seen[0][1].status_code == 200 and "parking" in seen[0][1].json(), seen[0][1].text
    late = [answer for t, answer in seen if t > 10]
    assert late and all(a.status_code == 503 and a.json()["ready"] is False and "parking" not in a.json()
                        for a in late), [a.text for a in late[:3]]
    assert back <= 10
