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


class Away(Exception):
    """The database has no writable leader (the gateway's DatabaseUnavailable)."""


class FakeIntake:
    """An order intake over a scripted database: `away` while set, the orders table a dict keyed by client id."""

    def __init__(self, park_s: float = 5.0, max_parked: int = 100):
        from tradestack.refstack import intake

        self.now = 0.0
        self.away = False
        self.lose_next_answer = False
        self.table: dict[str, dict] = {}
        self.parked_changes: list[int] = []
        self.waits: list[float] = []
        outer = self

        class Scripted(intake.OrderIntake):
            async def _insert(self, items):
                if outer.away:
                    raise Away("no writable leader")
                rows = []
                for item in items:
                    if item.client_order_id not in outer.table:
                        outer.table[item.client_order_id] = {"id": item.id, "client_order_id": item.client_order_id}
                        rows.append(dict(outer.table[item.client_order_id]))
                if outer.lose_next_answer:  # committed, and the connection died before the answer came back
                    outer.lose_next_answer = False
                    raise Away("connection lost after the commit")
                return rows

        self.intake = Scripted(None, "id", unavailable=(Away,), park_s=park_s, max_parked=max_parked,
                               on_parked=self.parked_changes.append, on_waited=self.waits.append,
                               clock=lambda: self.now)

    def order(self, client_id: str, received: float | None = None):
        from uuid import uuid4

        from tradestack.refstack.intake import NewOrder

        return NewOrder(uuid4(), "acct-1", client_id, "HK.0700", "buy", 100, "market", None, "day",
                        received=self.now if received is None else received)


@pytest.fixture
def fast_retries(monkeypatch):
    from tradestack.refstack import intake

    monkeypatch.setattr(intake.OrderIntake, "retry_s", 0.001)


def test_orders_that_arrive_without_a_leader_wait_and_are_answered_once_it_commits_them(fast_retries):
    async def scenario():
        db = FakeIntake(park_s=5.0)
        db.intake.start()
        db.away = True
        waiting = [asyncio.ensure_future(db.intake.submit(db.order(f"c{i}"))) for i in range(3)]
        for _ in range(20):
            await asyncio.sleep(0.002)
        assert not any(w.done() for w in waiting) and db.intake.parked == 3  # parked, nobody answered
        db.now, db.away = 2.5, False  # a leader again, 2.5 s later
        rows = await asyncio.wait_for(asyncio.gather(*waiting), 5)
        await db.intake.stop()
        return db, rows

    db, rows = run(scenario)
    assert [r["client_order_id"] for r in rows] == ["c0", "c1", "c2"] and len(db.table) == 3
    assert db.intake.parked == 0 and sum(db.parked_changes) == 0 and max(db.parked_changes) > 0
    assert db.waits == [2.5, 2.5, 2.5]


def test_an_order_parked_past_its_deadline_hears_the_database_is_away_and_the_rest_keep_waiting(fast_retries):
    async def scenario():
        db = FakeIntake(park_s=5.0)
        db.intake.start()
        db.away = True
        old = asyncio.ensure_future(db.intake.submit(db.order("old", received=-4.0)))  # waited 4 s already
        new = asyncio.ensure_future(db.intake.submit(db.order("new")))
        for _ in range(10):
            await asyncio.sleep(0.002)
        db.now = 1.5  # the old one is past 5 s, the new one is not
        outcome = await asyncio.wait_for(asyncio.gather(old, return_exceptions=True), 5)
        assert not new.done() and db.intake.parked == 1
        db.away = False
        row = await asyncio.wait_for(new, 5)
        await db.intake.stop()
        return db, outcome[0], row

    db, old, row = run(scenario)
    assert isinstance(old, Away) and row["client_order_id"] == "new"
    assert list(db.table) == ["new"] and db.intake.parked == 0


