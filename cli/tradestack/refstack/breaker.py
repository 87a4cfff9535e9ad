"""Per-venue circuit breaker: opens on the first sign of trouble, probes again with growing cooldowns.

Pure logic with an injected clock, so its timing is unit-tested without sleeping.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from enum import Enum

from .config import Breaker


class State(str, Enum):
    CLOSED = "closed"        # orders flow
    OPEN = "open"            # no orders; waiting for the cooldown
    HALF_OPEN = "half_open"  # probing the venue (connect + ping); still no orders


class CircuitBreaker:
    def __init__(self, venue: str, config: Breaker, clock: Callable[[], float] = time.monotonic):
        self.venue, self.config, self.clock = venue, config, clock
        self.state = State.CLOSED
        self.reason: str | None = None
        self.opened_at: float | None = None
        self.closed_at: float = clock()
        self.cooldown = config.cooldown_s
        self.trips = 0
        self._rejects: deque[float] = deque()
        self._cancels: deque[float] = deque()

    def allows(self) -> bool:
        return self.state is State.CLOSED

    def trip(self, reason: str) -> bool:
        """Open the circuit; True if this call opened it (so the caller raises one alert, not many)."""
        now = self.clock()
        if self.state is State.OPEN:
            return False
        if self.state is State.HALF_OPEN or now - self.closed_at < 4 * self.cooldown:
            self.cooldown = min(self.cooldown * 2, self.config.max_cooldown_s)  # still failing: back off
        else:
            self.cooldown = self.config.cooldown_s
        self.state, self.reason, self.opened_at = State.OPEN, reason, now
        self.trips += 1
        return True

    def record_system_reject(self) -> bool:
        return self._storm(self._rejects, self.config.reject_storm, "reject storm")

    def record_venue_cancel(self) -> bool:
        return self._storm(self._cancels, self.config.cancel_storm, "cancel storm")

    def _storm(self, events: deque[float], limit: int, what: str) -> bool:
        now = self.clock()
        events.append(now)
        while events and events[0] < now - self.config.window_s:
            events.popleft()
        if len(events) >= limit:
            events.clear()
            return self.trip(f"{what}: {limit} within {self.config.window_s:g} s")
        return False

    def probe_due(self) -> bool:
        return self.state is State.OPEN and self.opened_at is not None and \
            self.clock() >= self.opened_at + self.cooldown

    def probing(self) -> None:
        self.state = State.HALF_OPEN

    def close(self) -> None:
        self.state, self.reason, self.closed_at = State.CLOSED, None, self.clock()
        self._rejects.clear()
        self._cancels.clear()

    def snapshot(self) -> dict[str, object]:
        return {"venue": self.venue, "state": self.state.value, "reason": self.reason, "trips": self.trips,
                "cooldown_s": self.cooldown}
