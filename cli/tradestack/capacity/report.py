"""Results of a capacity check. Arrays hold every scenario; objects are built on demand."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np


class Reason(StrEnum):
    """Why a service fails in a scenario; the first that applies wins, in this order."""

    RPO = "rpo"  #: asynchronous primary's site is down: acknowledged orders may be lost
    UNAVAILABLE = "unavailable"  #: no instance in a site that is up
    QUORUM = "quorum"  #: no strict majority of members in sites that are up
    CAPACITY = "capacity"  #: instances left cannot carry peak x headroom
    UPSTREAMS = "upstreams"  #: every upstream it can send to has failed
    REQUIRES = "requires"  #: a service it requires is down


# Integer codes used in the result arrays; 0 means "ok".
REASONS: list[Reason | None] = [None, *Reason]
CODE = {reason: i for i, reason in enumerate(REASONS) if reason is not None}


@dataclass(frozen=True)
class ServiceSpec:
    """What the report needs to know about a service to explain a result."""

    name: str
    kind: str
    instances: int
    capacity: dict[str, float]
    required: dict[str, float]
    primary_site: str | None
    upstreams: list[str]
    requires: list[str]

    def available(self, up_instances: int) -> dict[str, float]:
        if self.kind == "quorum":
            return {"members": float(up_instances)}
        if self.kind == "replicated":
            return {m: (c if up_instances > 0 else 0.0) for m, c in self.capacity.items()}
        return {m: c * up_instances for m, c in self.capacity.items()}

    def requirements(self) -> dict[str, float]:
        if self.kind == "quorum":
            return {"members": float(self.instances // 2 + 1)}
        return self.required


@dataclass(frozen=True)
class MetricResult:
    required: float
    available: float

    @property
    def ok(self) -> bool:
        return self.available + 1e-9 >= self.required

    @property
    def deficit(self) -> float:
        return max(0.0, self.required - self.available)


@dataclass(frozen=True)
class ServiceResult:
    ok: bool
    reason: Reason | None
    detail: str | None
    metrics: dict[str, MetricResult]


@dataclass(frozen=True)
class ScenarioResult:
    failed: list[str]
    ok: bool
    services: dict[str, ServiceResult]

    @property
    def failing_services(self) -> dict[str, ServiceResult]:
        return {name: r for name, r in self.services.items() if not r.ok}


@dataclass
class CapacityReport:
    """Outcome of every scenario checked. `ok` is True only when all of them pass."""

    topology: str
    depth: int
    groups: list[str]
    services: list[ServiceSpec]
    scenarios: np.ndarray  # (n, width) group indices, padded with len(groups)
    reasons: np.ndarray  # (n, services) int8, 0 = ok, else index into REASONS
    up_instances: np.ndarray  # (n, services) int32: instances in sites that are up
    sites_down: np.ndarray  # (n, sites) bool
    site_names: list[str]
    failed_upstreams: np.ndarray  # (n, upstreams) bool
    upstream_names: list[str]
    spofs: list[str]

    @property
    def scenario_count(self) -> int:
        return int(self.scenarios.shape[0])

    @property
    def failing(self) -> np.ndarray:
        """Indices of the scenarios in which at least one service fails."""
        return np.flatnonzero(self.reasons.any(axis=1))

    @property
    def ok(self) -> bool:
        return not bool(self.reasons.any())

    def failed_groups(self, i: int) -> list[str]:
        pad = len(self.groups)
        return sorted(self.groups[g] for g in self.scenarios[i] if g != pad)

    def down_sites(self, i: int) -> list[str]:
        return [s for s, down in zip(self.site_names, self.sites_down[i]) if down]

    def scenario(self, i: int) -> ScenarioResult:
        results: dict[str, ServiceResult] = {}
        for j, spec in enumerate(self.services):
            up = int(self.up_instances[i, j])
            available = spec.available(up)
            metrics = {m: MetricResult(req, available.get(m, 0.0)) for m, req in spec.requirements().items()}
            reason = REASONS[int(self.reasons[i, j])]
            results[spec.name] = ServiceResult(reason is None, reason, self._detail(i, j, spec, reason, up),
                                               metrics)
        return ScenarioResult(self.failed_groups(i), not bool(self.reasons[i].any()), results)

    def _detail(self, i: int, j: int, spec: ServiceSpec, reason: Reason | None, up: int) -> str | None:
        if reason is None:
            return None
        if reason is Reason.RPO:
            return (f"asynchronous primary site {spec.primary_site} is down: acknowledged orders "
                    "may be lost on failover")
        if reason is Reason.UNAVAILABLE:
            return f"none of its {spec.instances} instances is in a site that is up"
        if reason is Reason.QUORUM:
            return f"{up} of {spec.instances} members up, {spec.instances // 2 + 1} needed"
        if reason is Reason.CAPACITY:
            return f"{up} of {spec.instances} instances up"
        if reason is Reason.UPSTREAMS:
            return "every upstream failed: " + ", ".join(spec.upstreams)
        names = [s.name for s in self.services]
        down = [r for r in spec.requires if self.reasons[i, names.index(r)] != 0]
        return ", ".join(down) + (" is" if len(down) == 1 else " are") + " down"

    def to_dict(self, *, failing_only: bool = False) -> dict[str, Any]:
        """The `--json` document: see README "capacity check --json"."""
        rows = self.failing if failing_only else range(self.scenario_count)
        return {
            "topology": self.topology,
            "depth": self.depth,
            "ok": self.ok,
            "risk_groups": list(self.groups),
            "spofs": list(self.spofs),
            "scenario_count": self.scenario_count,
            "failing_count": int(self.failing.size),
            "scenarios": [self._scenario_dict(int(i)) for i in rows],
        }

    def _scenario_dict(self, i: int) -> dict[str, Any]:
        result = self.scenario(i)
        return {
            "failed": result.failed,
            "ok": result.ok,
            "sites_down": self.down_sites(i),
            "services": {
                name: {
                    "ok": r.ok,
                    "reason": r.reason.value if r.reason else None,
                    "detail": r.detail,
                    "metrics": {m: {"required": v.required, "available": v.available}
                                for m, v in r.metrics.items()},
                }
                for name, r in result.services.items()
            },
        }
