"""Waiting for a condition, the one way every module waits (no sleeps sprinkled about); asking many at once."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def each(items: Sequence[Any], call: Callable[[Any], Any], key: Callable[[Any], str] = lambda x: x.name
         ) -> dict[str, Any]:
    """`call(item)` for every item at once, by `key(item)`: one probe's time, not one per host (over SSH a
    round trip takes a tenth of a second or more, and a sample asks a dozen hosts)."""
    if not items:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(items))) as pool:
        return dict(zip([key(i) for i in items], pool.map(call, items)))


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
