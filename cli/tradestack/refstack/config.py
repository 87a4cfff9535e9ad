"""Typed configuration of every reference-stack process (read from YAML/JSON with file:line errors)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .. import ports
from ..errors import InputError
from ..yamlsource import load_yaml, validate_model

Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*$", max_length=40)]
Port = Annotated[int, Field(ge=0, le=65535)]
Session = Literal["regular", "overnight"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Admission(_Strict):
    """Per-instance limits; set them from the capacity the topology declares for one gateway."""

    max_in_flight: int = Field(64, ge=1, description="requests processed at once; more get 429")
    orders_per_second: float = Field(400.0, gt=0, description="sustained order rate (token bucket); the lab declares 400 per gateway")
    # one second of the rate, as a deploy sets it (deploy/variables.py): clients catching up after a stall (a
    # failover's parked orders) bunch up, and a smaller burst turned their catch-up into 429s and retries
    burst: int = Field(400, ge=1, description="orders accepted at once above the sustained rate")
    retry_after_s: int = Field(1, ge=1, le=60)


class GatewayConfig(_Strict):
    instance: Name = "gateway-1"
    host: str = "127.0.0.1"
    port: Port = ports.ORDERS
    dsn: str
    admission: Admission = Admission()
    db_timeout_s: float = Field(1.0, gt=0, description="wait for a database connection before 503")
    park_s: float = Field(8.0, ge=0, description="a new order that arrives while the database has no writable "
                                                 "leader waits this long for one before a 503 (shorter than a "
                                                 "client's timeout; 0: never parked)")
    max_parked: int = Field(5000, ge=0, description="orders parked at once; more are answered 503 at once")
    router_stale_s: float = Field(3.0, gt=0, description="a router heartbeat older than this is not ready")
    pool_size: int = Field(10, ge=1, le=200)


class VenueEndpoint(_Strict):
    name: Name
    host: str = "127.0.0.1"
    port: Port


class Route(_Strict):
    """Where orders of one trading session go: the first venue whose circuit is closed."""

    session: Session
    venues: list[Name] = Field(min_length=1)
    reroute: bool = Field(True, description="may an order go to the next venue when the first is unavailable")


class Breaker(_Strict):
    """When a venue's circuit opens and how it is probed again."""

    ack_timeout_s: float = Field(0.5, gt=0, description="no ack within this: the venue is unhealthy")
    window_s: float = Field(1.0, gt=0, description="window for counting reject and cancel storms")
    reject_storm: int = Field(5, ge=1, description="system rejects within the window that open the circuit")
    cancel_storm: int = Field(5, ge=1, description="unsolicited cancels within the window that open it")
    cooldown_s: float = Field(1.0, gt=0, description="first wait before probing an open circuit")
    max_cooldown_s: float = Field(30.0, gt=0, description="cooldown doubles while a venue keeps failing")


class RouterConfig(_Strict):
    instance: Name = "router-1"
    host: str = "127.0.0.1"
    port: Port = ports.ROUTER
    dsn: str
    venues: list[VenueEndpoint] = Field(min_length=1)
    routes: list[Route] = Field(min_length=1)
    breaker: Breaker = Breaker()
    lease_s: float = Field(5.0, gt=0, description="an order claimed by a router that died is re-claimed after this")
    poll_s: float = Field(0.2, gt=0, description="look for work at least this often (NOTIFY wakes it sooner)")
    batch: int = Field(100, ge=1, le=10000)
    claim_linger_s: float = Field(0.01, ge=0, le=1, description="after a wake, gather orders this long before "
                                                                "claiming: one claim for many orders, not one "
                                                                "per order and router")
    concurrency: int = Field(256, ge=1, description="orders in flight to venues at once")
    sweep_after_s: float = Field(1.0, gt=0, description="an order left acked or venue_unknown this long is "
                                                         "checked against its venue by the sweep")
    sweep_every_s: float = Field(2.0, gt=0, description="start a full sweep of non-final orders at most this often")
    sweep_page: int = Field(500, ge=1, le=5000, description="orders asked about in one status request")

    @model_validator(mode="after")
    def _routes_name_venues(self) -> "RouterConfig":
        known = {v.name for v in self.venues}
        problems = [f"route {r.session!r} names unknown venue {v!r}" for r in self.routes for v in r.venues
                    if v not in known]
        sessions = [r.session for r in self.routes]
        problems += [f"session {s!r} has more than one route" for s in set(sessions) if sessions.count(s) > 1]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def route_for(self, session: str) -> Route | None:
        return next((r for r in self.routes if r.session == session), None)


class VenueConfig(_Strict):
    name: Name = "exchange"
    host: str = "127.0.0.1"
    port: Port = ports.VENUE
    admin_port: Port = ports.VENUE_ADMIN
    reference_price: float = Field(100.0, gt=0, description="market orders fill at this price")


C = TypeVar("C", bound=BaseModel)


def load_config(model: type[C], path: Path) -> C:
    """Read one process's configuration; every problem comes back with file:line."""
    return validate_model(model, load_yaml(path, InputError), InputError)
