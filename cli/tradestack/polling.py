"""Waiting for a condition, the one way every module waits (no sleeps sprinkled about)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def until_clear(problems: Callable[[], Sequence[str]], timeout: float, interval: float = 0.25) -> list[str]:
    """Call `problems()` until it returns nothing or `timeout` passes; return what is left (empty: clear)."""
    deadline = time.monotonic() + timeout
    while True:
        left = problems()
        if not left or time.monotonic() > deadline:
            return list(left)
        time.sleep(interval)
