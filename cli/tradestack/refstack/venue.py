"""Upstream venue simulator: acknowledges and fills orders, with fault modes switched at run time.

Fault modes (admin endpoint `PUT /admin/fault`):
- `normal`;
- `down`: the order port stops listening and sessions are closed (connections refused);
- `hang`: connections are accepted and messages read, but nothing is ever answered;
- `slow`: every answer is delayed by `latency_ms`;
- `reject-all`: every new order is rejected with code SYSTEM;
- `cancel-all`: resting orders are cancelled now, and each new order is acknowledged, then cancelled;
- `flap`: alternates between down and normal every `flap_period_ms`.
Market orders fill at the reference price, at once or `fill_delay_ms` after their ack (in any mode, as
a real market's fills come on their own); limit orders rest until cancelled.

Execution reports to a logged-on session carry a per-session `seq` and are kept until confirmed, and
sent again on the session's next logon or on its `resend` request (see `protocol`). An unsolicited
report (a venue cancel) goes to the session that sent the order, or, while that one is away, to any
session that is logged on; with none, it waits for the owner's next logon.
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
    fill_delay_ms: int = Field(0, ge=0, le=600_000, description="market orders fill this long after their ack")


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
    owner: str | None = field(default=None, repr=False)  # session id of the router that sent it

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
        self.reports_resent = 0  # unconfirmed reports sent again after a logon or a resend request
        self._server: asyncio.Server | None = None
        self._sessions: set[asyncio.StreamWriter] = set()
        self._session_of: dict[asyncio.StreamWriter, str] = {}    # connection -> logged-on session id
        self._live: dict[str, asyncio.StreamWriter] = {}          # session id -> its current connection
        self._outbox: dict[str, dict[int, protocol.Message]] = {}  # session id -> seq -> unconfirmed report
        self._next_seq: dict[str, int] = {}
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
                    self._push(order)
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
            session = self._session_of.pop(writer, None)
            if session is not None and self._live.get(session) is writer:
                del self._live[session]
            writer.close()

    async def _delayed(self, writer: asyncio.StreamWriter, message: protocol.Message, delay: float) -> None:
        await asyncio.sleep(delay)
        self._handle(writer, message)

    def _handle(self, writer: asyncio.StreamWriter, message: protocol.Message) -> None:
        kind, vid = message["type"], str(message.get("venue_order_id", ""))
        if kind == "ping":
            self._write(writer, {"type": "pong", "id": message.get("id")})
        elif kind == "logon":
            self._logon(writer, str(message.get("session") or ""))
        elif kind == "confirm":
            session = self._session_of.get(writer)
            seqs = message.get("seq")
            for seq in seqs if isinstance(seqs, list) else [seqs]:
                if session is not None:
                    self._outbox.get(session, {}).pop(seq, None)
        elif kind == "resend":
            session = self._session_of.get(writer)
            if session is not None:
                self._resend(session, writer)
        elif kind == "new":
            self._new(writer, vid, message)
        elif kind == "cancel":
            order = self.orders.get(vid)
            if order is not None and order.state == "acked":
                self._cancel(order, "cancelled on request")
                self._report(writer, order.report())
            else:
                self._write(writer, {"type": "cancel_reject", "venue_order_id": vid,
                                     "reason": "not resting" if order else "unknown order"})
        elif kind == "status" and isinstance(message.get("venue_order_ids"), list):
            self._write(writer, {"type": "statuses", "id": message.get("id"),
                                 "orders": [self._status(str(v)) for v in message["venue_order_ids"]]})
        elif kind == "status":
            self._write(writer, {"type": "status", **self._status(vid)})
        else:
            self._write(writer, {"type": "error", "reason": f"unknown message type {kind!r}"})

    def _status(self, vid: str) -> protocol.Message:
        order = self.orders.get(vid)
        if order is None:
            self.fenced.add(vid)  # declared unknown: a late copy of it must never execute
            return {"venue_order_id": vid, "state": "unknown"}
        return {"venue_order_id": vid, "state": order.state, "price": order.fill_price, "reason": order.reason}

    def _new(self, writer: asyncio.StreamWriter, vid: str, message: protocol.Message) -> None:
        if vid in self.fenced:
            self._report(writer, {"type": "reject", "venue_order_id": vid, "code": protocol.FENCED,
                                  "reason": "order id was reported unknown earlier and is fenced"})
            return
        known = self.orders.get(vid)
        if known is not None:
            self.resends += 1
            known.owner = self._session_of.get(writer, known.owner)
            self._report(writer, known.report())
            return
        try:
            order = VenueOrder(vid, str(message["symbol"]), str(message["side"]), int(message["qty"]),
                               str(message["order_type"]),
                               None if message.get("limit_price") is None else float(message["limit_price"]),
                               owner=self._session_of.get(writer))
        except (KeyError, TypeError, ValueError) as exc:
            self._report(writer, {"type": "reject", "venue_order_id": vid, "code": protocol.BUSINESS,
                                  "reason": f"malformed order: {exc}"})
            return
        self.orders[vid] = order
        if self.fault.mode == "reject-all":
            order.state, order.reason = "rejected", f"{self.config.name} is rejecting all orders"
            self._report(writer, order.report())
            return
        self._report(writer, {"type": "ack", "venue_order_id": vid})
        if self.fault.mode == "cancel-all":
            self._cancel(order, "venue cancelled all resting orders")
            self._report(writer, order.report())
        elif order.order_type == "market" and self.fault.fill_delay_ms:
            task = asyncio.create_task(self._fill_later(order, self.fault.fill_delay_ms / 1000))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif order.order_type == "market":
            order.state, order.fill_price = "filled", self.config.reference_price
            self._report(writer, order.report())

    async def _fill_later(self, order: VenueOrder, delay: float) -> None:
        await asyncio.sleep(delay)
        if order.state == "acked":
            order.state, order.fill_price = "filled", self.config.reference_price
            self._push(order)

    @staticmethod
    def _cancel(order: VenueOrder, reason: str) -> None:
        order.state, order.reason = "cancelled", reason

    # -- sessions and their reports ----------------------------------------------------------
    def _logon(self, writer: asyncio.StreamWriter, session: str) -> None:
        if not session:
            self._write(writer, {"type": "error", "reason": "logon needs a session id"})
            return
        previous = self._live.get(session)
        if previous is not None and previous is not writer:  # the newest connection of a session wins
            self._session_of.pop(previous, None)
            previous.close()
        self._session_of[writer], self._live[session] = session, writer
        self._write(writer, {"type": "logon_ack", "session": session, "next_seq": self._next_seq.get(session, 1),
                             "unconfirmed": len(self._outbox.get(session, {}))})
        self._resend(session, writer)

    def _resend(self, session: str, writer: asyncio.StreamWriter) -> None:
        for seq in sorted(self._outbox.get(session, {})):
            self.reports_resent += 1
            self._write(writer, {**self._outbox[session][seq], "resent": True})

    def _sequenced(self, session: str, message: protocol.Message) -> protocol.Message:
        seq = self._next_seq.get(session, 1)
        self._next_seq[session] = seq + 1
        numbered = {**message, "seq": seq}
        self._outbox.setdefault(session, {})[seq] = numbered
        return numbered

    def _report(self, writer: asyncio.StreamWriter, message: protocol.Message) -> None:
        """An execution report on the session that asked: numbered and kept until confirmed if it logged on."""
        session = self._session_of.get(writer)
        self._write(writer, self._sequenced(session, message) if session is not None else message)

    def _push(self, order: VenueOrder) -> None:
        """An unsolicited report: to the order's session, else to any logged-on session (which then owns the
        order), else kept for the owner's next logon. Sessions that never logged on get it unnumbered."""
        message = order.report()
        if order.owner is not None and order.owner not in self._live and self._live:
            order.owner = next(iter(self._live))
        if order.owner is not None:
            numbered = self._sequenced(order.owner, message)
            writer = self._live.get(order.owner)
            if writer is not None:
                self._write(writer, numbered)
            return
        anonymous = next(iter(self._sessions), None)
        if anonymous is not None:
            self._write(anonymous, message)

    def unconfirmed(self) -> int:
        return sum(len(box) for box in self._outbox.values())

    @staticmethod
    def _write(writer: asyncio.StreamWriter, message: protocol.Message) -> None:
        if not writer.is_closing():
            writer.write(protocol.encode(message))

    def book(self) -> dict[str, object]:
        return {"venue": self.config.name, "fault": self.fault.model_dump(), "resends": self.resends,
                "fenced": len(self.fenced), "unconfirmed_reports": self.unconfirmed(),
                "reports_resent": self.reports_resent,
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
