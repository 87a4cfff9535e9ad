"""What a hosts stack offers, from its hosts file alone (pure): the Ansible inventory, pinned host keys, the
outputs every substrate shares (site prefixes, upstreams, clients, the fault map), and each fault as the exact
commands it runs on each host, with their inverses (what `drill run --dry-run` prints).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from .. import ports
from ..adapters import systemd
from ..errors import InputError
from ..substrates import faults
from ..substrates.base import FaultRefused
from ..substrates.inventory import inventory as shared_inventory
from ..topology.riskgroups import power_feed, risk_group_index
from .load import Estate
from .model import BOOT_S

NFT_TABLE = "tradestack"          # every host's table for drills' rules (created at registration)


@dataclass(frozen=True)
class Command:
    """One command on one host, as argv; `wait` makes a restore wait until it succeeds (a poll, not an action);
    `local`: run on the operator's machine, about the host (its power switch), not on it."""

    host: str
    argv: tuple[str, ...]
    wait_s: float = 0.0
    stdin: str | None = None
    local: bool = False

    def __str__(self) -> str:
        prefix = f"(until it succeeds, up to {self.wait_s:g} s) " if self.wait_s else ""
        here = f" <<'EOF'\n{self.stdin}EOF" if self.stdin is not None else ""
        where = f"here, for {self.host}" if self.local else self.host
        return f"{where}: {prefix}{shlex.join(self.argv)}{here}"


# a systemd host that was switched on is up once its manager says so (`degraded`: up, with a unit failed)
UP = 's=$(systemctl is-system-running --wait); [ "$s" = running ] || [ "$s" = degraded ]'
BOOTED = ("sh", "-c", UP)
REBOOT_MARK = "/run/tradestack-reboot-pending"
# for a host that just booted: its manager's start, then each unit's entry into active (monotonic microseconds)
UNIT_TIMES = ("sh", "-c", 'systemctl show -P UserspaceTimestampMonotonic && '
                          'systemctl show -p Id -p ActiveEnterTimestampMonotonic "$1"', "sh", systemd.UNITS)


@dataclass(frozen=True)
class FaultPlan:
    text: str
    inject: tuple[Command, ...]
    restore: tuple[Command, ...]
    hosts: tuple[str, ...] = ()
    reroutes: bool = False     # it takes carrier links down: after the restore, BGP must re-establish
    booted: tuple[str, ...] = ()  # hosts that boot before the restore ends (power back on, a reboot)


def machines(estate: Estate) -> dict[str, tuple[str, str]]:
    """Every machine tradestack logs in to (hosts and edge routers): name -> (address, host key)."""
    spec = estate.spec
    return {**{s.edge.name: (s.edge.address, s.edge.host_key) for s in spec.sites},
            **{h.name: (h.address, h.host_key) for h in spec.hosts}}


def known_hosts(estate: Estate) -> str:
    """Pinned host keys in OpenSSH's known_hosts format (with the port when it is not 22)."""
    port = estate.spec.ssh.port
    lines = [f"{address if port == 22 else f'[{address}]:{port}'} {key}"
             for address, key in machines(estate).values()]
    return "\n".join(sorted(lines)) + "\n"


def inventory(estate: Estate, stack: str) -> dict[str, Any]:
    """The Ansible inventory, in the lab's shape (the playbooks need nothing new): groups per service, site and
    site role, `outside` for venues and clients; edge routers are not in it (nothing is deployed there)."""
    spec, topology = estate.spec, estate.topology
    counts: dict[tuple[str, str | None], int] = {}
    entries = []
    for h in spec.hosts:
        counts[(h.service, h.site)] = counts.get((h.service, h.site), 0) + 1
        entries.append((h.name, {"ansible_host": h.address, "service": h.service,
                                 "instance": counts[(h.service, h.site)], "lan_address": h.lan_address,
                                 "public_address": h.lan_address, "lan_interface": h.lan_interface,
                                 **({"site": h.site} if h.site else {}),
                                 **({"upstream": h.upstream} if h.upstream else {})}))
    common: dict[str, Any] = {"ansible_user": spec.ssh.user, "ansible_port": spec.ssh.port, "tradestack_stack": stack}
    if spec.ssh.become == "sudo":
        common |= {"ansible_become": True, "ansible_become_method": "sudo"}
    return shared_inventory(entries, {s.name: s.role for s in topology.sites}, {s.name: s.prefix for s in spec.sites},
                            common)


