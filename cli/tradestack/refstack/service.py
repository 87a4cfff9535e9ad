"""One component of the reference stack in the foreground, from its configuration file: what supervisors and
container images start (`tradestack refstack serve KIND --config FILE`, `python -m tradestack.refstack KIND ...`)."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError

from ..errors import InputError

from .config import GatewayConfig, RouterConfig, VenueConfig, load_config
from .httpserver import run_service

KINDS = ("gateway", "router", "venue")
Named = TypeVar("Named", GatewayConfig, RouterConfig)


def _named(config: Named, instance: str | None) -> Named:
    if instance is None:
        return config
    try:
        return type(config).model_validate({**config.model_dump(), "instance": instance})
    except ValidationError as exc:
        raise InputError(f"--instance {instance!r}: {exc.errors()[0]['msg']}") from None


def serve_component(kind: str, config: Path, instance: str | None = None) -> None:
    """Run `kind` until SIGTERM or Ctrl-C; a bad configuration raises InputError (with file:line). `instance`
    names this one where many share a configuration file (the replicas of a Deployment: their pod names)."""
    from . import gateway, router, venue

    if kind == "gateway":
        gw = _named(load_config(GatewayConfig, config), instance)
        run_service(lambda stop: gateway.serve(gw, stop))
    elif kind == "router":
        rc = _named(load_config(RouterConfig, config), instance)
        run_service(lambda stop: router.serve(rc, stop))
    elif kind == "venue":
        vc = load_config(VenueConfig, config)
        run_service(lambda stop: venue.serve(vc, stop))
    else:
        raise ValueError(f"no component {kind!r}; one of {', '.join(KINDS)}")
