"""One definition of a stack's steady state, on any substrate: drill preflight and afterwards, and capacity
verify between scenarios, ask this question."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from .. import health
from ..polling import each, until_clear
from ..substrates import Substrate


def steady_problems(stack: Substrate) -> list[str]:
    """What keeps the stack from its steady state (empty: steady), judged as `status` and the audit judge.
    Every question is asked at once (over SSH each is a round trip to a host, and there are about twenty)."""
    # the clients' host runs load on demand, nothing supervised
    supervised = [h for h in stack.hosts.values() if h.service != "loadgen"]

    def members() -> list[dict]:
        probe = next(iter(stack.live_hosts(stack.of("router"))), None)
        return stack.probe.cluster_members(probe.name) if probe is not None else []

    with ThreadPoolExecutor(max_workers=6, thread_name_prefix="steady") as pool:
        routing = pool.submit(stack.routing_problems)
        cluster = pool.submit(members)
        holders = pool.submit(stack.vip_holders)
        programs = pool.submit(each, supervised, lambda h: stack.programs(h.name))
        ready = pool.submit(each, list(stack.vips), stack.probe.vip_ready, lambda site: site)
        workloads = pool.submit(stack.clusters.problems if stack.clusters else list)
        found = list(routing.result())
        found += health.database_problems(cluster.result(), {h.name: h.site for h in stack.hosts.values()},
                                          expected=len(stack.of("orderdb")))
        for site, holder in holders.result().items():
            found += health.vip_problems(site, stack.vips[site], [holder] if holder else [])
        for host in supervised:
            found += health.program_problems(host.name, programs.result()[host.name])
        for site, code in ready.result().items():
            if code != 200:
                found.append(f"{site}: the VIP does not answer ready ({code or 'no answer'})")
        found += workloads.result()
    return found


def wait_steady(stack: Substrate, timeout: float) -> list[str]:
    """Wait until the stack is steady; what still keeps it from that after `timeout` (empty: steady)."""
    return until_clear(lambda: steady_problems(stack), timeout, interval=1.0)
