"""Pulumi's import needs a current asyncio event loop in the importing thread."""

from __future__ import annotations

import asyncio


def ensure_event_loop() -> None:
    """Give this thread an event loop if it has none (e.g. after an earlier `asyncio.run()` closed its own)."""
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())
