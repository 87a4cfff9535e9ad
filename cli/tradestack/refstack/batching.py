"""Group commit for the router's writes: many small statements, one transaction, one WAL flush.

Each caller still awaits its own statement's committed row count, so write-ahead ordering holds
(an order is durably `sent` before it goes to a venue); the database simply does one commit for
many orders instead of one each. Statements run in psycopg's pipeline mode (no round trip each).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from psycopg import errors
from psycopg_pool import AsyncConnectionPool


class BatchWriter:
    def __init__(self, pool: AsyncConnectionPool, writers: int = 1, max_batch: int = 256):
        self.pool, self.writers, self.max_batch = pool, writers, max_batch
        self._pending: list[tuple[str, Any, asyncio.Future[int]]] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.batches = 0
        self.statements = 0

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._writer()) for _ in range(self.writers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for _, _, future in self._pending:
            if not future.done():
                future.set_exception(ConnectionError("router stopping"))

    async def execute(self, sql: str, args: Any) -> int:
        """Run one statement in the next batch; returns its row count once the batch has committed."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((sql, args, future))
        self._wake.set()
        return await future

    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            if not self._pending:
                self._wake.clear()
                continue
            batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
            if not self._pending:
                self._wake.clear()
            try:
                counts = await self._commit(batch)
            except Exception as exc:  # the whole batch failed (database away): every caller hears it
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.batches += 1
            self.statements += len(batch)
            for (_, _, future), count in zip(batch, counts):
                if not future.done():
                    future.set_result(count)

    async def _commit(self, batch: list[tuple[str, Any, asyncio.Future[int]]], attempts: int = 3) -> list[int]:
        for attempt in range(attempts):
            try:
                async with self.pool.connection() as conn:
                    async with conn.transaction(), conn.pipeline():
                        cursors = []
                        for sql, args, _ in batch:
                            cursor = conn.cursor()
                            await cursor.execute(sql, args)
                            cursors.append(cursor)
                return [cursor.rowcount for cursor in cursors]
            except (errors.DeadlockDetected, errors.SerializationFailure):
                if attempt == attempts - 1:  # another router's batch touched the same accounts in
                    raise                    # another order; the database chose ours: run it again
        raise AssertionError("unreachable")
