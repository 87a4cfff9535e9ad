"""Each control's check against hosts and clusters that answer as a broken estate would: the check FAILS (never
passes, never skips) when the thing it guards is broken or there is nothing to judge. The hosts here are
stand-ins that answer commands from a table; the checks are the audit's own functions."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace as NS
from typing import Any

import pytest

from tradestack.audit import plugin
from tradestack.audit.checks import test_kubernetes as kub
from tradestack.audit.checks import test_security as sec

pytestmark = pytest.mark.unit


class Host:
    """A testinfra host answering each command from `answers` (command prefix -> (rc, stdout, stderr))."""

    def __init__(self, answers: dict[str, tuple[int, str, str]]):
        self.answers = answers

    def run(self, command: str) -> Any:
        for prefix, (rc, out, err) in self.answers.items():
            if command.startswith(prefix):
                return NS(rc=rc, stdout=out, stderr=err)
        raise AssertionError(f"unexpected command {command!r}")


def _context(tmp_path: Path, hosts: dict[str, Host], **extra: Any) -> plugin.Context:
    inventory = {"lab-sz1-router-1": {"service": "router", "site": "sz1", "lan_address": "198.18.1.11"},
                 "lab-sz1-orderdb-1": {"service": "orderdb", "site": "sz1", "lan_address": "198.18.1.21"},
                 "lab-sz1-edge": {"service": "edge", "site": "sz1", "lan_address": "198.18.1.1"}}
    path = tmp_path / "context.json"
    path.write_text(json.dumps({"hosts": inventory, "state_base": "/var/lib/ts", "service_user": "tsuser",
                                "clustered": [], "clusters": {}, "placement": {}, "cluster_namespace": "tradestack",
                                **extra}))
    ctx = plugin.Context(path)
    ctx.host = lambda name: hosts[name]  # type: ignore[method-assign]
    return ctx


# -- SEC-02: every placed trading program has a process, run by its user ---------------------------------
def test_sec02_targets_only_hosts_with_a_trading_program_placed(tmp_path):
    ctx = _context(tmp_path, {})
    # the edge runs no trading program: judging it would judge nothing
    assert [h for h in ctx.names() if sec.trading_programs(ctx, h)] == ["lab-sz1-orderdb-1", "lab-sz1-router-1"]


@pytest.mark.parametrize("answers, message", [
    ({"supervisorctl": (7, "0\n", "")}, "tradestack-router is placed on lab-sz1-router-1 and has no running process"),
    ({"supervisorctl": (0, "ERROR (no such process)\n", "")}, "answered 'ERROR .no such process.', not a process id"),
    ({"supervisorctl": (4, "", "unix:///x/supervisor.sock no such file")}, "supervisorctl pid tradestack-router exited 4"),
    ({"supervisorctl": (127, "", "supervisorctl: not found")}, "supervisorctl pid tradestack-router exited 127"),
    ({"supervisorctl": (0, "4242\n", ""), "ps": (1, "", "")}, "ps found no process 4242"),
    ({"supervisorctl": (0, "4242\n", ""), "ps": (0, " 4242 root\n", "")}, "tradestack-router runs as 'root', not 'tsuser'"),
])
def test_sec02_fails_on_a_program_without_a_process_a_failed_command_or_root(tmp_path, answers, message):
    ctx = _context(tmp_path, {"lab-sz1-router-1": Host(answers)})
    with pytest.raises(AssertionError, match=message):
        sec.test_trading_services_run_as_non_root_users(ctx, plugin.Evidence(), "lab-sz1-router-1")


def test_sec02_passes_a_program_run_by_its_user(tmp_path):
    ctx = _context(tmp_path, {"lab-sz1-router-1": Host({"supervisorctl": (0, "4242\n", ""),
                                                        "ps": (0, " 4242 tsuser\n", "")})})
    evidence = plugin.Evidence()
    sec.test_trading_services_run_as_non_root_users(ctx, evidence, "lab-sz1-router-1")
    assert [i["command"] for i in evidence.items] == [
        "supervisorctl -c /var/lib/ts/lab-sz1-router-1/supervisor/supervisord.conf pid tradestack-router",
        "ps -o pid=,user= -p 4242"]


def _unit(program: str, active: str = "active", pid: str = "4242", user: str = "tsuser") -> str:
    return f"Id=tradestack-{program}.service\nActiveState={active}\nMainPID={pid}\nUser={user}\n"


@pytest.mark.parametrize("shown, ps, message", [
    (_unit("tradestack-router", active="failed", pid="0"), "",
     "tradestack-router is placed on lab-sz1-router-1 and its unit tradestack-tradestack-router.service is failed"),
    (_unit("tradestack-router", user=""), " 4242 root\n",
     "tradestack-tradestack-router.service has no User= other than root"),
    (_unit("tradestack-router", pid="0"), "", "is active with no main process .MainPID 0."),
    (_unit("tradestack-router"), " 4242 root\n", "tradestack-router runs as 'root', not 'tsuser'"),
    ("", "", "systemctl show exited 0"),
])
def test_sec02_on_systemd_hosts_fails_a_unit_not_active_without_a_user_or_running_as_root(tmp_path, shown, ps,
                                                                                          message):
    ctx = _context(tmp_path, {"lab-sz1-router-1": Host({"systemctl show": (0, shown, ""), "ps": (0, ps, "")})},
                   supervisor="systemd")
    with pytest.raises(AssertionError, match=message):
        sec.test_trading_services_run_as_non_root_users(ctx, plugin.Evidence(), "lab-sz1-router-1")


def test_sec02_on_systemd_hosts_asks_systemd_once_and_passes_a_unit_run_by_its_user(tmp_path):
    ctx = _context(tmp_path, {"lab-sz1-router-1": Host({"systemctl show": (0, _unit("tradestack-router"), ""),
                                                        "ps": (0, " 4242 tsuser\n", "")})}, supervisor="systemd")
    evidence = plugin.Evidence()
    sec.test_trading_services_run_as_non_root_users(ctx, evidence, "lab-sz1-router-1")
    assert [i["command"] for i in evidence.items] == [
        "systemctl show -p Id -p ActiveState -p MainPID -p User tradestack-tradestack-router.service",
        "ps -o pid=,user= -p 4242"]



# -- SEC-03: the database listens on nothing but its LAN and loopback --------------------------------------
@pytest.mark.parametrize("answer, message", [
    ((1, "", "Cannot open netlink socket"), "ss failed .rc 1.: Cannot open netlink socket"),
    ((0, "", ""), "nothing listens on port 5432: no database to judge"),
    ((0, "LISTEN 0 200 0.0.0.0:5432 0.0.0.0:*\n", ""), r"PostgreSQL listens on \['0.0.0.0'\]"),
])
def test_sec03_fails_when_ss_fails_nothing_listens_or_it_listens_publicly(tmp_path, answer, message):
    ctx = _context(tmp_path, {"lab-sz1-orderdb-1": Host({"ss": answer})})
    with pytest.raises(AssertionError, match=message):
        sec.test_the_database_listens_only_on_the_site_lan_and_loopback(ctx, plugin.Evidence(), "lab-sz1-orderdb-1")


def test_sec03_passes_a_database_on_its_lan_and_loopback(tmp_path):
    listening = "LISTEN 0 200 198.18.1.21:5432 0.0.0.0:*\nLISTEN 0 200 127.0.0.1:5432 0.0.0.0:*\n"
    ctx = _context(tmp_path, {"lab-sz1-orderdb-1": Host({"ss": (0, listening, "")})})
    sec.test_the_database_listens_only_on_the_site_lan_and_loopback(ctx, plugin.Evidence(), "lab-sz1-orderdb-1")


# -- KUB: the clusters a stack declares are read, and hold what the topology places -----------------------
def _deployment(name: str, replicas: int, ready: int | None = None, cpu: str = "500m") -> Any:
    container = NS(resources=NS(requests={"cpu": cpu}), security_context=None, image="x", name=name)
    spec = NS(replicas=replicas, template=NS(spec=NS(containers=[container], tolerations=[], security_context=None,
                                                     topology_spread_constraints=[NS(topology_key="kubernetes.io/hostname")])))
    return NS(metadata=NS(name=name), spec=spec, status=NS(ready_replicas=replicas if ready is None else ready))


class FakeCluster:
    """A site cluster's API with these Deployments and budgets."""

    deployments: list[Any] = []
    budgets: list[Any] = []

    def __init__(self, kubeconfig: Path, site: str):
        self.timeout = 1
        self.apps = NS(list_namespaced_deployment=lambda ns, **_: NS(items=self.deployments))
        self.policy = NS(list_namespaced_pod_disruption_budget=lambda ns, **_: NS(items=self.budgets))

    def close(self) -> None: ...

    def __enter__(self) -> FakeCluster:
        return self

    def __exit__(self, *_: object) -> None: ...

    def pods(self, namespace: str, selector: str) -> list[Any]:
        return []

    def nodes(self) -> list[Any]:
        return [NS(name="n1")]


