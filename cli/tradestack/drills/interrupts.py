"""SIGINT and SIGTERM during a drill: both end in restore, and neither may cut a restore short."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .journal import Journal


@contextmanager
def raising(journal: Journal) -> Iterator[None]:
    """SIGTERM and SIGINT raise KeyboardInterrupt for the duration of the run (both end in restore), and are
    noted in the journal first: Python drops an exception raised while a finalizer runs (an event loop's
    `__del__` during garbage collection, say), so the run's loops also stop on the note, and a signal whose
    exception was lost is still obeyed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        journal.interrupted = journal.interrupted or name
        raise KeyboardInterrupt(name)

    # SIGINT too, explicitly: a process started in the background of a shell inherits SIGINT ignored,
    # and a drill must stop (and restore) when it is told to
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
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