def test_parking_is_bounded_and_never_used_when_turned_off(fast_retries):
    async def scenario(park_s: float, max_parked: int):
        db = FakeIntake(park_s=park_s, max_parked=max_parked)
        db.intake.start()
        db.away = True
        waiting = [asyncio.ensure_future(db.intake.submit(db.order(f"c{i}"))) for i in range(5)]
        for _ in range(20):
            await asyncio.sleep(0.002)
        refused = [w for w in waiting if w.done()]
        parked = db.intake.parked
        await db.intake.stop(Away("stopping"))
        return len(refused), parked, [w.exception() for w in refused]

    refused, parked, errors = asyncio.run(scenario(5.0, 2))
    assert (refused, parked) == (3, 2) and all(isinstance(e, Away) for e in errors)
    refused, parked, _ = asyncio.run(scenario(0.0, 100))
    assert (refused, parked) == (5, 0)


def test_a_commit_whose_answer_was_lost_is_not_inserted_again(fast_retries):
    """The retry of a batch that did commit inserts nothing (same client_order_id): its result is None, on which
    the gateway finds the order and answers it (200), once."""
    async def scenario():
        db = FakeIntake()
        db.intake.start()
        db.lose_next_answer = True
        result = await asyncio.wait_for(db.intake.submit(db.order("c1")), 5)
        await db.intake.stop()
        return db, result

    db, result = run(scenario)
    assert result is None and list(db.table) == ["c1"]


def test_a_parked_order_holds_no_slot_in_flight():
    from tradestack.refstack.admission import AdmissionControl
    from tradestack.refstack.config import Admission

    control = AdmissionControl(Admission(max_in_flight=2, orders_per_second=1000, burst=100), clock=lambda: 0.0)
    assert control.enter(True) is None and control.enter(True) is None
    assert control.enter(True).reason == "in_flight"
    control.park(2)  # both wait for a leader
    assert control.enter(True) is None
    control.park(-2)
    assert control.enter(True).reason == "in_flight"


def test_a_parked_order_whose_caller_went_away_is_no_longer_counted(fast_retries):
    async def scenario():
        db = FakeIntake()
        db.intake.start()
        db.away = True
        gone = asyncio.ensure_future(db.intake.submit(db.order("gone")))
        stays = asyncio.ensure_future(db.intake.submit(db.order("stays")))
        for _ in range(10):
            await asyncio.sleep(0.002)
        assert db.intake.parked == 2
        gone.cancel()  # its client hung up
        for _ in range(10):
            await asyncio.sleep(0.002)
        parked_after_cancel = db.intake.parked
        db.away = False
        await asyncio.wait_for(stays, 5)
        await db.intake.stop()
        return parked_after_cancel, db

    parked_after_cancel, db = run(scenario)
    assert parked_after_cancel == 1 and db.intake.parked == 0 and sum(db.parked_changes) == 0


def test_a_pool_tries_a_lost_connection_again_within_a_blink_not_after_a_second():
    """After a failover a gateway's pool waited 1 s, then 2, then 4 between attempts (psycopg_pool's default):
    up to 3 s with the new primary already there. Now it tries every 0.2 s (jitter 10 %) until it gives up."""
    from psycopg_pool.base import AttemptWithBackoff

    from tradestack.refstack.schema import RECONNECT_TIMEOUT_S, fast_reconnects

    before = AttemptWithBackoff.INITIAL_DELAY, AttemptWithBackoff.DELAY_BACKOFF
    try:
        fast_reconnects()
        attempt, now, tries = AttemptWithBackoff(timeout=RECONNECT_TIMEOUT_S), 0.0, []
        while not attempt.time_to_give_up(now):
            attempt.update_delay(now)
            now += attempt.delay
            tries.append(now)
    finally:
        AttemptWithBackoff.INITIAL_DELAY, AttemptWithBackoff.DELAY_BACKOFF = before
    gaps = [b - a for a, b in zip([0.0, *tries], tries)]
    assert max(gaps) <= 0.221 and tries[-1] >= RECONNECT_TIMEOUT_S - 0.001, tries