def _kub_context(tmp_path: Path, clusters: dict[str, str], placement: dict[str, int]) -> plugin.Context:
    return _context(tmp_path, {}, clustered=["gateway"], clusters=clusters, placement={"gateway": placement},
                    cpu_requests_m={"gateway": 400})


def test_kub_controls_target_every_site_the_topology_places_a_clustered_service_in(tmp_path):
    ctx = _kub_context(tmp_path, {"sz1": "/k/sz1"}, {"sz1": 2, "hk1": 2, "wit": 0})
    assert kub._sites(ctx) == ["hk1", "sz1"]  # hk1 too, although its cluster was not found


def test_a_declared_cluster_that_is_not_found_fails_every_kub_control(tmp_path):
    ctx = _kub_context(tmp_path, {"sz1": "/k/sz1"}, {"sz1": 2, "hk1": 2})
    for check in (kub.test_disruption_budgets_allow_one_down_and_pods_leave_a_lost_node_in_seconds,
                  kub.test_containers_run_unprivileged_as_non_root_from_pinned_images,
                  kub.test_replicas_request_the_cpu_their_declared_capacity_needs,
                  kub.test_each_site_runs_its_placed_replicas_ready_and_spread_over_its_nodes):
        with pytest.raises(AssertionError, match="hk1: the stack places gateway there and no cluster was found"):
            check(ctx, plugin.Evidence(), "hk1")


