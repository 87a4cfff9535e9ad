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

While the database has no writable leader (a failover), new orders are parked, not failed: the batch is
tried again every PARK_RETRY_S until it commits, and each order waits at most `park_s` from its arrival
(shorter than a client's timeout) before its caller hears the database is away (a 503, as before). A retry
after a commit whose answer was lost inserts nothing (the same client_order_id): the gateway then finds the
order and answers it once. At most `max_parked` orders wait at once; more are answered at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
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
    received: float = field(default_factory=time.monotonic, compare=False)  # when the gateway got it


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
    """Commits new orders in batches; each order's result is its row as inserted, or None if not inserted.
    `unavailable`: the errors that mean the database is away (its orders are parked); `on_parked(n)` hears each
    change in how many orders are parked (n may be negative); `on_waited(s)` the seconds each parked order
    waited before its commit."""

    def __init__(self, connection: Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]],
                 returning: str, writers: int = 2, max_batch: int = 512, *,
                 unavailable: tuple[type[BaseException], ...] = (), park_s: float = 0.0, max_parked: int = 0,
                 on_parked: Callable[[int], None] = lambda n: None,
                 on_waited: Callable[[float], None] = lambda s: None, clock: Callable[[], float] = time.monotonic):
        super().__init__(writers, max_batch)
        self.connection = connection
        self.sql = insert_sql(returning)
        self.unavailable, self.park_s, self.max_parked = unavailable, park_s, max_parked
        self.on_parked, self.on_waited, self.clock = on_parked, on_waited, clock
        self._parked: set[UUID] = set()  # orders waiting now for a writable leader

    @property
    def parked(self) -> int:
        return len(self._parked)

    def _unpark(self, item: NewOrder) -> bool:
        if item.id not in self._parked:
            return False
        self._parked.discard(item.id)
        self.on_parked(-1)
        return True

    def _keep(self, items: list[NewOrder], error: Exception) -> list[bool]:
        """An order waits while the database is away, until `park_s` after it arrived, if there is room."""
        now, kept = self.clock(), []
        for item in items:
            keep = isinstance(error, self.unavailable) and now - item.received < self.park_s and (
                item.id in self._parked or len(self._parked) < self.max_parked)
            if keep and item.id not in self._parked:
                self._parked.add(item.id)
                self.on_parked(1)
            elif not keep:
                self._unpark(item)
            kept.append(keep)
        return kept

    def _committed(self, items: list[NewOrder]) -> None:
        now = self.clock()
        for item in items:
            if self._unpark(item):
                self.on_waited(now - item.received)

    def _gone(self, items: list[NewOrder]) -> None:
        for item in items:
            self._unpark(item)

    async def stop(self, why: BaseException | None = None) -> None:
        await super().stop(why)
        if self._parked:
            self.on_parked(-len(self._parked))
            self._parked.clear()

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
