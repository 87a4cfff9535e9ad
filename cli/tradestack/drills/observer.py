"""Watching the control plane while a drill runs: one sample every SAMPLE_S, on any substrate."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable

from ..substrates import Substrate
from . import figures

SAMPLE_S = 0.5


class Observer(threading.Thread):
    """Samples the control plane every SAMPLE_S: database leader, VIP holders, breakers, the substrate's signals."""

    def __init__(self, substrate: Substrate, on_sample: Callable[[figures.Sample], None]):
        super().__init__(daemon=True, name="drill-observer")
        self.substrate, self.on_sample = substrate, on_sample
        self.samples: list[figures.Sample] = []
        self.errors = 0                  # samples lost to a probe that failed (each is a gap in the timeline)
        self.last_error: str | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        sub = self.substrate
        probes = (sub.probe.breakers, sub.probe.database_leader, sub.vip_holders, sub.signals)
        # the four questions at once: a sample takes its slowest probe's time, not their sum (over SSH that is
        # the difference between a fault seen in one second and in several)
        with ThreadPoolExecutor(max_workers=len(probes), thread_name_prefix="drill-probe") as pool:
            while not self.stopping.is_set():
                t = time.time()
                try:
                    breakers, leader, holders, signals = [f.result() for f in [pool.submit(p) for p in probes]]
                    # stamped when the probes are done: a probe that ran into a fault must not count as before it
                    sample = figures.Sample(time.time(), leader, holders,
                                            sum(s != "closed" for r in breakers.values() for s in r.values()),
                                            signals)
                except Exception as exc:  # a gap in the timeline, counted: the verdict judges how much was watched
                    self.errors += 1
                    self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                    self.stopping.wait(max(0.0, SAMPLE_S - (time.time() - t)))
                    continue
                self.samples.append(sample)
                self.on_sample(sample)
                self.stopping.wait(max(0.0, SAMPLE_S - (time.time() - t)))
