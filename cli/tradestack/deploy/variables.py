"""What the playbooks are told, derived from the topology and the stack's outputs (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..hostsettings import HostSettings
from ..substrates.base import HostTraits
from .. import ports
from ..topology.addresses import site_vips
from ..topology.model import Topology
from ..builds import wheelhouse as wheelhouse_module

SECRET_NAMES = ("dbSuperuserPassword", "dbReplicationPassword", "dbAppPassword")
GATEWAY_IN_FLIGHT = 256
# A gateway refuses (429) above its declared capacity x this. The declared figure is what it was measured to
# carry and what the capacity rules count on; a stack running exactly at it (a site cut off, the survivors at
# peak x headroom) must not be refused, or the refused clients' retries push it over and 429s snowball.
ADMISSION_MARGIN = 1.25


@dataclass(frozen=True)
class DeployVars:
    public: dict[str, Any]   # safe to log and keep in artifacts
    secret: dict[str, Any]   # passed through a file that lives only as long as the run


def routes(upstreams: list[str]) -> list[dict[str, Any]]:
    """Regular session: the first upstream, no alternate. Overnight: the others first, then the first."""
    if not upstreams:
        return []
    regular = {"session": "regular", "venues": [upstreams[0]], "reroute": False}
    overnight = {"session": "overnight", "venues": [*upstreams[1:], upstreams[0]], "reroute": True}
    return [regular, overnight]


def build(topology: Topology, outputs: dict[str, Any], secrets: dict[str, str], *, traits: HostTraits,
          wheelhouse: str, wheel: str, wheel_sha256: str, seed_accounts: int = 1000,
          settings: HostSettings = HostSettings()) -> DeployVars:
    gateway = next((s for s in topology.services if s.name == "gateway"), None)
    capacity = (gateway.capacity if gateway else None) or {}
    rate = round(float(capacity.get("orders_per_second", 400)) * ADMISSION_MARGIN, 2)
    upstreams = [u.name for u in topology.upstreams]
    public: dict[str, Any] = {
        "tradestack_vips": site_vips(topology, outputs["site_prefixes"]),
        "tradestack_admission": {"max_in_flight": GATEWAY_IN_FLIGHT, "orders_per_second": rate,
                                 # one second of the rate: arrivals at the declared capacity that bunch up
                                 # (round-robin, clients catching up after a stall) are not refused; a quarter
                                 # second refused 1-2% of them at exactly the declared rate, p99 over its bound
                                 "burst": max(1, int(rate)), "retry_after_s": 1},
        "tradestack_venues": [{"name": u, "host": outputs["upstreams"][u], "port": ports.VENUE} for u in upstreams],
        "tradestack_routes": routes(upstreams),
        "tradestack_wheelhouse": wheelhouse,
        "tradestack_wheel": wheel,
        "tradestack_wheel_sha256": wheel_sha256,
        "tradestack_patroni_requirements": list(wheelhouse_module.PATRONI),
        "tradestack_host_requirements": wheelhouse_module.HOST_REQUIREMENTS,
        "tradestack_seed_accounts": seed_accounts,
        **ports.playbook_vars(),
        **settings.playbook_vars(),
        **traits.playbook_vars(),  # e.g. the lab: one kernel, one filesystem, no systemd (group_vars/all.yml)
    }
    secret = {"postgres_superuser_password": secrets["dbSuperuserPassword"],
              "postgres_replication_password": secrets["dbReplicationPassword"],
              "tradestack_db_password": secrets["dbAppPassword"]}
    return DeployVars(public, secret)
