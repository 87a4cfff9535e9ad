"""One drill (or capacity verify) per stack at a time."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager

from ..paths import state_dir
from .errors import DrillRefused


@contextmanager
def stack_lock(stack: str) -> Iterator[None]:
    """One drill per stack at a time (a file lock: released by the kernel if we die)."""
    directory = state_dir() / "stacks" / stack
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "drill.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DrillRefused(f"another drill is running on stack {stack!r}") from None
        yield
