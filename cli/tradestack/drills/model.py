"""The drill file's schema (pydantic v2): what to break, under what load, and what must hold.

A drill speaks the topology's language: its faults are the substrates' vocabulary (substrates/faults.py), naming
risk groups, hosts, services and upstreams; its load is a fraction of the topology's peak.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated

from pydantic import Field, StringConstraints

from ..substrates.faults import Fault, Seconds, Strict

DrillName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*$", max_length=48)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class Load(Strict):
    """The drill's clients: a share of the topology's peak, both its order rate and its sessions (each session
    holds its connection and refreshes its balance screen every `refresh_s`, the topology's when not given)."""
    peak_fraction: Annotated[float, Field(gt=0, le=10)] = 1.0   # of the topology's peak orders/s and sessions
    sessions: Annotated[int, Field(ge=1, le=20_000)] | None = None   # default: peak sessions x peak_fraction
    refresh_s: Annotated[float, Field(gt=0, le=3600)] | None = None
    overnight_share: Fraction = 0.5                              # orders for the overnight venue
    limit_share: Fraction = 0.0


class Timing(Strict):
    baseline_s: Seconds = 5.0     # load before any fault: the "before" figures
    recovery_s: Seconds = 20.0    # load after every fault is restored (however long that took): the "after" figures
    settle_s: Seconds = 60.0      # how long orders may still be routed before reconciling


class Expectations(Strict):
    max_recovery_s: Annotated[float, Field(ge=0)] | None = None   # fault to sustained service (0: never noticed)
    max_acked_lost: Annotated[int, Field(ge=0)] = 0
    max_duplicates: Annotated[int, Field(ge=0)] = 0
    max_error_rate: Fraction | None = None                        # client-visible, over the whole drill
    wrong_balances: Annotated[int, Field(ge=0)] = 0
    every_order_accounted: bool = True   # no order left pending or ended without a reason


class Abort(Strict):
    """Stop injecting and restore at once when clients suffer more than this for this long."""
    error_rate: Fraction = 1.0
    for_s: Annotated[float, Field(gt=0)] = 30.0


AlertName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128)]


class ExpectedAlert(Strict):
    """An alert the fault must raise (infra/monitoring/rules), judged on what Alertmanager sent the on-call: its
    first notification within `notified_within_s` of the fault, its resolved notification within
    `resolved_within_s` of the restore."""
    alert: AlertName
    notified_within_s: Annotated[float, Field(gt=0, le=3600)] = 15.0
    resolved_within_s: Annotated[float, Field(gt=0, le=3600)] = 60.0


class Drill(Strict):
    name: DrillName
    description: str
    faults: list[Fault] = Field(min_length=1)
    load: Load = Load()
    timing: Timing = Timing()
    expect: Expectations = Expectations()
    abort: Abort = Abort()
    alerts: list[ExpectedAlert] = []   # what the on-call must be sent (a stack with monitoring hosts)

    @property
    def digest(self) -> str:
        """SHA-256 of the definition as parsed (faults, load, timing, expectations, abort, alerts; not the file's
        layout or comments): what a run is evidence of. A renamed or edited copy of a catalogue drill has another
        digest."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def fault_window_s(self) -> float:
        """From the first injection to the last restore."""
        return max(f.at_s + f.duration_s for f in self.faults)
