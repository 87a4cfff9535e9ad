"""Measured capacity: what one instance of each service was seen to carry in the deployed stack.

`capacity verify` drives the stack with every site up and with each site cut off; a scenario's
carried rate counts only when its p99 stayed within the latency bound. For a stateless service
one instance carried (rate / instances alive in that scenario); for a replicated service the
primary carried the whole rate. The figure is what was acknowledged, never rounded up to the target
and never cut down to it (a run that acknowledged more than its target shows more). A figure whose
scenario carried what it was offered (CARRIED_SHARE of its target or more) is marked capped by the
offered load: the stack may carry more, and only a run offering more can show it. The most any
passing scenario showed is the measured figure: it was demonstrated, so declaring up to it is
honest; declaring more is not.

`capacity check --measured FILE` compares a topology's declared per-instance capacity with it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from ..errors import InputError
from ..topology.model import Topology
from ..yamlsource import load_yaml, validate_model

NonNegative = Annotated[float, Field(ge=0)]
# A scenario carried its target when clients got at least this share of it acknowledged in the window (the rest
# is the tail still in flight when the window closed): `capacity verify` passes it, and it shows the target.
CARRIED_SHARE = 0.95


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScenarioFigure(_Strict):
    scenario: str                 # "all sites up" | "site X down"
    cut_site: str | None
    target_per_s: NonNegative
    acked_per_s: NonNegative
    p99_ms: NonNegative | None
    within_bound: bool            # p99 at or under the latency bound: the carried rate counts
    sessions: int = Field(ge=0)


class ServiceFigure(_Strict):
    kind: str
    instances: int = Field(ge=0)                     # as deployed
    orders_per_second: NonNegative                   # per instance, the most a counted scenario showed
    shown_by: str | None                             # the scenario that showed it
    sessions: NonNegative | None = None              # per instance, when sessions were measured
    # its scenario carried what it was offered: the offered load, not the stack, set this figure
    capped_by_offered_load: bool = False


class MeasuredCapacity(_Strict):
    stack: str
    topology: str
    measured_at: dt.datetime
    latency_bound_ms: NonNegative
    scenarios: list[ScenarioFigure]
    services: dict[str, ServiceFigure]


def derive(topology: Topology, stack: str, scenarios: list[ScenarioFigure], latency_bound_ms: float,
           sessions_measured: bool = False, now: dt.datetime | None = None) -> MeasuredCapacity:
    """Per-instance figures from scenario measurements (pure)."""
    services: dict[str, ServiceFigure] = {}
    for svc in topology.services:
        if svc.kind == "quorum" or "orders_per_second" not in svc.capacity:
            continue
        best, by, best_sessions, capped = 0.0, None, None, False
        for s in scenarios:
            if not s.within_bound:
                continue
            alive = svc.instances - (svc.placement.get(s.cut_site, 0) if s.cut_site else 0)
            if alive <= 0:
                continue
            per = s.acked_per_s / alive if svc.kind == "stateless" else s.acked_per_s
            if per > best:
                best, by, capped = per, s.scenario, s.acked_per_s >= CARRIED_SHARE * s.target_per_s
            if sessions_measured and "sessions" in svc.capacity:
                held = s.sessions / alive if svc.kind == "stateless" else float(s.sessions)
                best_sessions = max(best_sessions or 0.0, held)
        services[svc.name] = ServiceFigure(kind=svc.kind, instances=svc.instances,
                                           orders_per_second=round(best, 1), shown_by=by,
                                           sessions=None if best_sessions is None else round(best_sessions, 1),
                                           capped_by_offered_load=capped)
    return MeasuredCapacity(stack=stack, topology=topology.name, measured_at=now or dt.datetime.now(dt.UTC),
                            latency_bound_ms=latency_bound_ms, scenarios=scenarios, services=services)


def load_measured(path: Path) -> MeasuredCapacity:
    """A measured-capacity file written by `capacity verify --write-measured`; errors name file and line."""
    doc = load_yaml(Path(path), InputError)
    return validate_model(MeasuredCapacity, doc, InputError)


def dump_measured(measured: MeasuredCapacity) -> str:
    import yaml

    head = (f"# Measured capacity of stack {measured.stack!r} (topology {measured.topology!r}), written by\n"
            f"# `tradestack capacity verify --write-measured`. Per instance; compare with\n"
            f"# `tradestack capacity check TOPOLOGY --measured THIS_FILE`.\n")
    return head + yaml.safe_dump(measured.model_dump(mode="json"), sort_keys=False)


@dataclass(frozen=True)
class Comparison:
    service: str
    metric: str
    declared: float | None        # per instance, from the topology
    measured: float | None        # per instance, from the file; None: not measured
    ok: bool
    detail: str


def compare(topology: Topology, measured: MeasuredCapacity) -> list[Comparison]:
    """Declared vs measured per service and metric: declaring more than was measured fails (pure)."""
    rows = []
    for svc in topology.services:
        for metric, declared in sorted(svc.capacity.items()):
            fig = measured.services.get(svc.name)
            value = None if fig is None else (fig.orders_per_second if metric == "orders_per_second"
                                              else fig.sessions if metric == "sessions" else None)
            if value is None:
                rows.append(Comparison(svc.name, metric, declared, None, False,
                                       f"declared {declared:g} per instance, never measured"))
            elif declared > value:
                capped = fig is not None and fig.capped_by_offered_load and metric == "orders_per_second"
                rows.append(Comparison(svc.name, metric, declared, value, False,
                                       f"declares {declared:g} per instance; {value:g} was measured"
                                       + (" (capped by the offered load: verify with more to show more)"
                                          if capped else "")))
            else:
                rows.append(Comparison(svc.name, metric, declared, value, True, "within what was measured"))
    return rows
