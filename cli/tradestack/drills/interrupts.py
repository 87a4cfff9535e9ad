"""SIGINT and SIGTERM during a drill: both end in restore, and neither may cut a restore short."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .journal import Journal


@contextmanager
def raising() -> Iterator[None]:
    """SIGTERM and SIGINT raise KeyboardInterrupt for the duration of the run (both end in restore)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    # SIGINT too, explicitly: a process started in the background of a shell inherits SIGINT ignored,
    # and a drill must stop (and restore) when it is told to
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, on_term),
                signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def deferred(journal: Journal) -> Iterator[None]:
    """While restoring, a second Ctrl-C or SIGTERM is noted, not obeyed: a half-done restore is worse."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def note(signum: int, frame: Any) -> None:
        journal.interrupted = journal.interrupted or signal.Signals(signum).name

    old = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