def test_kub03_fails_when_a_placed_service_has_no_deployment(tmp_path, monkeypatch):
    monkeypatch.setattr(kub, "Cluster", FakeCluster)
    monkeypatch.setattr(FakeCluster, "deployments", [])
    ctx = _kub_context(tmp_path, {"sz1": "/k/sz1"}, {"sz1": 2})
    with pytest.raises(AssertionError, match="sz1: no Deployment of gateway, which the topology places there"):
        kub.test_replicas_request_the_cpu_their_declared_capacity_needs(ctx, plugin.Evidence(), "sz1")


def test_kub01_fails_a_budget_that_lets_a_single_replica_go(tmp_path, monkeypatch):
    monkeypatch.setattr(kub, "Cluster", FakeCluster)
    monkeypatch.setattr(FakeCluster, "deployments", [_deployment("gateway", replicas=1)])
    monkeypatch.setattr(FakeCluster, "budgets", [NS(metadata=NS(name="gateway"),
                                                    spec=NS(max_unavailable=1, min_available=None), status=None)])
    ctx = _kub_context(tmp_path, {"sz1": "/k/sz1"}, {"sz1": 1})
    with pytest.raises(AssertionError, match="lets 1 of 1 replicas go at once: a drain can take the site's last"):
        kub.test_disruption_budgets_allow_one_down_and_pods_leave_a_lost_node_in_seconds(ctx, plugin.Evidence(), "sz1")


@pytest.mark.parametrize("max_unavailable, min_available, replicas, down", [
    (1, None, 2, 1), ("50%", None, 3, 2), (None, 1, 2, 1), (None, "100%", 2, 0), (None, None, 2, 2)])
