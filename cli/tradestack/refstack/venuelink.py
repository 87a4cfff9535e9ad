"""One router-side session to a venue: connect, send, await the first answer, hand on the rest."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Callable

from . import protocol
from .config import VenueEndpoint


class NotSent(ConnectionError):
    """The venue could not be reached, so the message was certainly not delivered."""


class SessionLost(ConnectionError):
    """The session ended after the message was written: the venue may or may not have it."""


Key = tuple[str, str]
ANSWERS = {"ack": "order", "fill": "order", "reject": "order", "cancelled": "order", "status": "status",
           "statuses": "statuses", "pong": "ping"}


class VenueLink:
    """`session` is the router's session id at the venue (its instance name): it logs on with it at every
    connect, so the venue sends again every report this router has not confirmed yet."""

    def __init__(self, endpoint: VenueEndpoint, session: str,
                 on_report: Callable[[protocol.Message], Awaitable[None]], on_lost: Callable[[str], None]):
        self.endpoint, self.session = endpoint, session
        self._on_report, self._on_lost = on_report, on_lost
        self._confirms: list[int] = []
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._waiters: dict[Key, asyncio.Future[protocol.Message]] = {}
        self._ids = itertools.count(1)
        self._connecting = asyncio.Lock()
        self._reports: set[asyncio.Task[None]] = set()

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def connect(self, timeout: float) -> None:
        async with self._connecting:
            if self.connected:
                return
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.endpoint.host, self.endpoint.port), timeout)
            except (OSError, TimeoutError) as exc:
                raise NotSent(f"cannot connect to {self.endpoint.name} at {self.endpoint.host}:"
                              f"{self.endpoint.port}: {exc or type(exc).__name__}") from exc
            self._writer = writer
            writer.write(protocol.encode({"type": "logon", "session": self.session}))
            self._reader_task = asyncio.create_task(self._read(reader, writer))

    def close(self, why: str = "closed by router") -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        self._fail_waiters(why)

    async def request(self, message: protocol.Message, key: Key, timeout: float) -> protocol.Message:
        """Send and wait for the answer named by `key`: NotSent, SessionLost or TimeoutError otherwise."""
        if not self.connected:
            await self.connect(timeout)
        writer = self._writer
        assert writer is not None
        future: asyncio.Future[protocol.Message] = asyncio.get_running_loop().create_future()
        self._waiters[key] = future
        try:
            writer.write(protocol.encode(message))
            return await asyncio.wait_for(future, timeout)
        finally:
            if self._waiters.get(key) is future:
                del self._waiters[key]

    async def send(self, message: protocol.Message, timeout: float) -> None:
        """Fire and forget (cancels): the answer arrives as a report."""
        if not self.connected:
            await self.connect(timeout)
        assert self._writer is not None
        self._writer.write(protocol.encode(message))

    async def ping(self, timeout: float) -> None:
        ident = str(next(self._ids))
        await self.request({"type": "ping", "id": ident}, ("ping", ident), timeout)

    async def statuses(self, venue_order_ids: list[str], timeout: float) -> list[protocol.Message]:
        """What the venue knows of each order, in one round trip (ids it never saw come back `unknown`)."""
        ident = str(next(self._ids))
        answer = await self.request({"type": "status", "id": ident, "venue_order_ids": venue_order_ids},
                                    ("statuses", ident), timeout)
        return list(answer.get("orders", []))

    def confirm(self, seq: int) -> None:
        """The report numbered `seq` is committed: the venue may forget it. Confirms written in one go per loop
        turn; one lost with the session is harmless (the venue resends, recording it again changes nothing)."""
        if not self._confirms:
            asyncio.get_running_loop().call_soon(self._flush_confirms)
        self._confirms.append(seq)

    def _flush_confirms(self) -> None:
        seqs, self._confirms = self._confirms, []
        if seqs and self.connected:
            assert self._writer is not None
            self._writer.write(protocol.encode({"type": "confirm", "seq": seqs}))

    def resend(self) -> None:
        """Ask for every unconfirmed report again (FIX ResendRequest)."""
        if self.connected:
            assert self._writer is not None
            self._writer.write(protocol.encode({"type": "resend"}))

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        why = f"{self.endpoint.name} closed the session"
        try:
            while line := await reader.readline():
                try:
                    message = protocol.decode(line)
                except ValueError:
                    continue
                kind = ANSWERS.get(message["type"])
                ident = str(message.get("id") if kind in ("ping", "statuses") else message.get("venue_order_id"))
                waiter = self._waiters.pop((kind, ident), None) if kind else None
                if waiter is not None and not waiter.done():
                    waiter.set_result(message)
                    continue
                if kind == "order":  # recorded concurrently: the session keeps reading while the database writes
                    task = asyncio.create_task(self._on_report(message))
                    self._reports.add(task)
                    task.add_done_callback(self._reports.discard)
        except (ConnectionError, OSError) as exc:
            why = f"session to {self.endpoint.name} lost: {exc}"
        finally:
            if self._writer is writer:
                self._writer = None
                writer.close()
                self._fail_waiters(why)
                self._on_lost(why)

    def _fail_waiters(self, why: str) -> None:
        waiters, self._waiters = self._waiters, {}
        for future in waiters.values():
            if not future.done():
                future.set_exception(SessionLost(why))

    async def aclose(self) -> None:
        self.close()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader_task
