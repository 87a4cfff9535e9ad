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


def _router():
    from tradestack.refstack.router import Router

    return Router(RouterConfig(dsn="host=127.0.0.1 port=1", venues=[{"name": "exchange", "port": 9001}],
                               routes=[{"session": "regular", "venues": ["exchange"]}]))


def test_a_heartbeat_on_a_connection_that_landed_on_a_demoted_node_is_retried_not_the_end_of_the_loop():
    """A failover's window: the pool's connection reaches the old primary, now read-only. The heartbeat loop
    took psycopg's ReadOnlySqlTransaction (an InternalError) for a bug and died, so the router never heartbeat again
    and its site's gateways stayed unready (make test: capacity verify's cut of hk1 waited 90 s on "no router
    heartbeat within 3 s" while the database answered)."""
    import asyncio

    import psycopg

    router = _router()
    tried = []

    async def read_only(sql, args=None):
        tried.append(sql)
        raise psycopg.errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction")
    router.execute = read_only  # type: ignore[method-assign]

    async def for_a_while() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(1.5, stop.set)
        await router.heartbeat_loop(stop)
    asyncio.run(for_a_while())
    assert len(tried) == 2 and router.db_ok is False  # tried again a second later, and says the database is away


def test_a_router_loop_that_dies_ends_the_router_naming_it_so_its_supervisor_starts_it_again():
    import asyncio

    router = _router()

    async def no_op(*args, **kwargs) -> None:
        return None

    async def dies(stop) -> None:
        raise ValueError("boom")

    async def waits(stop, *args) -> None:
        await stop.wait()
    router.pool.open = no_op  # type: ignore[method-assign]
    router.pool.close = no_op  # type: ignore[method-assign]
    router.writer.start = lambda: None  # type: ignore[method-assign]
    router.writer.stop = no_op  # type: ignore[method-assign]
    router.heartbeat_loop = dies  # type: ignore[method-assign]
    for name in ("dispatch_loop", "listen_loop", "reconcile_loop", "venue_loop"):
        setattr(router, name, waits)
    for venue in router.venues.values():
        venue.link.aclose = no_op  # type: ignore[method-assign]

    async def main() -> None:
        stop = asyncio.Event()
        with pytest.raises(RuntimeError, match=r"router router-1: loop dies ended: ValueError\('boom'\)"):
            await asyncio.wait_for(router.run(stop), 10)
    asyncio.run(main())


def test_a_client_session_notices_a_dead_server_in_seconds_but_waits_for_a_slow_answer():
    """Keepalive after a second idle and a 3 s limit on unacknowledged data: a site gone dark is left after 3 s
    (not the 10 s request timeout, which a parked order may need)."""
    import socket

    from tradestack.refstack.loadgen import DEAD_PEER_S, LoadPlan, app_socket

    sock = app_socket((socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("198.18.1.5", 8080)))
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == DEAD_PEER_S * 1000
    finally:
        sock.close()
    assert DEAD_PEER_S < LoadPlan(endpoints=("http://x",)).request_timeout_s
