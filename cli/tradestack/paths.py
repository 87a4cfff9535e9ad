"""Where tradestack keeps state on this machine (stacks, logs, caches)."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "TRADESTACK_HOME"


def state_dir() -> Path:
    """$TRADESTACK_HOME, else ~/.tradestack."""
    value = os.environ.get(HOME_ENV)
    return Path(value).expanduser() if value else Path.home() / ".tradestack"


def logs_dir() -> Path:
    return state_dir() / "logs"


def cache_dir() -> Path:
    """Build caches that outlive clones: $XDG_CACHE_HOME/tradestack, else ~/.cache/tradestack."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "tradestack"
