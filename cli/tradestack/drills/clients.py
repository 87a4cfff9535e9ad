"""The drill's clients while they run: the load generator's own progress reports, read as they come.

The load generator (`refstack load --json`) writes a progress line on stderr twice a second: cumulative orders
sent, answered and served at once, and sessions connected. A drill reads them to know its clients started,
are alive and still reporting, and how many of their orders went wrong lately (the abort condition), without
fetching their ledger.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from ..substrates import Process

STARTUP_S = 30.0      # how long the clients may take to send their first order before the drill gives up on them
SILENT_S = 5.0        # a live load generator that has not reported for this long has stalled


@dataclass(frozen=True)
class Report:
    """One progress report of the clients (cumulative since they started)."""

    t: float
    sent: int
    answered: int
    served_at_once: int
    connected: int
    sessions: int


def parse(line: str) -> Report | None:
    """A progress line as the load generator writes it; None for any other line (a warning, a traceback)."""
    try:
        data = json.loads(line)["progress"]
        return Report(float(data["t"]), int(data["sent"]), int(data["answered"]), int(data["served_at_once"]),
                      int(data["connected"]), int(data["sessions"]))
    except (ValueError, KeyError, TypeError):
        return None


class Clients:
    """A running load generator and what it has reported so far."""

    def __init__(self, proc: Process):
        self.proc = proc
        self.reports: list[Report] = []
        self.started = time.time()
        self.exited_at: float | None = None   # when it was first seen ended (by itself or stopped)
        self.stopped = False                  # the drill asked it to stop
        self.failure: str | None = None       # the first trouble seen while the drill needed them
        self.heard: float | None = None       # when the latest report was read (our clock, not the clients')
        self._seen = 0

    def poll(self) -> None:
        """Read the reports written since the last call; notice if the process has ended."""
        lines = self.proc.stderr_lines()
        for line in lines[self._seen:]:
            report = parse(line)
            if report is not None:
                self.reports.append(report)
                self.heard = time.time()
        self._seen = len(lines)
        if self.exited_at is None and self.proc.returncode is not None:
            self.exited_at = time.time()

    @property
    def sending(self) -> bool:
        return any(r.sent > 0 for r in self.reports)

    def wait_sending(self, timeout: float = STARTUP_S) -> str | None:
        """Wait until the clients report a sent order; None once they do, else why not (exited, or silent)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.poll()
            if self.sending:
                return None
            if self.exited_at is not None:
                return f"the load generator exited (rc {self.proc.returncode}) before sending an order"
            time.sleep(0.1)
        return f"the clients sent no order within {timeout:g} s of starting"

    def wait_connected(self, share: float, timeout: float = STARTUP_S) -> float | None:
        """Wait until the clients report at least `share` of their sessions connected (a loaded stack takes
        seconds to accept hundreds of them); the share reached (None: no report), when reached or at the timeout,
        or as soon as they are in trouble."""
        deadline = time.time() + timeout
        while True:
            self.poll()
            last = self.reports[-1] if self.reports else None
            reached = last.connected / last.sessions if last and last.sessions else None
            if (reached is not None and reached >= share) or time.time() >= deadline or self.trouble():
                return reached
            time.sleep(0.1)

    def trouble(self, now: float | None = None) -> str | None:
        """Why the clients are not running as they should (ended without being stopped, or silent for SILENT_S);
        None while they are. The first trouble is kept in `failure`."""
        if self.failure or self.stopped:
            return self.failure
        now = time.time() if now is None else now
        self.poll()
        if self.exited_at is not None:
            self.failure = (f"the load generator exited (rc {self.proc.returncode}) "
                            f"{self.exited_at - self.started:.1f} s after it started, while the drill still needed it")
        elif now - (last := self.heard or self.started) > SILENT_S:
            self.failure = (f"the load generator reported no progress for {now - last:.1f} s "
                            f"({now - self.started:.1f} s after it started)")
        return self.failure

    def error_rate(self, over_s: float, now: float | None = None) -> float | None:
        """Share of the orders answered in the last `over_s` seconds that were not served at once; None when the
        reports do not reach back that far or no order was answered in that time."""
        now = time.time() if now is None else now
        if not self.reports or self.reports[0].t > now - over_s:
            return None
        then = next(r for r in reversed(self.reports) if r.t <= now - over_s)
        last = self.reports[-1]
        answered = last.answered - then.answered
        if answered <= 0:
            return None
        return (answered - (last.served_at_once - then.served_at_once)) / answered
