"""What a drill raises before it touches anything."""

from __future__ import annotations

from ..errors import TradestackError


class DrillRefused(TradestackError):
    """The drill did not start: the stack is not steady, another drill runs, or drills are not allowed."""
