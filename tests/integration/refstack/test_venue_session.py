"""The venue session protocol on its own (a venue in-process, raw sockets): numbered reports kept until
confirmed, resent at logon and on request, unsolicited reports sent where a router can hear them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tradestack.refstack import protocol
from tradestack.refstack.config import VenueConfig
from tradestack.refstack.venue import Fault, Venue

pytestmark = pytest.mark.integration


class Session:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, venue: Venue, session: str | None) -> "Session":
        port = venue._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        s = cls(*await asyncio.open_connection("127.0.0.1", port))
        if session:
            s.send({"type": "logon", "session": session})
            assert (await s.recv())["type"] == "logon_ack"
        return s

    def send(self, message: dict[str, Any]) -> None:
        self.writer.write(protocol.encode(message))

    async def recv(self, timeout: float = 2.0) -> dict[str, Any]:
        return protocol.decode(await asyncio.wait_for(self.reader.readline(), timeout))

    async def nothing(self, timeout: float = 0.2) -> bool:
        try:
            await asyncio.wait_for(self.reader.readline(), timeout)
            return False
        except TimeoutError:
            return True

    async def close(self) -> None:
        self.writer.close()
        await asyncio.sleep(0.05)  # let the venue see the session end


def _new(vid: str, order_type: str = "market") -> dict[str, Any]:
    return {"type": "new", "venue_order_id": vid, "symbol": "AAPL", "side": "buy", "qty": 3, "order_type": order_type,
            "limit_price": "10" if order_type == "limit" else None}


async def _venue() -> Venue:
    venue = Venue(VenueConfig(name="exchange", port=0))
    await venue.start()
    return venue


def test_reports_are_numbered_kept_until_confirmed_and_resent_at_the_next_logon():
    async def scenario() -> None:
        venue = await _venue()
        r1 = await Session.open(venue, "router-1")
        r1.send(_new("o1.1"))
        ack, fill = await r1.recv(), await r1.recv()
        assert (ack["type"], ack["seq"], fill["type"], fill["seq"]) == ("ack", 1, "fill", 2)
        r1.send({"type": "confirm", "seq": [1]})  # the fill was never committed: not confirmed
        await asyncio.sleep(0.05)
        assert venue.unconfirmed() == 1
        await r1.close()
        again = Session(*await asyncio.open_connection("127.0.0.1", venue._server.sockets[0].getsockname()[1]))
        again.send({"type": "logon", "session": "router-1"})
        logon = await again.recv()
        assert logon == {"type": "logon_ack", "session": "router-1", "next_seq": 3, "unconfirmed": 1}
        resent = await again.recv()
        assert (resent["type"], resent["seq"], resent["resent"], resent["venue_order_id"]) == ("fill", 2, True, "o1.1")
        again.send({"type": "resend"})  # FIX ResendRequest: the same report once more
        assert (await again.recv())["seq"] == 2
        again.send({"type": "confirm", "seq": [2]})
        again.send({"type": "resend"})
        assert await again.nothing() and venue.unconfirmed() == 0
        await again.close()
        await venue.stop()

    asyncio.run(scenario())


def test_an_unsolicited_cancel_goes_to_a_live_session_when_the_orders_router_is_away():
    async def scenario() -> None:
        venue = await _venue()
        r1 = await Session.open(venue, "router-1")
        r1.send(_new("o2.1", "limit"))
        assert (await r1.recv())["type"] == "ack"
        r1.send({"type": "confirm", "seq": [1]})
        await r1.close()
        r2 = await Session.open(venue, "router-2")
        await venue.set_fault(Fault(mode="cancel-all"))
        cancelled = await r2.recv()
        assert (cancelled["type"], cancelled["venue_order_id"], cancelled["seq"]) == ("cancelled", "o2.1", 1)
        back = await Session.open(venue, "router-1")
        assert await back.nothing()  # router-2 now owns the report; router-1 gets it only if router-2 drops it
        assert venue.unconfirmed() == 1  # router-2's cancel, until it confirms it
        await back.close()
        await r2.close()
        await venue.stop()

    asyncio.run(scenario())


def test_a_fill_that_comes_later_waits_for_its_routers_logon_and_status_answers_in_one_message():
    async def scenario() -> None:
        venue = await _venue()
        await venue.set_fault(Fault(fill_delay_ms=100))
        r1 = await Session.open(venue, "router-1")
        r1.send(_new("o3.1"))
        assert (await r1.recv())["type"] == "ack"
        r1.send({"type": "confirm", "seq": [1]})
        await r1.close()
        await asyncio.sleep(0.2)  # filled while no router is logged on
        back = await Session.open(venue, "router-1")
        fill = await back.recv()
        assert (fill["type"], fill["venue_order_id"], fill["seq"]) == ("fill", "o3.1", 2)
        back.send({"type": "status", "id": "7", "venue_order_ids": ["o3.1", "never-sent.1"]})
        answer = await back.recv()
        assert answer["type"] == "statuses" and answer["id"] == "7"
        assert [(o["venue_order_id"], o["state"]) for o in answer["orders"]] == [("o3.1", "filled"),
                                                                                  ("never-sent.1", "unknown")]
        back.send(_new("never-sent.1"))  # declared unknown: fenced, it must never execute late
        assert (await back.recv())["code"] == protocol.FENCED
        await back.close()
        await venue.stop()

    asyncio.run(scenario())


def test_a_session_that_never_logs_on_gets_unnumbered_reports_and_nothing_is_kept_for_it():
    async def scenario() -> None:
        venue = await _venue()
        raw = await Session.open(venue, None)
        raw.send(_new("o4.1"))
        ack, fill = await raw.recv(), await raw.recv()
        assert "seq" not in ack and "seq" not in fill and venue.unconfirmed() == 0
        await raw.close()
        await venue.stop()

    asyncio.run(scenario())
