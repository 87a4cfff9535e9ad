"""One definition of a stack's steady state, on any substrate: drill preflight and afterwards, and capacity
verify between scenarios, ask this question."""

from __future__ import annotations

from ..polling import until_clear
from ..substrates import Substrate


def steady_problems(stack: Substrate) -> list[str]:
    """What keeps the stack from its steady state (empty: steady)."""
    found = list(stack.routing_problems())
    members = stack.database_members()
    if "leader" not in members.values():
        found.append("database: no Patroni leader")
    if len(stack.of("orderdb")) > 1 and "sync_standby" not in members.values():
        found.append("database: no synchronous standby")
    for site, holder in stack.vip_holders().items():
        if holder is None:
            found.append(f"{site}: nobody holds the VIP")
    for host in stack.hosts.values():
        if host.service == "loadgen":  # the clients' host runs load on demand, nothing supervised
            continue
        programs = stack.programs(host.name)
        if not programs:
            found.append(f"{host.name}: no supervised programs (not deployed, or crashed)")
        found += [f"{host.name}: {p} is {s}" for p, s in programs.items() if s != "running"]
    for site in stack.vips:
        code = stack.vip_ready(site)
        if code != 200:
            found.append(f"{site}: the VIP does not answer ready ({code or 'no answer'})")
    return found


def wait_steady(stack: Substrate, timeout: float) -> list[str]:
    """Wait until the stack is steady; what still keeps it from that after `timeout` (empty: steady)."""
    return until_clear(lambda: steady_problems(stack), timeout, interval=1.0)
