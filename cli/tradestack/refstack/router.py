"""Order router: takes accepted orders from the database and sends them to venues by policy.

- Exactly once across router instances: orders are claimed with FOR UPDATE SKIP LOCKED and a
  lease; an order whose router died is claimed again when the lease ends.
- Write-ahead: an order is marked `sent` (venue, venue order id) before it is written to the
  venue, and a resend reuses the venue order id, so a crash never doubles an order.
- Each venue has a circuit breaker: an ack timeout, a lost or refused session, a failed
  heartbeat, a storm of system rejects or of unsolicited cancels opens it at once. Orders then
  go to the next venue of their route if the policy allows, else are rejected with the reason.
- An order sent without an answer becomes `venue_unknown` (explicit, readable by the client)
  until the venue is reachable again and says what it knows; "unknown" fences the id at the
  venue and the order is routed again. Nothing is left pending or silently cancelled.
- No execution report is lost: a report is confirmed to the venue only once it is committed, and
  retried while the database is away; the venue sends unconfirmed reports again at every logon.
  Behind that, a sweep that keeps nothing in memory asks the venues about every non-final order
  left unchanged for `sweep_after_s`, so the system of record converges with the venues within
  seconds of the database being writable again, whatever was lost with a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from decimal import Decimal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from . import protocol
from .batching import BatchWriter
from .breaker import CircuitBreaker, State
from .config import RouterConfig
from .schema import NEW_ORDER_CHANNEL, RECONNECT_TIMEOUT_S, SESSION_OPTIONS, UNAVAILABLE, fast_reconnects
from .venuelink import NotSent, SessionLost, VenueLink

log = logging.getLogger("tradestack.router")
DB_ERRORS = UNAVAILABLE

# The claim reads only `accepted` orders through the partial index (state, created_at); orders
# whose router died mid-routing are put back to `accepted` by RELEASE_EXPIRED, run now and then.
CLAIM = """
UPDATE orders SET state = 'routing', router = %(me)s, updated_at = now(),
       lease_until = now() + make_interval(secs => %(lease)s)
WHERE id IN (SELECT id FROM orders WHERE state = 'accepted'
             ORDER BY created_at LIMIT %(n)s FOR UPDATE SKIP LOCKED)
RETURNING id, account, symbol, side, qty, order_type, limit_price, session, attempt, cancel_requested
"""
# The sweep pages through non-final orders by (created_at, id); its cursor is advanced only after a page is
# recorded, so a failed database call repeats that page instead of skipping it.
SWEEP = """
SELECT id::text, venue_order_id, state, created_at FROM orders
WHERE venue = %(venue)s AND venue_order_id IS NOT NULL
  AND state IN ('sent', 'venue_unknown', 'acked')
  AND ((state <> 'sent' AND updated_at < now() - make_interval(secs => %(after)s))
       OR (state = 'sent' AND sent_at < now() - make_interval(secs => %(lease)s)))
  AND (%(c_at)s::timestamptz IS NULL OR (created_at, id) > (%(c_at)s::timestamptz, %(c_id)s::uuid))
ORDER BY created_at, id LIMIT %(n)s
"""
RELEASE_EXPIRED = """
WITH expired AS (
    SELECT id, router FROM orders WHERE state = 'routing' AND lease_until < now() FOR UPDATE SKIP LOCKED),
released AS (
    UPDATE orders o SET state = 'accepted', router = NULL, updated_at = now()
    FROM expired WHERE o.id = expired.id RETURNING o.id, expired.router)
