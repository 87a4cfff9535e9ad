"""The venue wire protocol: one JSON object per line over a persistent TCP session.

Router to venue: `logon`, `new`, `cancel`, `status`, `confirm`, `resend`, `ping`. Venue to router:
`logon_ack`, `ack`, `fill`, `reject`, `cancelled`, `status` (`statuses` for a `status` naming several
`venue_order_ids`), `pong`. Venue order ids are chosen by the
router, so a `new` sent twice (a resend after a crash) is recognised by the venue instead of doubling
the order.

Execution reports are never lost (the way FIX sessions work): a router logs on with its session id
(its instance name, which outlives any one TCP connection); the venue numbers every execution report
(`ack`, `fill`, `reject`, `cancelled`) of that session with `seq` and keeps it until the router sends
`confirm` for it, which the router does only once the report is committed. On every logon, and on a
`resend` request, the venue sends again every report still unconfirmed, with its original `seq`.
A report the router has already recorded is harmless twice (applying one is idempotent).
"""

from __future__ import annotations

import json
from typing import Any

Message = dict[str, Any]

# Reject codes: SYSTEM means the venue cannot take orders now (the router may reroute);
# FENCED means the id was declared unknown earlier and may not appear late; the rest are final.
SYSTEM, FENCED, BUSINESS = "SYSTEM", "FENCED", "BUSINESS"


REPORTS = frozenset({"ack", "fill", "reject", "cancelled"})


def encode(message: Message) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> Message:
    value = json.loads(line)
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise ValueError("a message is a JSON object with a string 'type'")
    return value


def venue_order_id(order_id: str, attempt: int) -> str:
    """The id an order carries at a venue; a new attempt (after a venue said 'unknown') gets a new one."""
    return f"{order_id}.{attempt}"


def order_id_of(venue_order_id_: str) -> str:
    return venue_order_id_.rsplit(".", 1)[0]