def outputs(estate: Estate, stack: str) -> dict[str, Any]:
    """The outputs every substrate's stack has (the lab's contract)."""
    spec = estate.spec
    clients = next(h for h in spec.hosts if h.service == "loadgen")
    return {"topology": estate.topology.name,
            "site_prefixes": {s.name: s.prefix for s in spec.sites},
            "upstreams": {h.upstream: h.lan_address for h in spec.hosts if h.service == "venue" and h.upstream},
            "clients": {"host": clients.name, "address": clients.lan_address},
            "fault_map": fault_map(estate),
            "edges": {s.name: {"host": s.edge.name,
                               "uplinks": {c: u.model_dump() for c, u in s.edge.uplinks.items()},
                               "birdc": s.edge.birdc} for s in spec.sites},
            "hosts_file": str(estate.path)}


def fault_map(estate: Estate) -> dict[str, dict[str, Any]]:
    """For each risk group: the edge uplinks it cuts (edge host, interface, carrier) and the hosts that go down
    with it (a whole site's, or those the hosts file ties to the group)."""
    spec = estate.spec
    index = risk_group_index(estate.topology)
    edges = {s.name: s.edge for s in spec.sites}
    out: dict[str, dict[str, Any]] = {}
    for group, tagged in index.tags.items():
        cut = [(site, carrier) for site, carrier in tagged.uplinks]
        for site in tagged.sites:
            cut += [(site, c) for c in edges[site].uplinks] if site in edges else []
        hosts = [h.name for h in spec.hosts if h.site in tagged.sites]
        hosts += [h.name for h in spec.hosts if h.service == "venue" and h.upstream in tagged.upstreams]
        hosts += [n for n in spec.risk_groups.get(group, []) if n not in hosts]
        out[group] = {"uplinks": [{"edge": edges[s].name, "site": s, "carrier": c,
                                   "interface": edges[s].uplinks[c].interface}
                                  for s, c in dict.fromkeys(cut) if s in edges and c in edges[s].uplinks],
                      "hosts": hosts}
    return out


# -- faults as commands ---------------------------------------------------------------------------------------
def _chains(table: str, chain: str, rules: list[str], hooks: tuple[str, ...]) -> str:
    """An nft script adding one base chain per hook with `rules` in each."""
    lines = []
    for hook in hooks:
        lines.append(f"add chain inet {table} {chain}_{hook} {{ type filter hook {hook} priority -50; policy accept; }}")
        lines += [f"add rule inet {table} {chain}_{hook} {rule}" for rule in rules]
    return "\n".join(lines) + "\n"


def _delete_chains(table: str, chain: str, hooks: tuple[str, ...]) -> str:
    return "".join(f"delete chain inet {table} {chain}_{hook}\n" for hook in hooks)


def _nft(host: str, script: str) -> Command:
    return Command(host, ("nft", "-f", "-"), stdin=script)


def supervisor_conf(state_root: str, host: str) -> str:
    """Where a host's supervisord configuration is (the deploy's layout: one directory per host)."""
    return f"{state_root}/{host}/supervisor/supervisord.conf"