def test_a_budget_allows_what_kubernetes_would_let_go(max_unavailable, min_available, replicas, down):
    budget = NS(spec=NS(max_unavailable=max_unavailable, min_available=min_available))
    assert kub._allowed_down(budget, replicas) == down


def test_kub04_fails_a_site_short_of_its_placed_replicas(tmp_path, monkeypatch):
    monkeypatch.setattr(kub, "Cluster", FakeCluster)
    monkeypatch.setattr(FakeCluster, "deployments", [_deployment("gateway", replicas=2, ready=1)])
    ctx = _kub_context(tmp_path, {"sz1": "/k/sz1"}, {"sz1": 2})
    with pytest.raises(AssertionError, match="sz1: gateway has 1 ready of 2 placed"):
        kub.test_each_site_runs_its_placed_replicas_ready_and_spread_over_its_nodes(ctx, plugin.Evidence(), "sz1")


# -- every other control, broken once: FAIL -------------------------------------------------------------
from tradestack.audit.checks import test_operations as ops  # noqa: E402
from tradestack.audit.checks import test_resilience as res  # noqa: E402

ESTATE = {"lab-sz1-orderdb-1": {"service": "orderdb", "site": "sz1", "lan_address": "198.18.1.21"},
          "lab-hk1-orderdb-1": {"service": "orderdb", "site": "hk1", "lan_address": "198.18.2.21"},
          "lab-sz1-gateway-1": {"service": "gateway", "site": "sz1", "lan_address": "198.18.1.31",
                                "lan_interface": "lan0"},
          "lab-sz1-gateway-2": {"service": "gateway", "site": "sz1", "lan_address": "198.18.1.32",
                                "lan_interface": "lan0"},
          **{f"lab-{s}-consensus-1": {"service": "consensus", "site": s, "lan_address": f"198.18.{i}.41"}
             for i, s in enumerate(("sz1", "hk1", "wit"), 1)}}


def _estate(tmp_path: Path, hosts: dict[str, Host], **extra: Any) -> plugin.Context:
    path = tmp_path / "estate.json"
    path.write_text(json.dumps({"hosts": ESTATE, "state_base": "/var/lib/ts", "service_user": "tsuser",
                                "clustered": [], "clusters": {}, "vips": {"sz1": "198.18.1.100"},
                                "placement": {"orderdb": {"sz1": 1, "hk1": 1}}, **extra}))
    ctx = plugin.Context(path)
    ctx.host = lambda name: hosts[name]  # type: ignore[method-assign]
    return ctx


def _members(*roles: tuple[str, str, str]) -> str:
    return json.dumps({"members": [{"name": n, "role": r, "state": s} for n, r, s in roles]})


def test_res01_fails_without_a_synchronous_standby_in_another_site(tmp_path):
    lonely = _members(("lab-sz1-orderdb-1", "leader", "running"), ("lab-hk1-orderdb-1", "replica", "streaming"))
    ctx = _estate(tmp_path, {"lab-sz1-orderdb-1": Host({"curl": (0, lonely, "")})})
    with pytest.raises(AssertionError, match="database: no synchronous standby"):
        res.test_database_has_a_leader_and_a_sync_standby_in_another_site(ctx, plugin.Evidence(), "lab-sz1-orderdb-1")
    ctx = _estate(tmp_path, {"lab-sz1-orderdb-1": Host({"curl": (7, "", "")})})
    with pytest.raises(AssertionError, match="Patroni on lab-sz1-orderdb-1 does not answer"):
        res.test_database_has_a_leader_and_a_sync_standby_in_another_site(ctx, plugin.Evidence(), "lab-sz1-orderdb-1")


def test_res02_fails_without_quorum(tmp_path):
    one = json.dumps([{"Endpoint": "http://198.18.1.41:2379", "Status": {"leader": 7}}])
    ctx = _estate(tmp_path, {"lab-sz1-consensus-1": Host({"ETCDCTL_API": (1, one, "")})})
    with pytest.raises(AssertionError, match="only 1 of 3 members answer: no quorum"):
        res.test_etcd_has_quorum_with_members_in_three_sites(ctx, plugin.Evidence(), "lab-sz1-consensus-1")


