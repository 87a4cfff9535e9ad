"""One reference stack (PostgreSQL, two venues, a router, a gateway) shared by this folder's tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tradestack.refstack.config import Breaker
from tradestack.refstack.local import LocalRefStack

ACCOUNTS = 500
BREAKER = Breaker(ack_timeout_s=0.5, cooldown_s=1.0, max_cooldown_s=4.0)


@pytest.fixture(scope="package")  # torn down with this package: its processes would idle through the lab tests
def refstack() -> Iterator[LocalRefStack]:
    stack = LocalRefStack(accounts=ACCOUNTS, breaker=BREAKER)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="package")
def endpoints(refstack: LocalRefStack) -> dict[str, Any]:
    return refstack.endpoints()


@pytest.fixture(scope="package")
def gateway(endpoints: dict[str, Any]) -> str:
    return endpoints["gateways"]["gateway-1"]


@pytest.fixture(scope="package")
def router(endpoints: dict[str, Any]) -> str:
    return endpoints["routers"]["router-1"]


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client