def tree_signal(conf: str, signal: str, home: str | None = None) -> tuple[str, ...]:
    """Signal a host's supervisord and every process under it (only that host's: found from its own pid), and,
    with `home`, every process of the host's network namespace whose command line names that directory (the host's
    state directory): programs that left the supervisor's tree, as Patroni's postmaster does (its launcher exits,
    so init adopts it), are the host's too, and a crash or a freeze that spared them would leave its database
    serving. (The namespace keeps it to the host where hosts share a kernel, as the lab's do: there the
    controller's own `ssh`, whose command line names the directory too, is visible.)"""
    # the pid from supervisord's pidfile: a frozen supervisord cannot answer `supervisorctl pid` (the SIGCONT that
    # thaws it would wait on the one it stopped); asked only when the configuration names no pidfile
    code = ("import configparser, os, signal, subprocess, sys\n"
            "conf = configparser.RawConfigParser(strict=False); conf.read(sys.argv[1])\n"
            "pidfile = conf.get('supervisord', 'pidfile', fallback=None)\n"
            "pid = open(pidfile).read().strip() if pidfile and os.path.exists(pidfile) else subprocess.run(\n"
            "    ['supervisorctl', '-c', sys.argv[1], 'pid'], capture_output=True, text=True, timeout=10).stdout.strip()\n"
            "if not pid.isdigit():\n    sys.exit('supervisord is not running')\n"
            "home = sys.argv[3].rstrip('/') + '/' if len(sys.argv) > 3 else None\n"
            "kids, named, parent = {}, [], {}\n"
            "netns = os.readlink('/proc/self/ns/net')\n"
            "for d in os.listdir('/proc'):\n"
            "    if d.isdigit():\n"
            "        try:\n            ppid = int(open(f'/proc/{d}/stat').read().rsplit(')', 1)[1].split()[1])\n"
            "            line = open(f'/proc/{d}/cmdline', 'rb').read().replace(b'\\0', b' ').decode(errors='replace')\n"
            "        except (OSError, IndexError, ValueError):\n            continue\n"
            "        kids.setdefault(ppid, []).append(int(d)); parent[int(d)] = ppid\n"
            "        if home and home in line + '/' and os.readlink(f'/proc/{d}/ns/net') == netns:\n"
            "            named.append(int(d))\n"
            "mine, p = set(), os.getpid()\n"
            "while p > 1:\n    mine.add(p); p = parent.get(p, 0)\n"  # this command and what runs it (its shell, sshd)
            "named = [p for p in named if p not in mine]\n"
            "todo, tree = [int(pid)], []\n"
            "while todo:\n    p = todo.pop(); tree.append(p); todo += kids.get(p, [])\n"
            "tree += [p for p in named if p not in tree]\n"
            "for p in tree:\n"
            "    try:\n        os.kill(p, getattr(signal, sys.argv[2]))\n    except ProcessLookupError:\n        pass\n"
            "print(len(tree))\n")
    return ("python3", "-c", code, conf, signal, *((home,) if home else ()))


def units_signal(signal: str, units: str = systemd.UNITS,
                 cgroups: str = "/sys/fs/cgroup") -> tuple[str, ...]:
    """Signal every process of a systemd host's active `units` (a pattern: every tradestack unit), found in each
    unit's control group (and those below it) in the unified hierarchy, or systemd's own where the host runs the
    hybrid layout (this machine's kernel: the lab's machines), by the kernel directly; prints how many.
    `systemctl kill --signal=SIGSTOP` does the same but failed on the lab's machines for keepalived's unit ("Failed
    to send signal SIGSTOP to auxiliary processes: Input/output error"), and their cgroup freezer (`systemctl
    freeze`) is not delegated to a container."""
    code = ("import os, signal, subprocess, sys\n"
            "listed = subprocess.run(['systemctl', 'list-units', '--plain', '--no-legend', '--state=active',\n"
            "                         sys.argv[1]], capture_output=True, text=True, check=True).stdout\n"
            "pids = set()\n"
            "for unit in [line.split()[0] for line in listed.splitlines() if line.strip()]:\n"
            "    group = subprocess.run(['systemctl', 'show', '-P', 'ControlGroup', unit], capture_output=True,\n"
            "                           text=True, check=True).stdout.strip()\n"
            "    roots = [r for r in (sys.argv[3], sys.argv[3] + '/systemd', sys.argv[3] + '/unified')\n"
            "             if os.path.isdir(r + group)]\n"
            "    for top, _, files in os.walk(roots[0] + group) if roots else ():\n"
            "        if 'cgroup.procs' in files:\n"
            "            pids.update(int(p) for p in open(os.path.join(top, 'cgroup.procs')).read().split())\n"
            "if not pids:\n    sys.exit('no process of an active ' + sys.argv[1] + ' unit')\n"
            "for p in sorted(pids):\n"
            "    try:\n        os.kill(p, getattr(signal, sys.argv[2]))\n    except ProcessLookupError:\n        pass\n"
            "print(len(pids))\n")
    return ("python3", "-c", code, units, signal, cgroups)


