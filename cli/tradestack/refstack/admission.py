"""Admission control for one gateway instance: refuse fast (429) instead of queueing into timeouts.

Two limits, both from the capacity the topology declares per instance: requests in flight
(protects latency and the database pool) and a token bucket on new orders (the sustained
order rate, with a burst). An order parked while the database has no writable leader (intake.py)
holds no slot in flight: it waits for the database, using neither the pool nor the CPU, and its
own bound is the intake's. Pure logic with an injected clock.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from .config import Admission


@dataclass(frozen=True)
class Refusal:
    reason: str  # in_flight | rate
    retry_after_s: int
    message: str


class AdmissionControl:
    def __init__(self, config: Admission, clock: Callable[[], float] = time.monotonic):
        self.config, self.clock = config, clock
        self.in_flight = 0
        self.parked = 0  # of those in flight, parked orders
        self.tokens = float(config.burst)
        self._refilled = clock()

    def enter(self, is_order: bool) -> Refusal | None:
        """Admit one request (call `leave()` when it is done) or say why not."""
        busy = self.in_flight - self.parked
        if busy >= self.config.max_in_flight:
            return Refusal("in_flight", self.config.retry_after_s,
                           f"gateway busy: {busy} requests in flight (limit {self.config.max_in_flight})")
        if is_order:
            self._refill()
            if self.tokens < 1:
                wait = (1 - self.tokens) / self.config.orders_per_second
                return Refusal("rate", max(1, math.ceil(wait)),
                               f"order rate above this gateway's limit of {self.config.orders_per_second:g}/s")
            self.tokens -= 1
        self.in_flight += 1
        return None

    def leave(self) -> None:
        self.in_flight -= 1

    def park(self, n: int) -> None:
        """`n` more of the requests in flight wait parked (fewer, when negative)."""
        self.parked += n

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(float(self.config.burst), self.tokens + (now - self._refilled) * self.config.orders_per_second)
        self._refilled = now
