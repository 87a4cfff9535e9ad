"""The topology file's schema (pydantic v2). Field names are a public contract: see README."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*$", max_length=32)]
"""Lower-case names: they end up in namespace, host and interface names."""

Metric = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
RiskGroup = Annotated[str, StringConstraints(pattern=r"^\S+$", min_length=1, max_length=128)]
PositiveNumber = Annotated[float, Field(gt=0)]
PositiveCount = Annotated[int, Field(gt=0)]

SiteRole = Literal["active", "standby", "witness"]
# monitoring: the stack's own Prometheus and Alertmanager, one per data site, so losing a site does not blind the
# survivors; it carries no clients' load (no capacity) and no service requires it
ServiceKind = Literal["stateless", "replicated", "quorum", "monitoring"]
Replication = Literal["synchronous", "asynchronous"]


class _Strict(BaseModel):
    # strict: "300" is not a number and `yes` is not a count; extra: typos are errors, not ignored.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Carrier(_Strict):
    name: Name


class Uplink(_Strict):
    carrier: Name
    risk_groups: list[RiskGroup] = []


class Site(_Strict):
    name: Name
    role: SiteRole
    risk_groups: list[RiskGroup] = []
    uplinks: list[Uplink] = Field(min_length=1)


class Upstream(_Strict):
    name: Name
    risk_groups: list[RiskGroup] = []


class Objectives(_Strict):
    """A critical function's recovery objectives: service back within `rto_s` seconds of a failure, at most
    `rpo_orders` acknowledged orders lost (the BC/DR report judges the period's drills against them)."""

    rto_s: PositiveNumber
    rpo_orders: int = Field(0, ge=0)


class Service(_Strict):
    name: Name
    kind: ServiceKind
    capacity: dict[Metric, PositiveNumber] = {}
    placement: dict[Name, PositiveCount] = Field(min_length=1)
    replication: Replication | None = None
    upstreams: list[Name] = []
    requires: list[Name] = []
    objectives: Objectives | None = None  # a critical function's RTO and RPO (evidence report)

    @model_validator(mode="after")
    def _kind_fields(self) -> Service:
        if self.kind == "replicated" and self.replication is None:
            raise ValueError("a replicated service must say `replication: synchronous` or `asynchronous`")
        if self.kind != "replicated" and self.replication is not None:
            raise ValueError(f"`replication` applies only to replicated services, not {self.kind}")
        if self.kind == "quorum" and self.capacity:
            raise ValueError("a quorum service has members, not capacity: remove `capacity`")
        if self.kind == "monitoring" and (self.capacity or self.upstreams or self.requires):
            raise ValueError("a monitoring service carries no clients' load: remove `capacity`, `upstreams` and "
                             "`requires`")
        return self

    @property
    def instances(self) -> int:
        return sum(self.placement.values())


class Topology(_Strict):
    name: Name
    peak: dict[Metric, PositiveNumber] = Field(min_length=1)
    headroom: float = Field(ge=1.0, le=100.0)
    # capacity that survives the worst failure must also carry the peak clients were observed to reach (Prometheus
    # history: `capacity peak`) times this; CSRC's 2023 measures ask at least 2x the historical peak
    observed_multiple: float = Field(1.0, ge=1.0, le=100.0)
    # each client session at peak holds its connection and refreshes its balance screen this often
    session_refresh_s: float = Field(10.0, gt=0, le=3600)
    carriers: list[Carrier] = Field(min_length=1)
    sites: list[Site] = Field(min_length=1)
    upstreams: list[Upstream] = []
    services: list[Service] = Field(min_length=1)

    def site(self, name: str) -> Site:
        return next(s for s in self.sites if s.name == name)

    def service(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    def required(self, metric: str) -> float:
        """Capacity every service declaring `metric` must keep: peak x headroom."""
        return self.peak[metric] * self.headroom
