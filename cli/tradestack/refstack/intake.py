"""The gateway's order intake: new orders committed in groups, one INSERT of many rows each.

One order, one statement, one commit was what the gateway did per order, and it was where the
gateway and the database spent most of their time at peak: a round trip, a transaction and a WAL
flush (with a synchronous standby, its flush too) per order. Here every order that arrives while
a batch is committing goes into the next one: a single `INSERT ... SELECT FROM unnest(...)`, in
its own transaction, that wakes the routers once. Each caller still gets its answer only after
the commit that holds its order, so "a 2xx only after commit" holds unchanged.

An order not in the statement's result was not inserted: either its (account, client_order_id)
is already taken (an idempotent retry, possibly by another order in the same batch) or its
account does not exist. The gateway tells those apart afterwards; the batch never fails for them.
A batch that fails on one order's data (not the database going away) is committed again order by
order, so only that order's caller hears of it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from .batching import Batcher
from .schema import NEW_ORDER_CHANNEL


@dataclass(frozen=True, slots=True)
class NewOrder:
    id: UUID
    account: str
    client_order_id: str
    symbol: str
    side: str
    qty: int
    order_type: str
    limit_price: Decimal | None
    session: str


_FIELDS = ("id", "account", "client_order_id", "symbol", "side", "qty", "order_type", "limit_price", "session")
_TYPES = ("uuid", "text", "text", "text", "text", "int", "text", "numeric", "text")


def insert_sql(returning: str) -> str:
    """One statement for a whole batch: insert every order whose account exists and whose client id is new."""
    arrays = ", ".join(f"%s::{kind}[]" for kind in _TYPES)
    columns = ", ".join(_FIELDS)
    picked = ", ".join(f"n.{field}" for field in _FIELDS)
    return (f"WITH ins AS (INSERT INTO orders ({columns}, state) "
            f"SELECT {picked}, 'accepted' FROM unnest({arrays}) AS n({columns}) "
            f"JOIN accounts a ON a.account = n.account "
            f"ON CONFLICT (account, client_order_id) DO NOTHING RETURNING {returning}) "
            f"SELECT ins.*, pg_notify(%s, '') AS notified FROM ins")


class OrderIntake(Batcher[NewOrder, "dict[str, Any] | None"]):
    """Commits new orders in batches; each order's result is its row as inserted, or None if not inserted."""

    def __init__(self, connection: Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]],
                 returning: str, writers: int = 2, max_batch: int = 512):
        super().__init__(writers, max_batch)
        self.connection = connection
        self.sql = insert_sql(returning)

    async def _commit(self, items: list[NewOrder]) -> list[dict[str, Any] | None | BaseException]:
        try:
            rows = await self._insert(items)
        except (psycopg.DataError, psycopg.IntegrityError):  # one order the database refuses: find whose, alone
            if len(items) == 1:
                raise
            return [await self._alone(item) for item in items]
        found = {row["id"]: row for row in rows}
        return [found.get(item.id) for item in items]

    async def _alone(self, item: NewOrder) -> dict[str, Any] | None | BaseException:
        try:
            rows = await self._insert([item])
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            return exc
        return rows[0] if rows else None

    async def _insert(self, items: list[NewOrder]) -> list[dict[str, Any]]:
        columns = [[getattr(item, field) for item in items] for field in _FIELDS]
        async with self.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(self.sql, (*columns, NEW_ORDER_CHANNEL))  # autocommit: one transaction
            rows = await cur.fetchall()
        for row in rows:
            del row["notified"]
        return rows