def fault_plan(fault: faults.Fault, estate: Estate, state_root: str, resolve: Any) -> FaultPlan:
    """A fault as commands per host and their inverses. `resolve(ref)` turns a host reference (a name or a
    run-time pick such as `@database-leader`) into a host name."""
    spec = estate.spec
    hosts = {h.name: h for h in spec.hosts}
    fmap = fault_map(estate)
    edges = {s.name: s.edge for s in spec.sites}

    def uplinks_of_carrier(carrier: str) -> list[tuple[str, str]]:
        return [(e.name, e.uplinks[carrier].interface) for e in edges.values() if carrier in e.uplinks]

    def crash(host: str) -> tuple[list[Command], list[Command]]:
        h = hosts[host]
        conf = supervisor_conf(state_root, host)
        # the kernel drops the routes of an interface taken down: keep them, and put them back with it
        routes = f"{state_root}/{host}/lan-routes"
        lan_down = Command(host, ("sh", "-c", 'ip -4 route show dev "$1" > "$2" && ip link set dev "$1" down', "sh",
                                  h.lan_interface, routes))
        lan_up = Command(host, ("sh", "-c", 'ip link set dev "$1" up && if [ -f "$2" ]; then while read -r r; do '
                                            'ip route replace $r dev "$1" || exit 1; done < "$2"; fi', "sh",
                                h.lan_interface, routes))
        if spec.power is not None:  # the power itself: off, and on again with a boot and nobody deploying
            address = h.address
            return ([Command(host, spec.power.argv("off", host, address), local=True)],
                    [Command(host, spec.power.argv("on", host, address), local=True),
                     Command(host, BOOTED, wait_s=float(spec.power.boot_s))])
        if spec.traits.supervisor == "supervisord":
            return ([Command(host, tree_signal(conf, "SIGKILL", f"{state_root}/{host}")), lan_down],
                    [lan_up, Command(host, ("supervisord", "-c", conf))])
        return ([Command(host, units_signal("SIGKILL")), lan_down],
                [lan_up, Command(host, ("systemctl", "restart", systemd.UNITS))])

    if isinstance(fault, faults.PowerLoss) and fault.group == faults.LEADER_SITE:  # the leader's feed, now
        leader = resolve("@database-leader")
        feed = power_feed(estate.topology, hosts[leader].site) if hosts[leader].site else None
        if feed is None:
            raise InputError(f"no power risk group feeds {leader}, the database leader")
        fault = fault.model_copy(update={"group": feed})
    match fault:
        case faults.LinkDown(group=g) | faults.PowerLoss(group=g):
            if g not in fmap:
                raise InputError(f"risk group {g!r} is not in the stack's fault map; known: {', '.join(sorted(fmap))}")
            links = [(u["edge"], u["interface"]) for u in fmap[g]["uplinks"]]
            inject = [Command(e, ("ip", "link", "set", "dev", i, "down")) for e, i in links]
            restore = [Command(e, ("ip", "link", "set", "dev", i, "up")) for e, i in links]
            touched: list[str] = []
            if isinstance(fault, faults.PowerLoss):
                for host in fmap[g]["hosts"]:
                    down, up = crash(host)
                    inject += down
                    restore = up + restore
                    touched.append(host)
            return FaultPlan(fault.describe(), tuple(inject), tuple(restore), tuple(touched), reroutes=True,
                             booted=tuple(touched) if spec.power else ())
        case faults.Blackhole(carrier=c):
            inject, restore = [], []
            for edge, iface in uplinks_of_carrier(c):
                rules = [f'iifname "{iface}" drop', f'oifname "{iface}" drop']
                inject.append(_nft(edge, _chains(NFT_TABLE, f"drill_blackhole_{c}", rules, ("input", "forward", "output"))))
                restore.append(_nft(edge, _delete_chains(NFT_TABLE, f"drill_blackhole_{c}", ("input", "forward", "output"))))
            return FaultPlan(fault.describe(), tuple(inject), tuple(restore), reroutes=True)
        case faults.Throttle(carrier=c, rate_kbit=rate):
            links = uplinks_of_carrier(c)
            return FaultPlan(fault.describe(),
                             tuple(Command(e, ("tc", "qdisc", "replace", "dev", i, "root", "tbf", "rate", f"{rate}kbit",
                                               "burst", "16kbit", "latency", "200ms")) for e, i in links),
                             tuple(Command(e, ("tc", "qdisc", "del", "dev", i, "root")) for e, i in links))
        case faults.HostCrash(host=ref):
            host = resolve(ref)
            down, up = crash(host)
            how = ("its power cut; restored by switching it on (it boots, nobody deploys)" if spec.power else
                   "every supervised process killed, LAN port down")
            return FaultPlan(f"host {host} crashes ({how})", tuple(down), tuple(up), (host,),
                             booted=(host,) if spec.power else ())
        case faults.Reboot(host=ref):
            host = resolve(ref)
            if spec.traits.supervisor != "systemd":
                raise FaultRefused(f"{fault.describe()}: only a host run by systemd reboots in order; this estate's "
                                   f"hosts are supervised by {spec.traits.supervisor}")
            # /run is emptied by every boot: the mark left there says the reboot has not happened yet
            return FaultPlan(f"host {host} reboots (orderly shutdown by its init, then boot; nobody deploys)",
                             (Command(host, ("sh", "-c", f": > {REBOOT_MARK} && systemctl --no-block reboot")),),
                             (Command(host, ("sh", "-c", f'[ ! -e {REBOOT_MARK} ] && {UP}'),
                                      wait_s=float(spec.power.boot_s if spec.power else BOOT_S)),), (host,),
                             booted=(host,))
        case faults.HostFreeze(host=ref):
            host = resolve(ref)
            if spec.traits.supervisor == "systemd":
                return FaultPlan(f"host {host} frozen (SIGSTOP to every process of its tradestack units)",
                                 (Command(host, units_signal("SIGSTOP")),),
                                 (Command(host, units_signal("SIGCONT")),), (host,))
            conf = supervisor_conf(state_root, host)
            return FaultPlan(f"host {host} frozen (SIGSTOP to every supervised process)",
                             (Command(host, tree_signal(conf, "SIGSTOP", f"{state_root}/{host}")),),
                             (Command(host, tree_signal(conf, "SIGCONT", f"{state_root}/{host}")),), (host,))
        case faults.ProcessKill(host=ref, program=p) if spec.traits.supervisor == "systemd":
            host = resolve(ref)
            unit = systemd.unit(p)
            return FaultPlan(f"program {p} on host {host} killed",
                             (Command(host, units_signal("SIGKILL", unit)),),
                             (Command(host, ("systemctl", "is-active", "--quiet", unit), wait_s=30),), (host,))
        case faults.ProcessKill(host=ref, program=p):
            host = resolve(ref)
            conf = supervisor_conf(state_root, host)
            kill = ("sh", "-c", 'pid=$(supervisorctl -c "$1" pid "$2") && [ "$pid" -gt 0 ] && kill -KILL "$pid"',
                    "sh", conf, p)
            running = ("sh", "-c", 'supervisorctl -c "$1" status "$2" | grep -q RUNNING', "sh", conf, p)
            return FaultPlan(f"program {p} on host {host} killed", (Command(host, kill),),
                             (Command(host, running, wait_s=30),), (host,))
        case faults.Partition(sites=[a, b]):
            prefixes = {s.name: s.prefix for s in spec.sites}
            for site in (a, b):
                if site not in prefixes:
                    raise InputError(f"no site {site!r} in the hosts file")
            rules = [f"ip saddr {prefixes[a]} ip daddr {prefixes[b]} drop", f"ip saddr {prefixes[b]} ip daddr {prefixes[a]} drop"]
            inject = tuple(_nft(edges[s].name, _chains(NFT_TABLE, "drill_partition", rules, ("forward",))) for s in (a, b))
            restore = tuple(_nft(edges[s].name, _delete_chains(NFT_TABLE, "drill_partition", ("forward",))) for s in (a, b))
            return FaultPlan(fault.describe(), inject, restore)
        case faults.Upstream(upstream=u, mode=m, latency_ms=ms):
            venue = next((h for h in spec.hosts if h.service == "venue" and h.upstream == u), None)
            if venue is None:
                raise InputError(f"no venue host for upstream {u!r}")
            clients = next(h for h in spec.hosts if h.service == "loadgen")
            url = f"http://{venue.lan_address}:{ports.VENUE_ADMIN}/admin/fault"

            def put(body: str) -> Command:
                return Command(clients.name, ("curl", "-sf", "-m", "3", "-X", "PUT", "-H", "content-type: application/json",
                                              "-d", body, url))
            return FaultPlan(fault.describe(), (put(f'{{"mode": "{m}", "latency_ms": {ms}}}'),),
                             (put('{"mode": "normal", "latency_ms": 0}'),))
    raise FaultRefused(f"the hosts substrate cannot apply {fault.describe()}")

