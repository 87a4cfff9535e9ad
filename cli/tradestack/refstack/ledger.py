"""The load generator's ledger (SQLite): every order a client sent and what the client saw."""

from __future__ import annotations

import sqlite3
from dataclasses import astuple, dataclass, fields
from pathlib import Path

# Outcomes as the client knows them:
#   acked     2xx: the gateway committed the order;
#   rejected  a final 4xx (unknown account, invalid, conflicting id): not placed;
#   refused   still 429 when the client gave up: not placed (back-pressure);
#   unknown   no answer that settles it (timeouts, 5xx, lost connections) before the client gave up.
OUTCOMES = ("acked", "rejected", "refused", "unknown")
SERVED_AT_ONCE_MS = 1000.0  # an order acked on its first attempt within this was served at once (the client's view)
VERDICTS = ("ok", "stale", "unavailable", "bad")


@dataclass(frozen=True)
class SentOrder:
    client_id: str
    account: str
    client_order_id: str
    session: str
    endpoint: str        # the endpoint that gave the final answer (or the last one tried)
    first_sent: float    # unix time of the first attempt
    attempts: int
    endpoints_tried: int
    outcome: str
    http_status: int | None
    order_id: str | None
    state: str | None    # order state in the final answer
    latency_ms: float    # first attempt to final answer
    detail: str | None


@dataclass(frozen=True)
class AssetView:
    client_id: str
    account: str
    at: float
    endpoint: str
    http_status: int | None
    cash: str | None
    positions: int | None
    stale: bool
    verdict: str  # ok | stale (503 + last value marked stale) | unavailable | bad (zero, empty or malformed)
    detail: str | None


def _ddl(cls: type) -> str:
    return ", ".join(f.name for f in fields(cls))


class Ledger:
    def __init__(self, path: Path):
        self.path = path
        self.conn = sqlite3.connect(path)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(f"CREATE TABLE IF NOT EXISTS orders ({_ddl(SentOrder)}, PRIMARY KEY (account, "
                          "client_order_id))")
        self.conn.execute(f"CREATE TABLE IF NOT EXISTS assets ({_ddl(AssetView)})")
        self.conn.execute("CREATE TABLE IF NOT EXISTS runs (run TEXT PRIMARY KEY, started REAL, plan TEXT)")

    def add_run(self, run: str, started: float, plan: str) -> None:
        self.conn.execute("INSERT INTO runs VALUES (?, ?, ?)", (run, started, plan))
        self.conn.commit()

    def write(self, orders: list[SentOrder], assets: list[AssetView]) -> None:
        if orders:
            self.conn.executemany(f"INSERT OR REPLACE INTO orders VALUES ({','.join('?' * len(fields(SentOrder)))})",
                                  [astuple(o) for o in orders])
        if assets:
            self.conn.executemany(f"INSERT INTO assets VALUES ({','.join('?' * len(fields(AssetView)))})",
                                  [astuple(a) for a in assets])
        self.conn.commit()

    def orders(self) -> list[SentOrder]:
        return [SentOrder(*row) for row in self.conn.execute(f"SELECT {_ddl(SentOrder)} FROM orders")]

    def assets(self) -> list[AssetView]:
        return [AssetView(*row[:7], bool(row[7]), row[8], row[9]) for row in self.conn.execute(f"SELECT {_ddl(AssetView)} FROM assets")]

    def close(self) -> None:
        self.conn.close()
