"""Who the gateway is serving: client sessions seen over a window, and orders received, by origin.

A session is a client connection (its address and port): a trading client holds its connection and refreshes its
balance screen every few seconds, so every session is seen well within the window. A client that reconnects is
counted twice until its old connection ages out: the figure errs high, the safe side for capacity.

Origin (origin.py): Prometheus's recording rules sum only the clients' into the stack's totals, so the observed
peak (`capacity peak`) leaves the toolkit's own load out.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .origin import ORIGINS

WINDOW_S = 60.0  # well over a balance screen's refresh (the topology's session_refresh_s, 10 s by default)


class Sessions(Collector):
    """Distinct client connections seen within the last WINDOW_S seconds, by origin; a Prometheus collector of
    `tradestack_gateway_sessions{origin}`."""

    def __init__(self, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic):
        self.window_s, self.clock = window_s, clock
        self._seen: dict[str, OrderedDict[Any, float]] = {o: OrderedDict() for o in ORIGINS}

    def saw(self, origin: str, peer: Any) -> None:
        seen = self._seen[origin]
        seen[peer] = self.clock()
        seen.move_to_end(peer)

    def count(self, origin: str) -> int:
        seen, horizon = self._seen[origin], self.clock() - self.window_s
        while seen:
            peer, last = next(iter(seen.items()))
            if last >= horizon:
                break
            del seen[peer]
        return len(seen)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("tradestack_gateway_sessions", f"client connections that sent a request within "
                                   f"the last {WINDOW_S:g} s, by origin (toolkit: the toolkit's own load)",
                                   labels=["origin"])
        for origin in ORIGINS:
            family.add_metric([origin], self.count(origin))
        yield family
