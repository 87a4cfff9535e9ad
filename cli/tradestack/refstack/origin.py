"""Whose request it is: the toolkit's own load (drills, `capacity verify`, soaks, load spikes) says so with
`X-Tradestack-Origin: toolkit`; everything else is a client's. Counted apart so the stack's observed peak
(`capacity peak`, infra/monitoring/rules) leaves the toolkit's own load out; the sites' load balancers send the
same header on and count sessions by it (haproxy.cfg.j2).
"""

from __future__ import annotations

ORIGIN_HEADER = "X-Tradestack-Origin"
ORIGINS = ("client", "toolkit")


def origin_of(headers: list[tuple[bytes, bytes]]) -> str:
    """`toolkit` when the request says so, else `client` (an ASGI scope's raw headers)."""
    key = ORIGIN_HEADER.lower().encode()
    return "toolkit" if any(k == key and v.strip().lower() == b"toolkit" for k, v in headers) else "client"
