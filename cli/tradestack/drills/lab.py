"""What a drill needs from a deployed lab stack: names and addresses, probes, and fault actions.

Everything here acts on the lab's own namespaces (netlink, nftables, tc, signals, supervisorctl,
HTTP to lab addresses from inside a lab namespace); nothing here knows about drills' timing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..deploy import variables
from ..deploy.status import synchronous_standbys
from ..errors import InputError, TradestackError
from ..lab import faults as lab_faults
from ..lab import netlink, routing, supervisor
from ..lab.stack import LabStack
from ..topology import load_topology
from ..topology.model import Topology

NFT_TABLE = "tradestack"      # created empty in every lab namespace by the lab stack
GATEWAY_PORT, ROUTER_PORT, PATRONI_PORT, VENUE_ADMIN_PORT, DB_PROXY_PORT = 8080, 8090, 8008, 9101, 5433


class LabActionError(TradestackError):
    """A fault could not be applied or undone on the lab."""


@dataclass(frozen=True)
class Host:
    name: str            # inventory name = namespace, e.g. itlab-sz1-orderdb-1
    service: str
    site: str | None
    lan_address: str


class Lab:
    """A deployed lab stack as drills see it."""

    def __init__(self, stack: LabStack):
        self.stack = stack
        self.name = stack.name
        self.outputs = stack.outputs()
        self.topology: Topology = load_topology(stack.topology_path())
        self.files = stack.access_files()
        inventory = yaml.safe_load(self.files.inventory.read_text())["all"]["hosts"]
        self.hosts = {n: Host(n, hv["service"], hv.get("site"), hv["lan_address"]) for n, hv in inventory.items()}
        self.fault_map: dict[str, Any] = self.outputs["fault_map"]
        gateway_sites = sorted({h.site for h in self.hosts.values() if h.service == "gateway" and h.site})
        self.vips = variables.site_vips(self.outputs["site_prefixes"], gateway_sites)
        self.clients_ns = self.outputs["clients"]["netns"]
        self.settings = stack.host_settings

    def supervisor_conf(self, host: str) -> Path:
        return self.settings.host_dir(host) / "supervisor" / "supervisord.conf"

    @property
    def ledger_dir(self) -> Path:
        """Drill ledgers live on the hosts' shared disk, so the clients namespace writes them where we read."""
        return Path(self.settings.state_root) / f"{self.name}-drills"

    # -- names -----------------------------------------------------------------------------------
    def of(self, service: str, site: str | None = None) -> list[Host]:
        return [h for h in self.hosts.values() if h.service == service and (site is None or h.site == site)]

    def host(self, ref: str) -> Host:
        """A host by its short name (`sz1-orderdb-1`) or a run-time pick (`@database-leader`, `@vip-holder:SITE`)."""
        if ref == "@database-leader":
            leader = self.database_leader()
            if leader is None:
                raise LabActionError("no database leader to pick for @database-leader")
            return self.hosts[leader]
        if ref.startswith("@vip-holder:"):
            site = ref.split(":", 1)[1]
            holder = self.vip_holders().get(site)
            if holder is None:
                raise LabActionError(f"nobody holds the VIP of site {site!r}")
            return self.hosts[holder]
        full = f"{self.name}-{ref}"
        if full not in self.hosts:
            raise InputError(f"no host {ref!r} in stack {self.name!r}; hosts: "
                             + ", ".join(h.removeprefix(f"{self.name}-") for h in sorted(self.hosts)))
        return self.hosts[full]

    def endpoints(self) -> list[str]:
        """What clients are given: every site's public address (reached over every carrier)."""
        return [f"http://{vip}:{GATEWAY_PORT}" for _, vip in sorted(self.vips.items())]

    def database_vantage(self) -> Host:
        """A live router host, whose local HAProxy leads to the database primary: where the system of record
        is read from (`db_dsn`)."""
        return next(h for h in self.of("router") if self.programs(h.name).get("haproxy") == "running")

    def db_dsn(self) -> str:
        password = self.stack.secrets(["dbAppPassword"])["dbAppPassword"]
        return (f"host=127.0.0.1 port={DB_PROXY_PORT} user=tradestack password={password} dbname=tradestack "
                "connect_timeout=3")

    def venue_admins(self) -> list[str]:
        return [f"http://{addr}:{VENUE_ADMIN_PORT}" for addr in self.outputs["upstreams"].values()]

    # -- probes ----------------------------------------------------------------------------------
    def http(self, ns: str, method: str, url: str, body: Any = None, timeout: float = 1.0) -> tuple[int, Any]:
        """One HTTP request from inside a lab namespace (curl), to a lab address. (0, None) if no answer."""
        argv = ["ip", "netns", "exec", ns, "curl", "-s", "-m", f"{timeout:g}", "-o", "-", "-w", "\n%{http_code}",
                "-X", method, url]
        if body is not None:
            argv += ["-H", "content-type: application/json", "-d", json.dumps(body)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 5, check=False)
        text, _, code = done.stdout.rpartition("\n")
        try:
            return int(code or 0), json.loads(text) if text.strip() else None
        except ValueError:
            return int(code or 0) if code.isdigit() else 0, None

    def database_leader(self) -> str | None:
        """The host whose Patroni says it is the primary (asked from a live router host)."""
        probes = self._live(self.of("router"))[:1]  # one vantage point: a dead member costs one timeout, not four
        for db in self.of("orderdb"):
            for probe in probes:
                code, _ = self.http(probe.name, "GET", f"http://{db.lan_address}:{PATRONI_PORT}/primary", timeout=0.5)
                if code == 200:
                    return db.name
        return None

    def database_members(self) -> dict[str, str]:
        """Patroni's view: member -> role (leader, sync_standby, replica), from any live member; a synchronous
        standby that does not stream yet counts as a replica (status.synchronous_standbys)."""
        for db in self.of("orderdb"):
            for probe in self._live(self.of("router"))[:1]:
                code, cluster = self.http(probe.name, "GET", f"http://{db.lan_address}:{PATRONI_PORT}/cluster",
                                          timeout=0.5)
                if code == 200 and isinstance(cluster, dict):
                    members = cluster.get("members", [])
                    syncs = synchronous_standbys(members)
                    return {m["name"]: "replica" if m["role"] == "sync_standby" and m["name"] not in syncs
                            else m["role"] for m in members}
        return {}

    def vip_holders(self) -> dict[str, str | None]:
        """Site -> the gateway host that has the site's VIP on its LAN port (a port that is up: a dead host
        keeps the address configured, but holds nothing)."""
        holders: dict[str, str | None] = {}
        for site, vip in self.vips.items():
            holders[site] = next((g.name for g in self.of("gateway", site)
                                  if (state := netlink.link_state(g.name, "lan0") or {}).get("up")  # a dead port
                                  and any(a.startswith(f"{vip}/") for a in state.get("addresses", []))), None)
        return holders

    def breakers(self) -> dict[str, dict[str, str]]:
        """Router host -> venue -> breaker state, from each live router's /venues."""
        states: dict[str, dict[str, str]] = {}
        for router in self._live(self.of("router")):
            code, body = self.http(router.name, "GET", f"http://{router.lan_address}:{ROUTER_PORT}/venues",
                                   timeout=0.5)
            if code == 200 and isinstance(body, dict):
                states[router.name] = {str(v.get("venue")): str(v.get("state")) for v in body.get("venues", [])}
        return states

    def routing_problems(self) -> list[str]:
        return routing.unconverged(self.stack.daemons_dir)

    def bgp_established(self) -> int:
        return sum(s.state == "Established" for s in routing.sessions(self.stack.daemons_dir))

    def programs(self, host: str) -> dict[str, str]:
        """Supervised programs of a lab host and their state (empty when its supervisor is gone)."""
        return supervisor.program_states(self.supervisor_conf(host).parent / "supervisor.sock")

    def _live(self, hosts: list[Host]) -> list[Host]:
        return [h for h in hosts if (netlink.link_state(h.name, "lan0") or {}).get("up")]

    # -- faults and their inverses ---------------------------------------------------------------
    def links_down(self, group: str, down: bool) -> list[str]:
        return lab_faults.set_group(self.fault_map, group, failed=down)

    def carrier_ns(self, carrier: str) -> str:
        if carrier not in {c.name for c in self.topology.carriers}:
            raise InputError(f"no carrier {carrier!r} in the topology")
        return f"{self.name}-carrier-{carrier}"

    def nft(self, ns: str, script: str) -> None:
        done = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script, capture_output=True,
                              text=True, timeout=15, check=False)
        if done.returncode != 0:
            raise LabActionError(f"nft in {ns}: {done.stderr.strip()[:300]}")

    def drop_all(self, ns: str, on: bool, chain: str = "drill_blackhole") -> None:
        """Every packet into, through and out of `ns` dropped (links stay up: a gray failure)."""
        hooks = ("input", "forward", "output")
        if on:
            self.nft(ns, "\n".join(f"add chain inet {NFT_TABLE} {chain}_{h} {{ type filter hook {h} priority -50; "
                                   "policy drop; }" for h in hooks) + "\n")
        else:
            self.nft(ns, "".join(f"delete chain inet {NFT_TABLE} {chain}_{h}\n" for h in hooks
                                 if self._has_chain(ns, f"{chain}_{h}")))

    def partition(self, a: str, b: str, on: bool) -> None:
        """Traffic between two sites' prefixes dropped at both sites' edges."""
        prefixes = self.outputs["site_prefixes"]
        for site in (a, b):
            if site not in prefixes:
                raise InputError(f"no site {site!r} in the topology")
        for site in (a, b):
            ns = f"{self.name}-{site}-edge"
            if on:
                pa, pb = prefixes[a], prefixes[b]
                self.nft(ns, f"add chain inet {NFT_TABLE} drill_partition {{ type filter hook forward priority -50; "
                             "policy accept; }\n"
                             f"add rule inet {NFT_TABLE} drill_partition ip saddr {pa} ip daddr {pb} drop\n"
                             f"add rule inet {NFT_TABLE} drill_partition ip saddr {pb} ip daddr {pa} drop\n")
            elif self._has_chain(ns, "drill_partition"):
                self.nft(ns, f"flush chain inet {NFT_TABLE} drill_partition\n"
                             f"delete chain inet {NFT_TABLE} drill_partition\n")

    def _has_chain(self, ns: str, chain: str) -> bool:
        done = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "chain", "inet", NFT_TABLE, chain],
                              capture_output=True, text=True, timeout=15, check=False)
        return done.returncode == 0

    def throttle(self, carrier: str, rate_kbit: int | None) -> list[str]:
        """Limit every link of a carrier's namespace to `rate_kbit` (tbf); None removes the limit."""
        ns = self.carrier_ns(carrier)
        touched = []
        for ifname in netlink.interfaces_up(ns):
            if ifname == "lo":
                continue
            if rate_kbit is None:
                subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", ifname, "root"],
                               capture_output=True, timeout=15, check=False)
            else:
                netlink.run_in(ns, ["tc", "qdisc", "replace", "dev", ifname, "root", "tbf", "rate",
                                    f"{rate_kbit}kbit", "burst", "16kbit", "latency", "200ms"])
            touched.append(ifname)
        return touched

    def crash(self, host: str) -> None:
        """Every process of the host killed and its LAN port down."""
        netlink.kill_namespace_processes(host, signal.SIGKILL)
        netlink.set_link_up(host, "lan0", False)

    def revive(self, host: str, on_step: Any = lambda s: None) -> None:
        """A crashed host comes back: see revive_many."""
        self.revive_many([host], on_step)

    def revive_many(self, hosts: list[str], on_step: Any = lambda s: None) -> None:
        """Crashed hosts come back as a rebooted host would: LAN ports up, the lab stack repairs their sshd
        and routes, their supervisor starts again and brings up every program from its configuration."""
        for host in hosts:
            netlink.set_link_up(host, "lan0", True)
        on_step(f"repairing {len(hosts)} host(s) (lab stack: sshd, routes)")
        self.stack.refresh()
        self.stack.up()
        on_step(f"starting the supervisor of {', '.join(hosts)}")
        for host in hosts:
            conf = self.supervisor_conf(host)
            if not conf.exists():
                raise LabActionError(f"{host} was never deployed (no {conf})")
            if self.programs(host):
                continue  # already back
            done = subprocess.run(["ip", "netns", "exec", host, "supervisord", "-c", str(conf)],
                                  capture_output=True, text=True, timeout=30, check=False)
            if done.returncode != 0:
                raise LabActionError(f"supervisord did not start on {host}: {done.stderr.strip()[:300]}")

    def freeze(self, host: str, frozen: bool) -> list[int]:
        """SIGSTOP (or SIGCONT) every process of a host."""
        return netlink.kill_namespace_processes(host, signal.SIGSTOP if frozen else signal.SIGCONT)

    def kill_program(self, host: str, program: str) -> int:
        conf = self.supervisor_conf(host)
        done = subprocess.run(["ip", "netns", "exec", host, "supervisorctl", "-c", str(conf), "pid", program],
                              capture_output=True, text=True, timeout=15, check=False)
        pid = done.stdout.strip()
        if not pid.isdigit() or pid == "0":
            raise LabActionError(f"{program} is not running on {host}: {done.stdout.strip() or done.stderr.strip()}")
        os.kill(int(pid), signal.SIGKILL)
        return int(pid)

    def wait_program(self, host: str, program: str, timeout: float = 30.0) -> None:
        """Its supervisor restarts a killed program; wait until it runs again."""
        if not netlink.wait_for(lambda: self.programs(host).get(program) == "running", timeout, 0.5):
            raise LabActionError(f"{program} on {host} is not running again after {timeout:g} s")

    def venue_mode(self, upstream: str, mode: str, latency_ms: int = 0) -> None:
        addrs = self.outputs["upstreams"]
        if upstream not in addrs:
            raise InputError(f"no upstream {upstream!r}; known: {', '.join(sorted(addrs))}")
        ns = f"{self.name}-upstream-{upstream}"
        code, body = self.http(ns, "PUT", f"http://{addrs[upstream]}:{VENUE_ADMIN_PORT}/admin/fault",
                               {"mode": mode, "latency_ms": latency_ms}, timeout=3)
        if code != 200:
            raise LabActionError(f"venue {upstream} refused mode {mode!r}: {code} {body}")

    def wait_routing(self, timeout: float = 30.0) -> list[str]:
        return routing.wait_converged(self.stack.daemons_dir, timeout)

