"""The database is cut (every connection dropped, new ones refused) while venues' fills and cancels are in
flight, many times in one run; every time the system of record must come back in line with the venues:
no order left non-final, every order's state as its venue's book says, every balance as its fills imply.

The venues fill market orders 60 ms after acknowledging them, as a market's fills come on their own, so
each cut lands between an acknowledgement that was recorded and a fill that cannot be; one cut also has
a venue cancel every resting order while nothing can be written.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time

import httpx
import psycopg
import pytest

from tradestack.refstack.local import LocalRefStack
from tradestack.refstack.reconcile import agreement

from .helpers import set_fault

pytestmark = pytest.mark.integration

CYCLES = 20
BURST = 40           # orders placed at once before each cut
CUT_S = (0.15, 0.4)  # how long the database stays cut


@pytest.fixture(scope="module")
def cut_stack():
    stack = LocalRefStack(accounts=40)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def _admin(stack: LocalRefStack) -> psycopg.Connection:
    """A superuser session on another database, so cutting `tradestack` does not cut the test itself."""
    assert stack.pg is not None
    return psycopg.connect(stack.pg.dsn.replace("dbname=tradestack", "dbname=postgres"), autocommit=True)


def _cut(admin: psycopg.Connection, on: bool) -> None:
    admin.execute(f"ALTER DATABASE tradestack ALLOW_CONNECTIONS {'false' if on else 'true'}")
    if on:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = 'tradestack' AND pid <> pg_backend_pid()")


async def _place_burst(gateway: str, cycle: int, rng: random.Random) -> None:
    """BURST orders, each retried until the gateway has committed it (201/200)."""
    async with httpx.AsyncClient(timeout=10) as http:
        async def one(i: int) -> None:
            limit = i % 4 == 0  # a quarter rest at the venue as limit orders
            body = {"account": f"acct-{rng.randrange(40):05d}", "client_order_id": f"cut-{cycle}-{i}",
                    "symbol": rng.choice(["AAPL", "MSFT", "0700.HK"]), "side": rng.choice(["buy", "sell"]),
                    "qty": rng.randint(1, 50), "session": "overnight" if i % 3 == 0 else "regular",
                    **({"type": "limit", "limit_price": "50"} if limit else {})}
            for _ in range(100):
                r = await http.post(f"{gateway}/v1/orders", json=body)
                if r.status_code in (200, 201):
                    return
                assert r.status_code in (429, 503), r.text
                await asyncio.sleep(0.05)
            raise AssertionError(f"order {body['client_order_id']} was never accepted")

        await asyncio.gather(*(one(i) for i in range(BURST)))


def _converge(stack: LocalRefStack, venues: list[str], timeout: float = 30.0) -> tuple[float, object]:
    start = time.monotonic()
    while True:
        state = agreement(stack.pg.dsn, venues)
        if state.ok or time.monotonic() - start > timeout:
            return time.monotonic() - start, state
        time.sleep(0.05)


def test_cutting_the_database_while_reports_are_in_flight_never_loses_one(cut_stack):
    endpoints = cut_stack.endpoints()
    gateway = endpoints["gateways"]["gateway-1"]
    venues = [v["admin"] for v in endpoints["venues"].values()]
    for admin_url in venues:
        set_fault(admin_url, "normal", fill_delay_ms=60)
    rng = random.Random(7)
    times: list[float] = []
    with _admin(cut_stack) as admin:
        try:
            for cycle in range(CYCLES):
                asyncio.run(_place_burst(gateway, cycle, rng))
                time.sleep(rng.uniform(0.0, 0.05))  # acks recorded, fills on their way
                _cut(admin, True)
                if cycle == CYCLES // 2:  # a venue cancels every resting order while nothing can be written
                    set_fault(venues[0], "cancel-all")
                    set_fault(venues[0], "normal", fill_delay_ms=60)
                time.sleep(rng.uniform(*CUT_S))
                _cut(admin, False)
                took, state = _converge(cut_stack, venues)
                assert state.ok, (cycle, state)
                times.append(took)
        finally:
            _cut(admin, False)
            for admin_url in venues:
                set_fault(admin_url, "normal")
    final = agreement(cut_stack.pg.dsn, venues)
    deadline = time.monotonic() + 15  # confirms follow commits; a session that was dropped confirms after logon
    while True:
        books = [httpx.get(f"{v}/admin/orders", timeout=10).json() for v in venues]
        if all(b["unconfirmed_reports"] == 0 for b in books) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    print(f"\n{CYCLES} cuts, {final.orders} orders: in line with the venues {statistics.median(times):.2f} s "
          f"(median) / {max(times):.2f} s (worst) after the database was writable again; reports resent by "
          f"venues: {sum(b['reports_resent'] for b in books)}")
    assert final.ok and final.orders >= CYCLES * BURST
    assert all(b["unconfirmed_reports"] == 0 for b in books), [b["unconfirmed_reports"] for b in books]
    filled = sum(1 for b in books for o in b["orders"] if o["state"] == "filled")
    cancelled = sum(1 for b in books for o in b["orders"] if o["state"] == "cancelled")
    assert filled > CYCLES * BURST // 2 and cancelled > 0  # the cuts really met fills and venue cancels