def test_res04_fails_a_vip_held_by_two_hosts_or_none(tmp_path):
    held = (0, "2: lan0 inet 198.18.1.31/24 brd x\n2: lan0 inet 198.18.1.100/32 scope global lan0\n", "")
    ctx = _estate(tmp_path, {"lab-sz1-gateway-1": Host({"ip": held}), "lab-sz1-gateway-2": Host({"ip": held})})
    with pytest.raises(AssertionError, match="VIP 198.18.1.100 held by 2 hosts"):
        res.test_each_site_vip_is_held_by_exactly_one_host(ctx, plugin.Evidence(), "sz1")
    ctx = _estate(tmp_path, {name: Host({"ip": (0, "", "")}) for name in ("lab-sz1-gateway-1", "lab-sz1-gateway-2")})
    with pytest.raises(AssertionError, match="nobody holds the VIP"):
        res.test_each_site_vip_is_held_by_exactly_one_host(ctx, plugin.Evidence(), "sz1")


def _stat(*servers: tuple[str, str]) -> str:
    rows = []
    for name, status in servers:
        fields = ["orderdb", name] + [""] * 15 + [status]
        rows.append(",".join(fields))
    return "\n".join(rows) + "\n"


def test_res05_fails_when_haproxy_sends_to_two_primaries_or_none(tmp_path):
    two = _stat(("lab-sz1-orderdb-1", "UP"), ("lab-hk1-orderdb-1", "UP"))
    ctx = _estate(tmp_path, {"lab-sz1-gateway-1": Host({"python3": (0, two, "")})})
    with pytest.raises(AssertionError, match="database servers HAProxy sends to"):
        res.test_haproxy_sees_exactly_one_database_primary(ctx, plugin.Evidence(), "lab-sz1-gateway-1")
    ctx = _estate(tmp_path, {"lab-sz1-gateway-1": Host({"python3": (1, "", "no socket")})})
    with pytest.raises(AssertionError, match="no HAProxy statistics on lab-sz1-gateway-1"):
        res.test_haproxy_sees_exactly_one_database_primary(ctx, plugin.Evidence(), "lab-sz1-gateway-1")


def test_res06_fails_a_placed_instance_that_is_not_running(tmp_path):
    stopped = (0, "patroni   STOPPED   Dec 05 12:00 PM\n", "")
    ctx = _estate(tmp_path, {"lab-sz1-orderdb-1": Host({"supervisorctl": stopped})})
    with pytest.raises(AssertionError, match="orderdb in sz1: 0 running of 1 placed"):
        res.test_every_service_runs_the_instances_the_topology_places(ctx, plugin.Evidence(), "orderdb@sz1")


@pytest.mark.parametrize("answer", [(3, "inactive\n", ""), (3, "failed\n", ""), (4, "", "Unit not found")])
def test_res06_on_systemd_hosts_fails_a_placed_unit_that_is_not_active(tmp_path, answer):
    ctx = _estate(tmp_path, {"lab-sz1-orderdb-1": Host({"systemctl is-active tradestack-patroni.service": answer})},
                  supervisor="systemd")
    with pytest.raises(AssertionError, match="orderdb in sz1: 0 running of 1 placed"):
        res.test_every_service_runs_the_instances_the_topology_places(ctx, plugin.Evidence(), "orderdb@sz1")
    ctx = _estate(tmp_path, {"lab-sz1-orderdb-1": Host({"systemctl is-active tradestack-patroni.service":
                                                        (0, "active\n", "")})}, supervisor="systemd")
    res.test_every_service_runs_the_instances_the_topology_places(ctx, plugin.Evidence(), "orderdb@sz1")


