"""The reference stack's pure logic: circuit breaker, admission control, what a client's balance view means,
configuration checks and the venue wire protocol. Clocks are injected, nothing sleeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradestack.errors import InputError
from tradestack.refstack import protocol
from tradestack.refstack.admission import AdmissionControl
from tradestack.refstack.breaker import CircuitBreaker, State
from tradestack.refstack.config import Admission, Breaker, RouterConfig, load_config
from tradestack.refstack.loadgen import judge_assets

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- breaker ------------------------------------------------------------------------------------
def test_breaker_opens_once_and_reports_the_first_reason():
    clock = Clock()
    b = CircuitBreaker("ats", Breaker(), clock)
    assert b.allows()
    assert b.trip("no acknowledgement within 0.5 s") is True
    assert b.trip("session lost") is False  # already open: one alert, not one per failing order
    assert not b.allows() and b.reason == "no acknowledgement within 0.5 s" and b.trips == 1


def test_breaker_probes_after_cooldown_and_backs_off_while_the_venue_keeps_failing():
    clock = Clock()
    b = CircuitBreaker("ats", Breaker(cooldown_s=1.0, max_cooldown_s=4.0), clock)
    clock.now += 60  # long healthy: the first trip uses the base cooldown
    b.trip("down")
    assert b.cooldown == 1.0
    clock.now += 0.99
    assert not b.probe_due()
    clock.now += 0.02
    assert b.probe_due()
    b.probing()
    assert b.state is State.HALF_OPEN and not b.allows()  # a probe, not orders
    b.trip("probe failed")
    assert b.cooldown == 2.0
    b.probing()
    b.trip("probe failed")
    b.probing()
    b.trip("probe failed")
    assert b.cooldown == 4.0  # capped
    b.close()
    assert b.allows() and b.reason is None
    clock.now += 1.0
    b.trip("flapping")  # failing again soon after closing: keep backing off
    assert b.cooldown == 4.0
    b.close()
    clock.now += 100
    b.trip("much later")
    assert b.cooldown == 1.0


@pytest.mark.parametrize("record, what", [("record_system_reject", "reject storm"),
                                          ("record_venue_cancel", "cancel storm")])
def test_storms_open_the_circuit_only_within_the_window(record, what):
    clock = Clock()
    b = CircuitBreaker("ats", Breaker(window_s=1.0, reject_storm=3, cancel_storm=3), clock)
    for step in (0.0, 0.6, 1.1):  # t = 0, 0.6, 1.7: never 3 within one second
        clock.now += step
        assert getattr(b, record)() is False
    assert b.allows()
    clock.now += 0.1
    assert getattr(b, record)() is False
    clock.now += 0.1
    assert getattr(b, record)() is True  # t = 1.7, 1.8, 1.9: 3 within 1 s
    assert b.reason == f"{what}: 3 within 1 s"


# -- admission ----------------------------------------------------------------------------------
def test_admission_refuses_beyond_in_flight_and_recovers_when_requests_leave():
    a = AdmissionControl(Admission(max_in_flight=2, orders_per_second=1000, burst=1000), Clock())
    assert a.enter(False) is None and a.enter(True) is None
    refusal = a.enter(False)
    assert refusal is not None and refusal.reason == "in_flight" and refusal.retry_after_s == 1
    assert "2 requests in flight (limit 2)" in refusal.message
    a.leave()
    assert a.enter(False) is None


def test_admission_rate_limits_orders_only_with_a_burst_and_a_computed_retry_after():
    clock = Clock()
    a = AdmissionControl(Admission(max_in_flight=100, orders_per_second=0.5, burst=2), clock)
    for _ in range(2):
        assert a.enter(True) is None
        a.leave()
    refusal = a.enter(True)
    assert refusal is not None and refusal.reason == "rate" and refusal.retry_after_s == 2  # one token per 2 s
    assert a.enter(False) is None  # queries are not orders
    a.leave()
    clock.now += 2.0
    assert a.enter(True) is None


# -- what clients saw -------------------------------------------------------------------------
LIVE = {"account": "acct-00001", "cash": "1000.0000", "positions": [], "as_of": "2026-01-01T00:00:00Z",
        "stale": False}


@pytest.mark.parametrize("status, body, verdict", [
    (200, LIVE, "ok"),
    (200, {**LIVE, "cash": "0"}, "bad"),                      # a zero balance with nothing held
    (200, {**LIVE, "cash": "0", "positions": [{"symbol": "AAPL", "qty": 1}]}, "ok"),  # all invested is real
    (200, {**LIVE, "stale": True}, "bad"),                    # stale data must not come as a 200
    (200, {**LIVE, "account": "acct-00002"}, "bad"),          # someone else's balance
    (200, {"account": "acct-00001"}, "bad"),
    (200, None, "bad"),
    (503, {"error": "database unavailable", "last_known": {**LIVE, "stale": True}}, "stale"),
    (503, {"error": "database unavailable", "last_known": {**LIVE, "stale": False}}, "bad"),
    (503, {"error": "database unavailable"}, "unavailable"),
    (429, {"error": "too many requests"}, "unavailable"),
    (500, {"detail": "boom"}, "bad"),                         # the gateway failed instead of saying 503
    (502, None, "unavailable"),                               # the proxy lost the gateway: an error, no data
    (504, None, "unavailable"),
    (404, {"error": "no such account"}, "bad"),               # a real account shown as missing
])
def test_a_balance_view_is_judged_as_a_client_would_see_it(status, body, verdict):
    assert judge_assets("c1", "acct-00001", "http://gw", status, body).verdict == verdict


# -- configuration and protocol ---------------------------------------------------------------
def test_router_config_rejects_routes_to_unknown_venues_with_file_and_line(tmp_path: Path):
    path = tmp_path / "router.yaml"
    path.write_text("dsn: host=x\nvenues:\n  - {name: exchange, port: 9001}\nroutes:\n"
                    "  - {session: overnight, venues: [ats]}\n  - {session: overnight, venues: [exchange]}\n"
                    "breaker: {ack_timeout_s: -1}\n")
    with pytest.raises(InputError) as raised:
        load_config(RouterConfig, path)
    text = str(raised.value)
    assert f"{path}:7:" in text and "breaker.ack_timeout_s" in text  # field errors first, with their line


def test_router_config_cross_checks_routes(tmp_path: Path):
    path = tmp_path / "router.yaml"
    path.write_text("dsn: host=x\nvenues:\n  - {name: exchange, port: 9001}\nroutes:\n"
                    "  - {session: overnight, venues: [ats]}\n  - {session: overnight, venues: [exchange]}\n")
    with pytest.raises(InputError) as raised:
        load_config(RouterConfig, path)
    assert "route 'overnight' names unknown venue 'ats'" in str(raised.value)
    assert "session 'overnight' has more than one route" in str(raised.value)


def test_venue_order_ids_carry_the_attempt_and_map_back_to_the_order():
    vid = protocol.venue_order_id("3f1c", 2)
    assert vid == "3f1c.2" and protocol.order_id_of(vid) == "3f1c"
    assert protocol.decode(protocol.encode({"type": "ack", "venue_order_id": vid})) == \
        {"type": "ack", "venue_order_id": vid}
    with pytest.raises(ValueError):
        protocol.decode(b"[1, 2]\n")


def test_venue_duplicates_count_only_the_orders_asked_about():
    from tradestack.refstack.reconcile import _venue_duplicates

    def order(vid: str, state: str) -> dict:
        return {"venue_order_id": vid, "order_id": protocol.order_id_of(vid), "state": state}

    books = {"exchange": {"a.1": order("a.1", "filled"), "b.1": order("b.1", "rejected"), "c.1": order("c.1", "filled")},
             "ats": {"a.2": order("a.2", "acked"), "b.2": order("b.2", "filled"), "c.2": order("c.2", "filled")}}
    assert _venue_duplicates(books, {"a", "b"}) == ["order a executed 2 times"]   # b's first copy was rejected
    assert _venue_duplicates(books, {"b"}) == []
    assert sorted(_venue_duplicates(books, {"a", "c"})) == ["order a executed 2 times", "order c executed 2 times"]
