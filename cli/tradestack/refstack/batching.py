"""Group commit: many callers' writes, one transaction, one WAL flush.

Each caller still awaits its own result, which arrives only once its batch has committed, so
write-ahead ordering holds (an order is durably `sent` before it goes to a venue; a new order is
acknowledged only once committed); the database simply does one commit for many orders instead
of one each. A batch is whatever queued while the previous one was committing, so batches stay
small when the load is light (latency: one round trip) and grow with it (throughput).

`Batcher` is the queue and its writer tasks; `BatchWriter` (the router's state changes) and the
gateway's order intake (`intake.py`) say how a batch is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Generic, TypeVar

from psycopg import errors
from psycopg_pool import AsyncConnectionPool

Item = TypeVar("Item")
Result = TypeVar("Result")


class Batcher(Generic[Item, Result]):
    """Callers `submit` items; `writers` tasks each take up to `max_batch` queued items and `_commit` them.

    `_commit` returns one result per item, in order; a result that is an exception is raised to its
    caller alone. An exception from `_commit` itself (the database away) reaches every caller of the batch.
    """

    def __init__(self, writers: int = 1, max_batch: int = 256):
        self.writers, self.max_batch = writers, max_batch
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping: BaseException = ConnectionError("stopping")
        self.batches = 0
        self.statements = 0

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._writer()) for _ in range(self.writers)]

    async def stop(self, why: BaseException | None = None) -> None:
        """Stop the writers; whoever still waits (queued, or in a batch cut short) hears `why`."""
        if why is not None:
            self._stopping = why
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pending, self._pending = self._pending, []
        for _, future in pending:
            if not future.done():
                future.set_exception(self._stopping)

    async def submit(self, item: Item) -> Result:
        """Queue `item` for the next batch; returns its result once that batch has committed."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._wake.set()
        return await future

    async def _commit(self, items: list[Item]) -> list[Result | BaseException]:
        raise NotImplementedError

    def _keep(self, items: list[Item], error: Exception) -> list[bool]:
        """After a whole batch failed with `error`: which items wait for another try (the rest's callers hear
        `error` now). Nobody waits, unless a subclass says so."""
        return [False] * len(items)

    def _committed(self, items: list[Item]) -> None:
        """A batch committed (each of its items has its own result)."""

    def _gone(self, items: list[Item]) -> None:
        """Items kept waiting whose callers stopped waiting (cancelled)."""

    retry_s = 0.1  # a writer whose batch was kept waiting tries again after this

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
                results = await self._commit([item for item, _ in batch])
            except asyncio.CancelledError:  # stopped mid-commit: its callers must not wait for ever
                for _, future in batch:
                    if not future.done():
                        future.set_exception(self._stopping)
                raise
            except Exception as exc:  # the whole batch failed (database away): its callers hear it, or wait
                kept = self._keep([item for item, _ in batch], exc)
                for (_, future), keep in zip(batch, kept, strict=True):
                    if not keep and not future.done():
                        future.set_exception(exc)
                again = [entry for entry, keep in zip(batch, kept, strict=True) if keep and not entry[1].done()]
                self._gone([item for (item, future), keep in zip(batch, kept, strict=True) if keep and future.done()])
                if again:
                    self._pending[:0] = again  # first in the next batch, after a pause
                    await asyncio.sleep(self.retry_s)
                    self._wake.set()
                continue
            self._committed([item for item, _ in batch])
            self.batches += 1
            self.statements += len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)


class BatchWriter(Batcher[tuple[str, Any], int]):
    """Statements in one transaction, sent in psycopg's pipeline mode (no round trip each)."""

    def __init__(self, pool: AsyncConnectionPool, writers: int = 1, max_batch: int = 256):
        super().__init__(writers, max_batch)
        self.pool = pool

    async def execute(self, sql: str, args: Any) -> int:
        """Run one statement in the next batch; returns its row count once the batch has committed."""
        return await self.submit((sql, args))

    async def _commit(self, items: list[tuple[str, Any]], attempts: int = 3) -> list[int | BaseException]:
        for attempt in range(attempts):
            try:
                async with self.pool.connection() as conn:
                    async with conn.transaction(), conn.pipeline():
                        cursors = []
                        for sql, args in items:
                            cursor = conn.cursor()
                            await cursor.execute(sql, args)
                            cursors.append(cursor)
                return [cursor.rowcount for cursor in cursors]
            except (errors.DeadlockDetected, errors.SerializationFailure):
                if attempt == attempts - 1:  # another router's batch touched the same accounts in
                    raise                    # another order; the database chose ours: run it again
        raise AssertionError("unreachable")