def test_ops01_fails_a_skewed_clock_or_a_failing_date(tmp_path):
    ctx = _estate(tmp_path, {"lab-sz1-orderdb-1": Host({"date": (0, "1000000000.0\n", "")})})
    with pytest.raises(AssertionError, match="clock differs by"):
        ops.test_clocks_agree_within_a_second(ctx, plugin.Evidence(), "lab-sz1-orderdb-1")
    ctx = _estate(tmp_path, {"lab-sz1-orderdb-1": Host({"date": (127, "", "date: not found")})})
    with pytest.raises(AssertionError, match="date failed on lab-sz1-orderdb-1 .rc 127.: nothing to judge"):
        ops.test_clocks_agree_within_a_second(ctx, plugin.Evidence(), "lab-sz1-orderdb-1")


TRACKING = ("Reference ID    : C6120001 (198.18.0.1)\nStratum         : 9\nRef time (UTC)  : Sun Dec 06 09:00:00 2026\n"
            "System time     : 0.000000412 seconds fast of NTP time\nLeap status     : Normal\n")


@pytest.mark.parametrize("answer, message", [
    ((1, "", "506 Cannot talk to daemon"), "chronyc tracking failed on lab-sz1-orderdb-1 .rc 1.: 506 Cannot talk"),
    ((0, "", ""), "chronyc tracking failed on lab-sz1-orderdb-1 .rc 0.: : no time service to judge"),
    ((0, TRACKING.replace("Leap status     : Normal", "Leap status     : Not synchronised"), ""),
     "not synchronised .Not synchronised."),
    ((0, TRACKING.replace("C6120001 (198.18.0.1)", "00000000 ()"), ""), "follows no source"),
    ((0, TRACKING.replace("0.000000412 seconds fast", "2.5 seconds slow"), ""), "clock 2.500 s from its time source"),
])
def test_ops01_on_hosts_with_a_time_service_fails_one_stopped_unsynchronised_or_off(tmp_path, answer, message):
    """Machines share this kernel's clock, so comparing clocks could never fail there: their time service is read."""
    ctx = _estate(tmp_path, {"lab-sz1-orderdb-1": Host({"chronyc -n tracking": answer})}, time_sync=True)
    with pytest.raises(AssertionError, match=message):
        ops.test_clocks_agree_within_a_second(ctx, plugin.Evidence(), "lab-sz1-orderdb-1")


def test_ops01_passes_a_synchronised_time_service_and_notes_its_offset(tmp_path):
    ctx = _estate(tmp_path, {"lab-sz1-orderdb-1": Host({"chronyc -n tracking": (0, TRACKING, "")})}, time_sync=True)
    evidence = plugin.Evidence()
    ops.test_clocks_agree_within_a_second(ctx, evidence, "lab-sz1-orderdb-1")
    asked = [i["command"] for i in evidence.items if i["rc"] is not None]
    assert asked == ["chronyc -n tracking"]  # one question; what it said, noted
    assert {i["command"]: i["output"] for i in evidence.items if i["rc"] is None}["offset from its source (s)"] \
        == "4.12e-07"


@pytest.mark.parametrize("listed, message", [
    ("", "no tradestack units on lab-sz1-orderdb-1"),
    ("tradestack-patroni.service journal 1\ntradestack-etcd.service null 1\n",
     "tradestack-etcd.service writes its output to null, not the journal"),
    ("tradestack-patroni.service journal 0\n", "tradestack-patroni.service has written nothing to the journal"),
])
def test_ops02_on_systemd_hosts_fails_a_unit_not_logging_to_the_journal(tmp_path, listed, message):
    ctx = _estate(tmp_path, {"lab-sz1-orderdb-1": Host({"for u in": (0, listed, "")})}, supervisor="systemd")
    with pytest.raises(AssertionError, match=message):
        ops.test_service_logs_are_written_where_rotation_is_configured(ctx, plugin.Evidence(), "lab-sz1-orderdb-1")
    ops.test_service_logs_are_written_where_rotation_is_configured(
        _estate(tmp_path, {"lab-sz1-orderdb-1": Host({"for u in": (0, "tradestack-patroni.service journal 1\n", "")})},
                supervisor="systemd"), plugin.Evidence(), "lab-sz1-orderdb-1")