INSERT INTO order_events (order_id, state, detail)
SELECT id, 'accepted', 'lease of ' || coalesce(router, '?') || ' ended; routing again' FROM released
"""


class Venue:
    """A venue as the router sees it: its session, its breaker, where its sweep has got to."""

    def __init__(self, link: VenueLink, breaker: CircuitBreaker):
        self.link, self.breaker = link, breaker
        self.sweep_cursor: tuple[Any, str] | None = None  # (created_at, id) of the last order swept in this pass
        self.sweep_started = float("-inf")


class Router:
    def __init__(self, config: RouterConfig):
        self.config = config
        self.me = config.instance
        fast_reconnects()
        self.pool = AsyncConnectionPool(config.dsn, min_size=2, max_size=20, open=False, timeout=2,
                                        reconnect_timeout=RECONNECT_TIMEOUT_S,
                                        kwargs={"autocommit": True, "connect_timeout": 2,
                                                "application_name": f"tradestack-{self.me}",
                                                "options": SESSION_OPTIONS})
        self.writer = BatchWriter(self.pool)
        self.venues: dict[str, Venue] = {}
        for endpoint in config.venues:
            link = VenueLink(endpoint, self.me, self._reporter(endpoint.name), self._lost(endpoint.name))
            self.venues[endpoint.name] = Venue(link, CircuitBreaker(endpoint.name, config.breaker))
        self.wake = asyncio.Event()
        self.in_flight = 0
        self.cancels_in_flight: set[str] = set()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.db_ok = False
        self.registry = CollectorRegistry()
        self.routed = Counter("tradestack_router_orders_total", "orders by final routing outcome",
                              ["venue", "outcome"], registry=self.registry)
        self.trips = Counter("tradestack_router_circuit_trips_total", "circuit breaker openings", ["venue"],
                             registry=self.registry)
        self.open_gauge = Gauge("tradestack_router_circuit_open", "1 while a venue's circuit is not closed",
                                ["venue"], registry=self.registry)

    # -- database helpers ---------------------------------------------------------------------
    @asynccontextmanager
    async def db(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with self.pool.connection() as conn:
            yield conn

    async def execute(self, sql: str, args: Any = None) -> int:
        async with self.db() as conn:
            cur = await conn.execute(sql, args)
            return cur.rowcount

    async def transition(self, order_id: Any, state: str, *, venue: str | None = None, reason: str | None = None,
                         from_states: tuple[str, ...], extra: str = "", extra_args: tuple[Any, ...] = ()) -> bool:
        """Move an order to `state` only from `from_states` (so late or repeated reports are harmless),
        journalling the event in the same statement: one round trip."""
        return bool(await self.writer.execute(
            f"WITH moved AS (UPDATE orders SET state = %s, reason = %s, updated_at = now(){extra} "
            f"WHERE id = %s AND state = ANY(%s) RETURNING id) "
            f"INSERT INTO order_events (order_id, state, venue, detail) SELECT id, %s, %s, %s FROM moved",
            (state, reason, *extra_args, order_id, list(from_states), state, venue, reason)))

    async def alert(self, venue: str, kind: str, detail: str) -> None:
        log.warning("alert %s %s: %s", venue, kind, detail)
        with contextlib.suppress(*DB_ERRORS):
            await self.execute("INSERT INTO alerts (source, venue, kind, detail) VALUES (%s,%s,%s,%s)",
                               (self.me, venue, kind, detail))

    # -- breaker ------------------------------------------------------------------------------
    def trip(self, name: str, reason: str) -> None:
        if self.venues[name].breaker.trip(reason):
            self.on_tripped(name)

    def on_tripped(self, name: str) -> None:
        """A circuit has just opened: drop the session (answers on it are now in doubt) and alert."""
        breaker = self.venues[name].breaker
        self.trips.labels(name).inc()
        self.open_gauge.labels(name).set(1)
        self.venues[name].link.close(f"circuit opened: {breaker.reason}")
        self.spawn(self.alert(name, "circuit_open", breaker.reason or ""))

    def _lost(self, name: str) -> Any:
        def lost(why: str) -> None:
            if self.venues[name].breaker.state is State.CLOSED:
                self.trip(name, why)
        return lost

    # -- routing ------------------------------------------------------------------------------
    async def claim(self) -> list[dict[str, Any]]:
        room = self.config.concurrency - self.in_flight
        if room <= 0:
            return []
        async with self.db() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(CLAIM, {"me": self.me, "lease": self.config.lease_s, "n": min(room, self.config.batch)})
            return await cur.fetchall()

    async def route(self, order: dict[str, Any]) -> None:
        oid = order["id"]
        if order["cancel_requested"]:
            await self.transition(oid, "cancelled", reason="cancelled by client before reaching a venue",
                                  from_states=("routing",))
            return
        route = self.config.route_for(order["session"])
        if route is None:
            await self.reject(oid, None, f"no route for the {order['session']} session")
            return
        candidates = route.venues if route.reroute else route.venues[:1]
        tried: list[str] = []
        attempt = order["attempt"]
        for name in candidates:
            venue = self.venues[name]
            if not venue.breaker.allows():
                tried.append(f"{name} unavailable ({venue.breaker.reason})")
                continue
            attempt += 1
            vid = protocol.venue_order_id(str(oid), attempt)
            # write-ahead: recorded as sent (with its venue order id) before a byte goes to the venue
            if not await self.transition(oid, "sent", venue=name, from_states=("routing",),
                                         extra=", venue = %s, venue_order_id = %s, attempt = %s, sent_at = now()",
                                         extra_args=(name, vid, attempt)):
                return  # our lease ended and another router has it
            message = {"type": "new", "venue_order_id": vid, "symbol": order["symbol"], "side": order["side"],
                       "qty": order["qty"], "order_type": order["order_type"],
                       "limit_price": None if order["limit_price"] is None else str(order["limit_price"])}
            try:
                answer = await venue.link.request(message, ("order", vid), self.config.breaker.ack_timeout_s)
            except NotSent as exc:
                self.trip(name, str(exc))
                tried.append(f"{name} unreachable")
                await self.transition(oid, "routing", venue=name, reason=None, from_states=("sent",))
                continue
            except (SessionLost, TimeoutError) as exc:
                why = str(exc) if isinstance(exc, SessionLost) else \
                    f"no acknowledgement within {self.config.breaker.ack_timeout_s:g} s"
                self.trip(name, f"{why}")
                await self.transition(oid, "venue_unknown", venue=name, from_states=("sent",),
                                      reason=f"sent to {name}, which did not answer ({why}); "
                                             "its state is being reconciled with the venue")
                return
            if answer["type"] == "reject" and answer.get("code") == protocol.SYSTEM:
                if venue.breaker.record_system_reject():
                    self.on_tripped(name)
                tried.append(f"{name} rejected it: {answer.get('reason')}")
                await self.transition(oid, "routing", venue=name, from_states=("sent",))
                continue
            await self.record(name, answer)
            return
        await self.reject(oid, None, "not routed: " + "; ".join(tried))

    async def reject(self, oid: Any, venue: str | None, reason: str) -> None:
        self.routed.labels(venue or "none", "rejected").inc()
        await self.transition(oid, "rejected", venue=venue, reason=reason,
                              from_states=("routing", "sent", "venue_unknown"))

    # -- execution reports --------------------------------------------------------------------
    def _reporter(self, name: str) -> Any:
        async def report(message: protocol.Message) -> None:
            await self.record(name, message, unsolicited=True)
        return report

    async def record(self, name: str, message: protocol.Message, unsolicited: bool = False) -> None:
        """Apply a venue's report, retrying while the database is away; once committed, confirm it to the
        venue. Until then the venue keeps it, and sends it again if this process or its session dies."""
        delay = 0.05
        while True:
            try:
                await self.apply(name, message, unsolicited)
                break
            except DB_ERRORS as exc:
                if delay == 0.05:
                    log.warning("could not record %s from %s (%s); retrying", message["type"], name, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
        if "seq" in message:
            self.venues[name].link.confirm(int(message["seq"]))

    async def apply(self, name: str, message: protocol.Message, unsolicited: bool = False) -> None:
        """Record what a venue said about an order (idempotent: guarded by the states it may come from)."""
        kind, vid = message["type"], str(message.get("venue_order_id"))
        oid = protocol.order_id_of(vid)
        if kind == "ack":
            if await self.transition(oid, "acked", venue=name, from_states=("sent", "venue_unknown"),
                                     extra=", venue = %s, venue_order_id = %s", extra_args=(name, vid)):
                self.routed.labels(name, "acked").inc()
        elif kind == "fill":
            await self.fill(oid, name, vid, message)
        elif kind == "cancelled":
            await self.cancelled(oid, name, str(message.get("reason") or "cancelled by the venue"), unsolicited)
        elif kind == "reject":
            code, reason = message.get("code"), str(message.get("reason"))
            if code == protocol.SYSTEM:  # a late system reject: the order never executed; route it again
                await self.transition(oid, "accepted", venue=name, reason=None, from_states=("sent", "venue_unknown"),
                                      extra=", router = NULL")
            else:
                await self.reject(oid, name, f"{name} rejected it: {reason}")

    async def fill(self, oid: str, name: str, vid: str, message: protocol.Message) -> None:
        """Order filled, cash and position moved, event journalled: one statement, so all or nothing."""
        price = Decimal(str(message["price"]))
        count = await self.writer.execute("""
            WITH f AS (
                UPDATE orders SET state = 'filled', fill_price = %(price)s, venue = %(venue)s,
                       venue_order_id = %(vid)s, reason = NULL, updated_at = now()
                WHERE id = %(id)s AND state IN ('sent', 'venue_unknown', 'acked')
                RETURNING id, account, symbol, qty, CASE WHEN side = 'buy' THEN qty ELSE -qty END AS signed),
            cash AS (
                UPDATE accounts a SET cash = a.cash - f.signed * %(price)s, updated_at = now()
                FROM f WHERE a.account = f.account),
            pos AS (
                INSERT INTO positions (account, symbol, qty) SELECT account, symbol, signed FROM f
                ON CONFLICT (account, symbol) DO UPDATE SET qty = positions.qty + EXCLUDED.qty)
            INSERT INTO order_events (order_id, state, venue, detail)
            SELECT id, 'filled', %(venue)s, qty || ' @ ' || %(price)s FROM f""",
            {"price": price, "venue": name, "vid": vid, "id": oid})
        if count:
            self.routed.labels(name, "filled").inc()

    async def cancelled(self, oid: str, name: str, reason: str, unsolicited: bool) -> None:
        async with self.db() as conn:
            cur = await conn.execute("SELECT cancel_requested FROM orders WHERE id = %s", (oid,))
            row = await cur.fetchone()
        if row is None:
            return
        live = ("sent", "venue_unknown", "acked")
        if row[0]:
            await self.transition(oid, "cancelled", venue=name, reason="cancelled by client", from_states=live)
            return
        if await self.transition(oid, "cancelled_by_venue", venue=name, reason=f"{name} cancelled it: {reason}",
                                 from_states=live):
            self.routed.labels(name, "cancelled_by_venue").inc()
            if self.venues[name].breaker.record_venue_cancel():
                self.on_tripped(name)
                self.spawn(self.alert(name, "venue_mass_cancel",
                                      f"{name} is cancelling orders en masse: {reason}"))

    # -- loops ----------------------------------------------------------------------------------
    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _guarded_route(self, order: dict[str, Any]) -> None:
        try:
            await self.route(order)
        except DB_ERRORS as exc:  # the lease brings it back to a router once the database answers
            log.warning("order %s: database unavailable while routing (%s)", order["id"], exc)
        except Exception:
            log.exception("order %s: routing failed; it is retried when its lease ends", order["id"])
        finally:
            self.in_flight -= 1

    async def dispatch_loop(self, stop: asyncio.Event) -> None:
        full = False
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.config.poll_s)
            if self.config.claim_linger_s and not full:
                await asyncio.sleep(self.config.claim_linger_s)  # let the orders of the next few ms join
            self.wake.clear()
            try:
                orders = await self.claim()
            except DB_ERRORS as exc:
                log.warning("claim failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            for order in orders:
                self.in_flight += 1
                self.spawn(self._guarded_route(order))
            full = len(orders) >= self.config.batch
            if full:
                self.wake.set()  # more may be waiting

    async def listen_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(self.config.dsn, autocommit=True,
                                                                 connect_timeout=2) as conn:
                    await conn.execute(f"LISTEN {NEW_ORDER_CHANNEL}")
                    self.wake.set()
                    async for _ in conn.notifies():
                        self.wake.set()
            except DB_ERRORS:
                await asyncio.sleep(1)

    async def heartbeat_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.execute("INSERT INTO routers (instance, last_seen) VALUES (%s, now()) ON CONFLICT "
                                   "(instance) DO UPDATE SET last_seen = now()", (self.me,))
                if await self.execute(RELEASE_EXPIRED):
                    self.wake.set()
                if not self.db_ok:  # writable again: have the venues repeat whatever is still unconfirmed
                    for venue in self.venues.values():
                        venue.link.resend()
                self.db_ok = True
            except DB_ERRORS:
                self.db_ok = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    async def venue_loop(self, name: str, stop: asyncio.Event) -> None:
        """Heartbeat a healthy venue; probe an open circuit when its cooldown ends."""
        venue, timeout = self.venues[name], self.config.breaker.ack_timeout_s
        while not stop.is_set():
            breaker = venue.breaker
            if breaker.state is State.CLOSED:
                try:
                    await venue.link.ping(timeout)
                except NotSent as exc:
                    self.trip(name, str(exc))
                except (SessionLost, TimeoutError) as exc:
                    self.trip(name, f"heartbeat failed: {exc or f'no answer within {timeout:g} s'}")
            elif breaker.probe_due():
                breaker.probing()
                try:
                    await venue.link.ping(timeout)
                    breaker.close()
                    self.open_gauge.labels(name).set(0)
                    log.info("%s: circuit closed after probe", name)
                except (NotSent, SessionLost, TimeoutError) as exc:
                    venue.link.close("probe failed")
                    breaker.trip(f"probe failed: {exc or 'no answer'}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.1 if breaker.state is not State.CLOSED else 0.25)

    async def reconcile_loop(self, stop: asyncio.Event) -> None:
        """Sweep reachable venues for orders whose state may lag theirs, and forward client cancels."""
        while not stop.is_set():
            for name, venue in self.venues.items():
                if venue.breaker.state is State.CLOSED and venue.link.connected:
                    try:
                        await self.sweep(name, venue)
                        await self.forward_cancels(name, venue)
                    except DB_ERRORS as exc:
                        log.warning("sweep %s: %s", name, exc)
                    except (NotSent, SessionLost, TimeoutError):
                        pass  # the venue loop trips the breaker
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.3)

    async def sweep(self, name: str, venue: Venue) -> None:
        """One page of the sweep: ask the venue about non-final orders it has had long enough to have
        answered, and record wherever it knows more than we do. Depends on nothing kept in memory but a
        cursor; a failure (database or venue) raises before the cursor moves, so the page is swept again."""
        now = asyncio.get_running_loop().time()
        if venue.sweep_cursor is None and now - venue.sweep_started < self.config.sweep_every_s:
            return
        if venue.sweep_cursor is None:
            venue.sweep_started = now
        c_at, c_id = venue.sweep_cursor or (None, None)
        async with self.db() as conn:
            cur = await conn.execute(SWEEP, {"venue": name, "after": self.config.sweep_after_s,
                                             "lease": self.config.lease_s, "c_at": c_at, "c_id": c_id,
                                             "n": self.config.sweep_page})
            rows = await cur.fetchall()
        if rows:
            answers = await venue.link.statuses([vid for _, vid, _, _ in rows], self.config.breaker.ack_timeout_s * 4)
            known = {str(a.get("venue_order_id")): a for a in answers}
            for oid, vid, state, _ in rows:
                if vid in known:
                    await self.resolve(name, oid, vid, state, known[vid])
        venue.sweep_cursor = (rows[-1][3], rows[-1][0]) if len(rows) == self.config.sweep_page else None

    async def resolve(self, name: str, oid: str, vid: str, state: str, answer: protocol.Message) -> None:
        """Bring one order in line with what its venue says of it (nothing is written where they agree)."""
        venue_state = answer.get("state")
        if venue_state == "unknown":
            if state in ("sent", "venue_unknown"):  # never reached the market; the venue has now fenced the id
                if await self.transition(oid, "accepted", venue=name, from_states=("sent", "venue_unknown"),
                                         reason=None, extra=", router = NULL"):
                    self.wake.set()
            else:
                log.error("order %s is %s here but unknown to %s", oid, state, name)
        elif venue_state == "acked":
            if state != "acked":
                await self.apply(name, {"type": "ack", "venue_order_id": vid})
        elif venue_state == "filled":
            await self.apply(name, {"type": "fill", "venue_order_id": vid, "price": answer.get("price")})
        elif venue_state == "cancelled":
            await self.apply(name, {"type": "cancelled", "venue_order_id": vid, "reason": answer.get("reason")},
                             unsolicited=True)
        elif venue_state == "rejected":
            await self.apply(name, {"type": "reject", "venue_order_id": vid, "code": protocol.SYSTEM,
                                    "reason": answer.get("reason")})

    async def forward_cancels(self, name: str, venue: Venue) -> None:
        async with self.db() as conn:
            cur = await conn.execute("SELECT venue_order_id FROM orders WHERE venue = %s AND state = 'acked' "
                                     "AND cancel_requested LIMIT 500", (name,))
            rows = await cur.fetchall()
        for (vid,) in rows:
            await venue.link.send({"type": "cancel", "venue_order_id": vid}, self.config.breaker.ack_timeout_s)

    async def run(self, stop: asyncio.Event) -> None:
        await self.pool.open(wait=False)
        self.writer.start()
        loops = [self.dispatch_loop(stop), self.listen_loop(stop), self.heartbeat_loop(stop),
                 self.reconcile_loop(stop), *(self.venue_loop(n, stop) for n in self.venues)]
        running = [asyncio.create_task(loop) for loop in loops]
        stopped = asyncio.create_task(stop.wait())
        try:
            # a loop never ends before `stop`: one that does died of something unforeseen, and a router without
            # it (no heartbeat, no dispatch) must not look alive: raise it, so the process ends and its supervisor
            # starts a whole one (a dead heartbeat loop once left a site's gateways unready while the router ran)
            done, _ = await asyncio.wait({stopped, *running}, return_when=asyncio.FIRST_COMPLETED)
            died = next((t for t in running if t in done), None)
            if died is not None and not stop.is_set():
                error = died.exception() if not died.cancelled() else None
                raise RuntimeError(f"router {self.me}: loop {died.get_coro().__name__} ended: "
                                   f"{error!r}") from error
        finally:
            stopped.cancel()
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            if self.tasks:  # let orders in flight finish recording what the venue said
                await asyncio.wait(set(self.tasks), timeout=self.config.breaker.ack_timeout_s + 1)
            for venue in self.venues.values():
                await venue.link.aclose()
            await self.writer.stop(ConnectionError("router stopping"))
            await self.pool.close()

    def status(self) -> dict[str, Any]:
        return {"instance": self.me, "database": "ok" if self.db_ok else "unreachable",
                "writes": {"statements": self.writer.statements, "batches": self.writer.batches},
                "venues": [{**v.breaker.snapshot(), "connected": v.link.connected} for v in self.venues.values()]}


def admin_app(router: Router) -> FastAPI:
    app = FastAPI(title="tradestack order router", version="1")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "instance": router.me}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        status = router.status()
        ready = router.db_ok and any(v["state"] == "closed" for v in status["venues"])
        return JSONResponse({"ready": ready, **status}, status_code=200 if ready else 503)

    @app.get("/venues")
    async def venues() -> dict[str, Any]:
        return router.status()

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(router.registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def serve(config: RouterConfig, stop: asyncio.Event) -> None:
    from .httpserver import serve_app

    router = Router(config)
    worker = asyncio.create_task(router.run(stop))
    worker.add_done_callback(lambda _: stop.set())  # the router ended (a loop died): the process ends with it
    try:
        await serve_app(admin_app(router), config.host, config.port, stop)
    finally:
        stop.set()
        await worker
