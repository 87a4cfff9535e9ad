"""Upstream venue simulator: acknowledges and fills orders, with fault modes switched at run time.

Fault modes (admin endpoint `PUT /admin/fault`):
- `normal`;
- `down`: the order port stops listening and sessions are closed (connections refused);
- `hang`: connections are accepted and messages read, but nothing is ever answered;
- `slow`: every answer is delayed by `latency_ms`;
- `reject-all`: every new order is rejected with code SYSTEM;
- `cancel-all`: resting orders are cancelled now, and each new order is acknowledged, then cancelled;
- `flap`: alternates between down and normal every `flap_period_ms`.
Market orders fill at once at the reference price; limit orders rest until cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from . import protocol
from .config import VenueConfig

Mode = Literal["normal", "down", "hang", "slow", "reject-all", "cancel-all", "flap"]


class Fault(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Mode = "normal"
    latency_ms: int = Field(0, ge=0, le=600_000)
    flap_period_ms: int = Field(500, ge=50, le=600_000)


@dataclass
class VenueOrder:
    venue_order_id: str
    symbol: str
    side: str
    qty: int
    order_type: str
    limit_price: float | None
    state: str = "acked"  # acked (resting) | filled | cancelled | rejected
    fill_price: float | None = None
    reason: str | None = None
    owner: asyncio.StreamWriter | None = field(default=None, repr=False)

    def report(self) -> protocol.Message:
        if self.state == "filled":
            return {"type": "fill", "venue_order_id": self.venue_order_id, "qty": self.qty, "price": self.fill_price}
        if self.state == "cancelled":
            return {"type": "cancelled", "venue_order_id": self.venue_order_id, "reason": self.reason}
        if self.state == "rejected":
            return {"type": "reject", "venue_order_id": self.venue_order_id, "code": protocol.SYSTEM,
                    "reason": self.reason}
        return {"type": "ack", "venue_order_id": self.venue_order_id}


class Venue:
    """One simulated venue; `start()` opens its order port, `set_fault()` changes its behaviour."""

    def __init__(self, config: VenueConfig):
        self.config = config
        self.fault = Fault()
        self.orders: dict[str, VenueOrder] = {}
        self.fenced: set[str] = set()
        self.resends = 0  # `new` for an id already known: answered with its state, never doubled
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.StreamWriter] = set()
        self._flapper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- port -------------------------------------------------------------------------------
    async def start(self) -> None:
        await self._listen()

    async def stop(self) -> None:
        if self._flapper:
            self._flapper.cancel()
        await self._close_port()

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._session, self.config.host, self.config.port,
                                                      reuse_address=True)

    async def _close_port(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._sessions):
            writer.close()
        self._sessions.clear()

    # -- faults -----------------------------------------------------------------------------
    async def set_fault(self, fault: Fault) -> None:
        if self._flapper:
            self._flapper.cancel()
            self._flapper = None
        self.fault = fault
        if fault.mode == "down":
            await self._close_port()
            return
        await self._listen()
        if fault.mode == "cancel-all":
            for order in self.orders.values():
                if order.state == "acked":
                    self._cancel(order, "venue cancelled all resting orders")
                    self._push(order, order.report())
        if fault.mode == "flap":
            self._flapper = asyncio.create_task(self._flap(fault.flap_period_ms / 1000))

    async def _flap(self, period: float) -> None:
        while True:
            await self._close_port()
            await asyncio.sleep(period)
            await self._listen()
            await asyncio.sleep(period)

    # -- sessions ---------------------------------------------------------------------------
    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._sessions.add(writer)
        try:
            while line := await reader.readline():
                if self.fault.mode == "hang":
                    continue
                try:
                    message = protocol.decode(line)
                except ValueError as exc:
                    self._write(writer, {"type": "error", "reason": f"bad message: {exc}"})
                    continue
                if self.fault.mode == "slow" and self.fault.latency_ms:
                    task = asyncio.create_task(self._delayed(writer, message, self.fault.latency_ms / 1000))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                else:
                    self._handle(writer, message)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._sessions.discard(writer)
            writer.close()

    async def _delayed(self, writer: asyncio.StreamWriter, message: protocol.Message, delay: float) -> None:
        await asyncio.sleep(delay)
        self._handle(writer, message)

    def _handle(self, writer: asyncio.StreamWriter, message: protocol.Message) -> None:
        kind, vid = message["type"], str(message.get("venue_order_id", ""))
        if kind == "ping":
            self._write(writer, {"type": "pong", "id": message.get("id")})
        elif kind == "new":
            self._new(writer, vid, message)
        elif kind == "cancel":
            order = self.orders.get(vid)
            if order is not None and order.state == "acked":
                self._cancel(order, "cancelled on request")
                self._write(writer, order.report())
            else:
                self._write(writer, {"type": "cancel_reject", "venue_order_id": vid,
                                     "reason": "not resting" if order else "unknown order"})
        elif kind == "status":
            order = self.orders.get(vid)
            if order is None:
                self.fenced.add(vid)  # declared unknown: a late copy of it must never execute
                self._write(writer, {"type": "status", "venue_order_id": vid, "state": "unknown"})
            else:
                self._write(writer, {"type": "status", "venue_order_id": vid, "state": order.state,
                                     "price": order.fill_price, "reason": order.reason})
        else:
            self._write(writer, {"type": "error", "reason": f"unknown message type {kind!r}"})

    def _new(self, writer: asyncio.StreamWriter, vid: str, message: protocol.Message) -> None:
        if vid in self.fenced:
            self._write(writer, {"type": "reject", "venue_order_id": vid, "code": protocol.FENCED,
                                 "reason": "order id was reported unknown earlier and is fenced"})
            return
        known = self.orders.get(vid)
        if known is not None:
            self.resends += 1
            known.owner = writer
            self._write(writer, known.report())
            return
        try:
            order = VenueOrder(vid, str(message["symbol"]), str(message["side"]), int(message["qty"]),
                               str(message["order_type"]),
                               None if message.get("limit_price") is None else float(message["limit_price"]),
                               owner=writer)
        except (KeyError, TypeError, ValueError) as exc:
            self._write(writer, {"type": "reject", "venue_order_id": vid, "code": protocol.BUSINESS,
                                 "reason": f"malformed order: {exc}"})
            return
        self.orders[vid] = order
        if self.fault.mode == "reject-all":
            order.state, order.reason = "rejected", f"{self.config.name} is rejecting all orders"
            self._write(writer, order.report())
            return
        self._write(writer, {"type": "ack", "venue_order_id": vid})
        if self.fault.mode == "cancel-all":
            self._cancel(order, "venue cancelled all resting orders")
            self._write(writer, order.report())
        elif order.order_type == "market":
            order.state, order.fill_price = "filled", self.config.reference_price
            self._write(writer, order.report())

    @staticmethod
    def _cancel(order: VenueOrder, reason: str) -> None:
        order.state, order.reason = "cancelled", reason

    def _push(self, order: VenueOrder, message: protocol.Message) -> None:
        """An unsolicited report: to the session that sent the order, else to any open session."""
        target = order.owner if order.owner in self._sessions else next(iter(self._sessions), None)
        if target is not None:
            self._write(target, message)

    @staticmethod
    def _write(writer: asyncio.StreamWriter, message: protocol.Message) -> None:
        if not writer.is_closing():
            writer.write(protocol.encode(message))

    def book(self) -> dict[str, object]:
        return {"venue": self.config.name, "fault": self.fault.model_dump(), "resends": self.resends,
                "fenced": len(self.fenced),
                "orders": [{"venue_order_id": o.venue_order_id, "order_id": protocol.order_id_of(o.venue_order_id),
                            "state": o.state, "qty": o.qty, "price": o.fill_price, "reason": o.reason}
                           for o in self.orders.values()]}


def admin_app(venue: Venue) -> FastAPI:
    """The admin API: switch fault modes, read the book (for reconciliation)."""
    app = FastAPI(title=f"venue simulator {venue.config.name}", version="1")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "venue": venue.config.name}

    @app.get("/admin/fault")
    async def get_fault() -> Fault:
        return venue.fault

    @app.put("/admin/fault")
    async def put_fault(fault: Fault) -> Fault:
        await venue.set_fault(fault)
        return venue.fault

    @app.get("/admin/orders")
    async def orders() -> dict[str, object]:
        return venue.book()

    return app


async def serve(config: VenueConfig, stop: asyncio.Event) -> None:
    """Run the venue until `stop` is set."""
    from .httpserver import serve_app

    venue = Venue(config)
    await venue.start()
    try:
        await serve_app(admin_app(venue), config.host, config.admin_port, stop)
    finally:
        with contextlib.suppress(Exception):
            await venue.stop()
