"""Group commit's queue: what queues while a batch commits goes in the next one, and every caller gets
its own answer (or its own error) only once its batch is done. No database: `_commit` is scripted."""

from __future__ import annotations

import asyncio

import pytest

from tradestack.refstack.batching import Batcher
from tradestack.refstack.intake import insert_sql

pytestmark = pytest.mark.unit


class Scripted(Batcher[int, int]):
    """Commits by doubling each item; a negative item is refused on its own; item 0 fails the batch."""

    def __init__(self, writers: int = 1, max_batch: int = 256):
        super().__init__(writers, max_batch)
        self.seen: list[list[int]] = []
        self.gate = asyncio.Event()

    async def _commit(self, items: list[int]) -> list[int | BaseException]:
        self.seen.append(items)
        await self.gate.wait()  # the commit's round trip: callers keep queueing meanwhile
        if 0 in items:
            raise ConnectionError("database away")
        return [ValueError(f"refused {i}") if i < 0 else 2 * i for i in items]


def run(scenario):
    return asyncio.run(scenario())


def test_orders_that_queue_while_a_batch_commits_go_together_in_the_next_one():
    async def scenario():
        b = Scripted()
        b.start()
        first = asyncio.ensure_future(b.submit(1))
        await asyncio.sleep(0)  # the writer takes [1] and waits on its commit
        await asyncio.sleep(0)
        rest = [asyncio.ensure_future(b.submit(i)) for i in (2, 3, 4)]
        await asyncio.sleep(0)
        assert not first.done()  # nobody is answered before the commit
        b.gate.set()
        answers = await asyncio.gather(first, *rest)
        await b.stop()
        return b, answers

    b, answers = run(scenario)
    assert answers == [2, 4, 6, 8]
    assert b.seen == [[1], [2, 3, 4]] and b.batches == 2 and b.statements == 4


def test_a_refused_item_fails_only_its_caller_and_a_failed_batch_fails_every_caller_of_it():
    async def scenario():
        b = Scripted()
        b.gate.set()
        b.start()
        mixed = await asyncio.gather(*(b.submit(i) for i in (5, -1, 6)), return_exceptions=True)
        failed = await asyncio.gather(*(b.submit(i) for i in (7, 0, 8)), return_exceptions=True)
        after = await b.submit(9)  # the writer carries on after a failed batch
        await b.stop()
        return mixed, failed, after

    mixed, failed, after = run(scenario)
    assert mixed[0] == 10 and mixed[2] == 12 and isinstance(mixed[1], ValueError) and "refused -1" in str(mixed[1])
    assert all(isinstance(f, ConnectionError) for f in failed)
    assert after == 18


def test_batches_are_capped_and_stopping_answers_whoever_still_waits_even_mid_commit():
    async def scenario():
        b = Scripted(max_batch=2)
        b.start()
        waiting = [asyncio.ensure_future(b.submit(i)) for i in (1, 2, 3, 4, 5)]
        for _ in range(3):
            await asyncio.sleep(0)
        await b.stop(ConnectionError("gateway stopping"))
        return b, await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 5)

    b, outcomes = run(scenario)
    assert b.seen == [[1, 2]]  # at most max_batch per commit
    assert all(isinstance(o, ConnectionError) for o in outcomes)
    assert "gateway stopping" in {str(o) for o in outcomes}


def test_one_statement_inserts_a_whole_batch_and_skips_unknown_accounts_and_retries():
    sql = insert_sql("id, state")
    assert sql.count("%s") == 10  # nine column arrays and the channel to wake the routers
    assert "unnest(" in sql and "JOIN accounts" in sql and "ON CONFLICT (account, client_order_id) DO NOTHING" in sql
    assert "RETURNING id, state" in sql and "pg_notify" in sql
