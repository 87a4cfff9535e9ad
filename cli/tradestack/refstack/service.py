"""One component of the reference stack in the foreground, from its configuration file: what supervisors and
container images start (`tradestack refstack serve KIND --config FILE`, `python -m tradestack.refstack KIND ...`)."""

from __future__ import annotations

from pathlib import Path

from .config import GatewayConfig, RouterConfig, VenueConfig, load_config
from .httpserver import run_service

KINDS = ("gateway", "router", "venue")


def serve_component(kind: str, config: Path) -> None:
    """Run `kind` until SIGTERM or Ctrl-C; a bad configuration raises InputError (with file:line)."""
    from . import gateway, router, venue

    if kind == "gateway":
        gw = load_config(GatewayConfig, config)
        run_service(lambda stop: gateway.serve(gw, stop))
    elif kind == "router":
        rc = load_config(RouterConfig, config)
        run_service(lambda stop: router.serve(rc, stop))
    elif kind == "venue":
        vc = load_config(VenueConfig, config)
        run_service(lambda stop: venue.serve(vc, stop))
    else:
        raise ValueError(f"no component {kind!r}; one of {', '.join(KINDS)}")