def _ops02(tmp_path: Path, listed: str, written: str) -> None:
    conf = "/var/lib/ts/lab-sz1-orderdb-1/supervisor/conf.d"
    host = Host({f"head -v -n 1000 -- {conf}/*": (0, listed.replace("CONF", conf), ""), "ls -1d -- ": (0, written, "")})
    ops.test_service_logs_are_written_where_rotation_is_configured(_estate(tmp_path, {"lab-sz1-orderdb-1": host}),
                                                                   plugin.Evidence(), "lab-sz1-orderdb-1")


def test_ops02_fails_a_log_without_rotation_or_not_written_and_passes_one_with_both(tmp_path):
    rotated = "stdout_logfile_maxbytes=10MB\nstdout_logfile_backups=3\n"
    listed = ("==> CONF/etcd.conf <==\n[program:etcd]\nstdout_logfile=/l/e.log\n" + rotated +
              "\n==> CONF/patroni.conf <==\n[program:patroni]\nstdout_logfile=/l/p.log\n")
    with pytest.raises(AssertionError, match="patroni.conf: no rotation configured for /l/p.log"):
        _ops02(tmp_path, listed, "/l/e.log\n/l/p.log\n")
    with pytest.raises(AssertionError, match="patroni.conf: log file /l/p.log is not being written"):
        _ops02(tmp_path, listed + rotated, "/l/e.log\n")
    _ops02(tmp_path, listed + rotated, "/l/e.log\n/l/p.log\n")


@pytest.mark.parametrize("listed", ["", "head: cannot open 'conf.d/*' for reading\n", "[program:patroni]\n"])
def test_ops02_fails_when_no_program_configuration_is_read(tmp_path, listed):
    """Nothing read (an empty answer, or one without head's file headers) is nothing judged: a failure."""
    with pytest.raises(AssertionError, match="no supervised programs configured in"):
        _ops02(tmp_path, listed, "")


def test_sec01_fails_password_login(tmp_path):
    effective = "passwordauthentication yes\nkbdinteractiveauthentication no\npermitrootlogin without-password\n"
    ctx = _estate(tmp_path, {"lab-sz1-orderdb-1": Host({"/usr/sbin/sshd": (0, effective, "")})})
    ctx.inventory["lab-sz1-orderdb-1"]["sshd_config"] = "/etc/ssh/sshd_config"
    with pytest.raises(AssertionError, match="PasswordAuthentication is not 'no'"):
        sec.test_sshd_allows_no_passwords_and_no_root_password_login(ctx, plugin.Evidence(), "lab-sz1-orderdb-1")


@pytest.mark.parametrize("answer, message", [
    ((0, "644 postgres\n", ""), "has mode 0o644, not 0o600"),
    ((0, "600 root\n", ""), "is owned by root, not postgres"),
    ((1, "", "stat: cannot statx 'x': No such file or directory"), "patroni.yml is missing"),
])
def test_sec04_fails_a_secret_readable_by_others_owned_by_another_or_missing(tmp_path, answer, message):
    path = "/var/lib/ts/lab-sz1-orderdb-1/patroni/patroni.yml"
    ctx = _estate(tmp_path, {"lab-sz1-orderdb-1": Host({f"stat -c '%a %U' {path}": answer})})
    with pytest.raises(AssertionError, match=message):
        sec.test_secret_files_are_0600_and_owned_by_their_service_user(ctx, plugin.Evidence(),
                                                                       f"lab-sz1-orderdb-1:{path}:postgres")


def test_kub02_fails_a_container_that_may_run_as_root(tmp_path, monkeypatch):
    monkeypatch.setattr(kub, "Cluster", FakeCluster)
    monkeypatch.setattr(FakeCluster, "deployments", [_deployment("gateway", replicas=2)])  # no security context
    ctx = _kub_context(tmp_path, {"sz1": "/k/sz1"}, {"sz1": 2})
    with pytest.raises(AssertionError, match="sz1: gateway/gateway may run as root"):
        kub.test_containers_run_unprivileged_as_non_root_from_pinned_images(ctx, plugin.Evidence(), "sz1")
