"""One definition of a stack's steady state, on any substrate: drill preflight and afterwards, and capacity
verify between scenarios, ask this question."""

from __future__ import annotations

from .. import health
from ..polling import until_clear
from ..substrates import Substrate


def steady_problems(stack: Substrate) -> list[str]:
    """What keeps the stack from its steady state (empty: steady), judged as `status` and the audit judge."""
    found = list(stack.routing_problems())
    probe = next(iter(stack.live_hosts(stack.of("router"))), None)
    members = stack.cluster_members(probe.name) if probe is not None else []
    found += health.database_problems(members, {h.name: h.site for h in stack.hosts.values()},
                                      expected=len(stack.of("orderdb")))
    for site, holder in stack.vip_holders().items():
        found += health.vip_problems(site, stack.vips[site], [holder] if holder else [])
    for host in stack.hosts.values():
        if host.service == "loadgen":  # the clients' host runs load on demand, nothing supervised
            continue
        found += health.program_problems(host.name, stack.programs(host.name))
    for site in stack.vips:
        code = stack.vip_ready(site)
        if code != 200:
            found.append(f"{site}: the VIP does not answer ready ({code or 'no answer'})")
    return found


def wait_steady(stack: Substrate, timeout: float) -> list[str]:
    """Wait until the stack is steady; what still keeps it from that after `timeout` (empty: steady)."""
    return until_clear(lambda: steady_problems(stack), timeout, interval=1.0)
