"""Small helpers for the reference-stack tests."""

from __future__ import annotations

import time
from typing import Any

import httpx


def wait_for(predicate: Any, timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy; return its value (or fail with the last one)."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    assert value, f"condition not met within {timeout} s"
    return value


def place(http: httpx.Client, gateway: str, **fields: Any) -> httpx.Response:
    body = {"account": "acct-00001", "symbol": "AAPL", "side": "buy", "qty": 1, **fields}
    return http.post(f"{gateway}/v1/orders", json=body)


def order_state(http: httpx.Client, gateway: str, order_id: str) -> dict[str, Any]:
    return http.get(f"{gateway}/v1/orders/{order_id}").json()


def settled(http: httpx.Client, gateway: str, order_id: str, states: tuple[str, ...]) -> dict[str, Any]:
    return wait_for(lambda: (o := order_state(http, gateway, order_id))["state"] in states and o)
