"""The trading stack's own questions (its database leader, Patroni's members, the routers' breakers, a site's
readiness), asked on any substrate through its primitives: HTTP from a host (curl there), its programs, its
secrets. Built once, here; a substrate never re-implements them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import health, ports
from ..polling import each
from .inventory import Host

if TYPE_CHECKING:
    from .base import Substrate


class StackProbe:
    """What the drills' observer, steady-state checks, capacity verify and reconciliation ask of a stack."""

    def __init__(self, stack: Substrate):
        self.stack = stack

    def database_vantage(self) -> Host:
        """A live router host, whose local HAProxy leads to the database primary: where the system of record
        is read from (`db_dsn`)."""
        return next(h for h in self.stack.of("router") if self.stack.programs(h.name).get("haproxy") == "running")

    def db_dsn(self) -> str:
        password = self.stack.secrets(["dbAppPassword"])["dbAppPassword"]
        return (f"host=127.0.0.1 port={ports.DB_PROXY} user=tradestack password={password} dbname=tradestack "
                "connect_timeout=3")

    def database_leader(self) -> str | None:
        """The host whose Patroni says it is the primary, asked from a live router host; from the next one when the
        first sees none (a router just powered back may not reach the others yet: a drill counted 9 s without a
        leader that only its vantage point lacked)."""
        stack = self.stack
        dbs = stack.of("orderdb")
        for probe in stack.live_hosts(stack.of("router"))[:2]:  # each vantage point: a dead member costs a timeout
            codes = each(dbs, lambda db: stack.http(probe.name, "GET",
                                                    f"http://{db.lan_address}:{ports.PATRONI}/primary",
                                                    timeout=0.5)[0])
            leader = next((db.name for db in dbs if codes[db.name] == 200), None)
            if leader is not None:
                return leader
        return None

    def cluster_members(self, probe: str, dbs: list[Host] | None = None) -> list[dict[str, Any]]:
        """Patroni's /cluster members as the first member of `dbs` that answers sees them (asked from `probe`)."""
        for db in self.stack.of("orderdb") if dbs is None else dbs:
            code, cluster = self.stack.http(probe, "GET", f"http://{db.lan_address}:{ports.PATRONI}/cluster",
                                            timeout=0.5)
            if code == 200 and isinstance(cluster, dict):
                return list(cluster.get("members", []))
        return []

    def _patroni(self, path: str, kind: type) -> Any:
        """Patroni's answer to GET `path` (of type `kind`) from the first database member that gives one, asked
        from the first live router; None when nobody did."""
        for probe in self.stack.live_hosts(self.stack.of("router"))[:1]:
            for db in self.stack.of("orderdb"):
                code, body = self.stack.http(probe.name, "GET", f"http://{db.lan_address}:{ports.PATRONI}{path}",
                                             timeout=1.0)
                if code == 200 and isinstance(body, kind):
                    return body
        return None

    def promotions(self) -> list[tuple[float, str]] | None:
        """Patroni's record of its leader changes, oldest first: (when, epoch seconds; the new leader); None when
        nobody answered /history (not the same as no change)."""
        import datetime as dt

        history = self._patroni("/history", list)
        if history is None:
            return None
        return [(dt.datetime.fromisoformat(entry[3]).timestamp(), str(entry[4]))
                for entry in history if isinstance(entry, list) and len(entry) >= 5]

    def dynamic_config(self) -> dict[str, Any]:
        """Patroni's dynamic configuration (ttl, loop_wait, retry_timeout ...) (empty: nobody answered /config)."""
        return self._patroni("/config", dict) or {}

    def database_members(self) -> dict[str, str]:
        """Patroni's view: member -> role (leader, sync_standby, replica), from any live member; a synchronous
        standby that does not stream yet counts as a replica (health.synchronous_standbys)."""
        for probe in self.stack.live_hosts(self.stack.of("router"))[:1]:
            members = self.cluster_members(probe.name)
            if members:
                syncs = health.synchronous_standbys(members)
                return {m["name"]: "replica" if m["role"] == "sync_standby" and m["name"] not in syncs
                        else m["role"] for m in members}
        return {}

    def breakers(self) -> dict[str, dict[str, str]]:
        """Router host -> venue -> breaker state, from each live router's /venues."""
        stack = self.stack

        def ask(router: Host) -> dict[str, str] | None:
            if not stack.live(router.name):
                return None
            code, body = stack.http(router.name, "GET", f"http://{router.lan_address}:{ports.ROUTER}/venues",
                                    timeout=0.5)
            if code == 200 and isinstance(body, dict):
                return {str(v.get("venue")): str(v.get("state")) for v in body.get("venues", [])}
            return None
        answers = each(stack.of("router"), ask)
        return {name: states for name, states in answers.items() if states is not None}

    def vip_ready(self, site: str, timeout: float = 2.0) -> int:
        """The HTTP status a client gets from the site VIP's readiness check (0: no answer)."""
        return self.vip_readiness(site, timeout)[0]

    def vip_readiness(self, site: str, timeout: float = 2.0) -> tuple[int, Any]:
        """The site VIP's readiness answer as a client gets it: status (0: no answer) and body (a gateway's says
        what it lacks: the database's error, or no router heartbeat)."""
        return self.stack.http(self.stack.clients_host, "GET",
                               f"http://{self.stack.vips[site]}:{ports.ORDERS}/readyz", timeout=timeout)

    def gateway_readiness(self, gateway: Host, timeout: float = 2.0) -> tuple[int, Any]:
        """One gateway's own readiness answer, asked on its host past the site's load balancers: what a VIP's
        load balancer hides when it has no gateway left to send to (its page says only "503")."""
        return self.stack.http(gateway.name, "GET", f"http://{gateway.lan_address}:{ports.GATEWAY}/readyz",
                               timeout=timeout)

    def gateway_metrics(self, timeout: float = 2.0) -> dict[str, str | None]:
        """Each gateway host's own /metrics page (Prometheus text), asked on its host; None where it did not
        answer."""
        gateways = self.stack.of("gateway")

        def scrape(gateway: Host) -> str | None:
            code, text = self.stack.http_text(gateway.name, "GET",
                                              f"http://{gateway.lan_address}:{ports.GATEWAY}/metrics", timeout=timeout)
            return text if code == 200 else None

        found = each(gateways, scrape)
        return {g.name: found[g.name] for g in gateways}
