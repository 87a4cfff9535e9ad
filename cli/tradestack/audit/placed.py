"""What each host of a stack must run, for the controls that judge it: the supervised programs per service,
and the user each trading program must run as. A control with no placed program to judge on a host does not
count that host as a target: nothing judged is never a pass."""

from __future__ import annotations

from typing import Any

PROGRAMS = {"gateway": ["haproxy", "keepalived", "tradestack-gateway"], "router": ["haproxy", "tradestack-router"],
            "orderdb": ["patroni"], "consensus": ["etcd"], "venue": ["tradestack-venue"],
            "monitoring": ["prometheus", "alertmanager"]}


def programs(ctx: Any, service: str) -> list[str]:
    """What a host of `service` runs: a service run in clusters leaves only its site's load balancing on hosts."""
    return [p for p in PROGRAMS.get(service, []) if p.removeprefix("tradestack-") not in ctx["clustered"]]


def service_users(service_user: str) -> dict[str, str]:
    """Each trading program and the user it must run as (the trading services' user is a stack setting)."""
    return {"tradestack-gateway": service_user, "tradestack-router": service_user,
            "tradestack-venue": service_user, "patroni": "postgres", "etcd": "etcd"}


def trading_programs(ctx: Any, host: str) -> dict[str, str]:
    """The trading programs placed on `host`, each with the user it must run as."""
    users = service_users(ctx["service_user"])
    return {p: users[p] for p in programs(ctx, ctx.inventory[host]["service"]) if p in users}
