"""The order flow through real processes: gateway -> PostgreSQL -> router -> venue -> fills and balances."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import pytest

from .helpers import place, settled

pytestmark = pytest.mark.integration


def test_market_order_is_acknowledged_after_commit_then_filled_and_balances_follow(http, gateway):
    before = http.get(f"{gateway}/v1/accounts/acct-00002/assets").json()
    response = place(http, gateway, account="acct-00002", client_order_id="flow-1", qty=3, symbol="MSFT")
    assert response.status_code == 201
    order = response.json()
    assert order["state"] in ("accepted", "routing", "sent", "acked", "filled")  # committed before the answer
    filled = settled(http, gateway, order["id"], ("filled",))
    assert filled["venue"] == "exchange" and Decimal(filled["fill_price"]) == Decimal("100")
    after = http.get(f"{gateway}/v1/accounts/acct-00002/assets").json()
    assert Decimal(before["cash"]) - Decimal(after["cash"]) == Decimal("300")
    # the package's other modules trade on the same stack, in whatever order the run gives them: judge the change
    assert _held(after, "MSFT") - _held(before, "MSFT") == 3 and after["stale"] is False


def _held(assets: dict, symbol: str) -> int:
    return sum(p["qty"] for p in assets["positions"] if p["symbol"] == symbol)


def test_overnight_limit_order_rests_at_the_overnight_venue_and_can_be_cancelled(http, gateway):
    order = place(http, gateway, client_order_id="flow-2", type="limit", limit_price="50.25",
                  session="overnight").json()
    resting = settled(http, gateway, order["id"], ("acked",))
    assert resting["venue"] == "overnight-ats"
    cancel = http.post(f"{gateway}/v1/orders/{order['id']}/cancel")
    assert cancel.status_code == 202 and cancel.json()["cancel_requested"] is True
    done = settled(http, gateway, order["id"], ("cancelled",))
    assert done["reason"] == "cancelled by client"
    again = http.post(f"{gateway}/v1/orders/{order['id']}/cancel")
    assert again.status_code == 409 and "already cancelled" in again.json()["detail"]


def test_a_client_finds_its_order_by_its_own_id(http, gateway):
    order = place(http, gateway, client_order_id="flow-3").json()
    found = http.get(f"{gateway}/v1/accounts/acct-00001/orders/flow-3")
    assert found.status_code == 200 and found.json()["id"] == order["id"]
    assert http.get(f"{gateway}/v1/accounts/acct-00001/orders/never-sent").status_code == 404


def test_retries_with_the_same_client_order_id_return_the_same_order_never_a_second(http, gateway):
    first = place(http, gateway, client_order_id="idem-1", qty=7)
    assert first.status_code == 201
    retry = place(http, gateway, client_order_id="idem-1", qty=7)
    assert retry.status_code == 200 and retry.json()["id"] == first.json()["id"]

    def post(_: int) -> httpx.Response:  # a burst of concurrent retries, as after a timeout storm
        with httpx.Client(timeout=10) as client:
            return place(client, gateway, client_order_id="idem-2", qty=2)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(post, range(32)))
    assert sorted({a.status_code for a in answers}) in ([200, 201], [201])
    assert [a.status_code for a in answers].count(201) == 1
    assert len({a.json()["id"] for a in answers}) == 1


def test_orders_committed_together_still_get_each_their_own_answer(http, gateway):
    # Concurrent orders share a commit: an unknown account, a reused client id and a retry among them
    # must get their own 404, 409 and 200 while every other order in the same batch is placed.
    place(http, gateway, client_order_id="group-taken", qty=1)
    wanted = [{"client_order_id": f"group-{i}"} for i in range(24)]
    wanted += [{"account": "acct-99998", "client_order_id": "group-x"},
               {"client_order_id": "group-taken", "qty": 5}, {"client_order_id": "group-taken", "qty": 1}]

    def post(fields: dict) -> httpx.Response:
        with httpx.Client(timeout=10) as client:
            return place(client, gateway, **fields)

    with ThreadPoolExecutor(len(wanted)) as pool:
        answers = list(pool.map(post, wanted))
    assert [a.status_code for a in answers] == [201] * 24 + [404, 409, 200]
    assert len({a.json()["id"] for a in answers[:24]}) == 24
    assert all(a.json()["state"] in ("accepted", "routing", "sent", "acked", "filled") for a in answers[:24])


def test_reusing_a_client_order_id_for_a_different_order_is_a_conflict(http, gateway):
    place(http, gateway, client_order_id="idem-3", qty=1)
    clash = place(http, gateway, client_order_id="idem-3", qty=2)
    assert clash.status_code == 409
    assert "different parameters" in clash.json()["detail"]


def test_bad_requests_get_4xx_with_a_readable_message(http, gateway):
    unknown = place(http, gateway, account="acct-99999", client_order_id="bad-1")
    assert unknown.status_code == 404 and unknown.json()["detail"] == "no account 'acct-99999'"
    invalid = http.post(f"{gateway}/v1/orders", json={"account": "acct-00001", "client_order_id": "bad-2",
                                                      "symbol": "AAPL", "side": "hold", "qty": 0, "type": "limit"})
    assert invalid.status_code == 422
    fields = {p["field"] for p in invalid.json()["problems"]}
    assert {"body.side", "body.qty"} <= fields
    assert http.get(f"{gateway}/v1/orders/not-a-uuid").status_code == 422


def test_health_readiness_and_metrics(http, gateway, router):
    assert http.get(f"{gateway}/healthz").json()["status"] == "ok"
    ready = http.get(f"{gateway}/readyz")
    assert ready.status_code == 200 and ready.json()["database"] == "ok" and ready.json()["routers"] >= 1
    place(http, gateway, client_order_id="metrics-1")
    text = http.get(f"{gateway}/metrics").text
    assert 'tradestack_gateway_requests_total{code="201",method="POST",route="/v1/orders"}' in text
    assert 'tradestack_orders{state="filled"}' in text
    assert "tradestack_gateway_admission_refused_total" in text
    venues = http.get(f"{router}/venues").json()["venues"]
    assert {v["venue"]: v["state"] for v in venues} == {"exchange": "closed", "overnight-ats": "closed"}
    assert "tradestack_router_orders_total" in http.get(f"{router}/metrics").text
