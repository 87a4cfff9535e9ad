"""The system of record: orders, accounts, positions, alerts and router heartbeats in PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

import psycopg
from psycopg_pool import PoolTimeout

# The database is away for now: no connection, a lost one, a pool with none free, or a connection that landed on a
# node no longer the primary (a failover's window before the load balancer drops it: "cannot execute INSERT in a
# read-only transaction", which psycopg raises as an InternalError). Each is retried; none is a bug.
UNAVAILABLE: tuple[type[Exception], ...] = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout,
                                            psycopg.errors.ReadOnlySqlTransaction)

# Order life cycle. `venue_unknown` is the one non-final state that is not normal flow: an
# order was sent and the venue never answered; the router resolves it with the venue, it is
# never guessed and never dropped.
LIVE_STATES = ("accepted", "routing", "sent", "venue_unknown", "acked")
FINAL_STATES = ("filled", "rejected", "cancelled", "cancelled_by_venue")
STATES = LIVE_STATES + FINAL_STATES

DDL = f"""
CREATE TABLE IF NOT EXISTS accounts (
    account       text PRIMARY KEY,
    cash          numeric(20,4) NOT NULL,
    initial_cash  numeric(20,4) NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS positions (
    account  text NOT NULL REFERENCES accounts,
    symbol   text NOT NULL,
    qty      bigint NOT NULL,
    PRIMARY KEY (account, symbol)
);
CREATE TABLE IF NOT EXISTS orders (
    id                uuid PRIMARY KEY,
    account           text NOT NULL REFERENCES accounts,
    client_order_id   text NOT NULL,
    symbol            text NOT NULL,
    side              text NOT NULL CHECK (side IN ('buy', 'sell')),
    qty               integer NOT NULL CHECK (qty > 0),
    order_type        text NOT NULL CHECK (order_type IN ('market', 'limit')),
    limit_price       numeric(20,4),
    session           text NOT NULL,
    state             text NOT NULL CHECK (state IN ({", ".join(repr(s) for s in STATES)})),
    reason            text,
    venue             text,
    venue_order_id    text,
    attempt           integer NOT NULL DEFAULT 0,
    router            text,
    lease_until       timestamptz,
    cancel_requested  boolean NOT NULL DEFAULT false,
    fill_price        numeric(20,4),
    created_at        timestamptz NOT NULL DEFAULT now(),
    sent_at           timestamptz,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account, client_order_id)
);
CREATE INDEX IF NOT EXISTS orders_work ON orders (state, created_at)
    WHERE state IN ('accepted', 'routing', 'sent', 'venue_unknown', 'acked');
CREATE TABLE IF NOT EXISTS order_events (
    id        bigserial PRIMARY KEY,
    order_id  uuid NOT NULL,
    at        timestamptz NOT NULL DEFAULT now(),
    state     text NOT NULL,
    venue     text,
    detail    text
);
CREATE INDEX IF NOT EXISTS order_events_order ON order_events (order_id);
CREATE TABLE IF NOT EXISTS alerts (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    source  text NOT NULL,
    venue   text,
    kind    text NOT NULL,
    detail  text NOT NULL
);
CREATE TABLE IF NOT EXISTS routers (
    instance   text PRIMARY KEY,
    last_seen  timestamptz NOT NULL
);
"""

# One channel wakes routers as soon as an order commits (delivered only on commit).
NEW_ORDER_CHANNEL = "tradestack_orders"


def account_name(i: int) -> str:
    return f"acct-{i:05d}"


def migrate(dsn: str) -> bool:
    """Create the schema if it is missing (idempotent); True if anything was created."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        before = conn.execute("SELECT to_regclass('public.orders') IS NOT NULL").fetchone()
        conn.execute(DDL)
        return not (before and before[0])


def seed_accounts(dsn: str, count: int, cash: Decimal = Decimal("1000000")) -> int:
    """Create accounts acct-00000.. with `cash` each; existing accounts are left alone. Returns how many were new."""
    with psycopg.connect(dsn) as conn:
        created = conn.execute(
            "INSERT INTO accounts (account, cash, initial_cash) SELECT a, %s, %s FROM unnest(%s::text[]) AS a "
            "ON CONFLICT DO NOTHING", (cash, cash, [account_name(i) for i in range(count)])).rowcount
        conn.commit()
        return created


# Session options of every service connection: a statement is never stuck longer than 5 s, and every plan is
# made for its own parameters: tables start empty after a deploy, and a generic plan cached by a long-lived
# connection while `orders` was empty (a sequential scan) would stay with it as the table grows.
SESSION_OPTIONS = "-c statement_timeout=5000 -c plan_cache_mode=force_custom_plan"

# How long a pool keeps retrying one lost connection before it starts over. psycopg_pool doubles the wait between
# attempts up to this, so 3600 meant that after a minute-long outage (a site cut off from the primary) a service
# waited another minute or two before it even tried the database again; starting over every few seconds keeps the
# wait between attempts at a few seconds, however long the outage.
RECONNECT_TIMEOUT_S = 5.0

# ... and how soon it tries again. psycopg_pool waits 1 s after a failed attempt, then 2, then 4 (its
# AttemptWithBackoff, which has no setting of its own): after a failover a pool was back up to 3 s after its load
# balancer had the new primary (HAProxy marks it up within a second). Growing from 0.1 s by half each time still
# left 1-2 s between attempts by the time a leader was promoted (4-5 s): parked orders waited up to 3 s past the
# promotion. Every RECONNECT_EVERY_S instead, whatever the outage's length: the attempt is to the host's own
# HAProxy, which refuses at once while it has no primary, so a try costs next to nothing.
RECONNECT_EVERY_S = 0.2


def fast_reconnects() -> None:
    """Every pool of this process retries a lost connection every RECONNECT_EVERY_S (psycopg_pool's jitter kept)."""
    from psycopg_pool.base import AttemptWithBackoff

    AttemptWithBackoff.INITIAL_DELAY, AttemptWithBackoff.DELAY_BACKOFF = RECONNECT_EVERY_S, 1.0
