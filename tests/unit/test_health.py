"""One judgment of health for drills' steady state, `status` and the audit's resilience controls (pure)."""

from __future__ import annotations

import pytest

from tradestack import health
from tradestack.deploy.status import problems

pytestmark = pytest.mark.unit

SITES = {"db1": "sz1", "db2": "hk1", "db3": "sz1"}


def _m(name: str, role: str, state: str = "streaming") -> dict:
    return {"name": name, "role": role, "state": state}


@pytest.mark.parametrize("members, expected, found", [
    ([_m("db1", "leader", "running"), _m("db2", "sync_standby")], None, []),
    ([], None, ["database: no Patroni member answers"]),
    ([_m("db1", "replica"), _m("db2", "replica")], None, ["database: no Patroni leader"]),
    ([_m("db1", "leader"), _m("db2", "leader")], None, ["database: 2 leaders: db1, db2"]),
    # named, but still rewinding onto the new timeline: holds none of the new commits
    ([_m("db1", "leader"), _m("db2", "sync_standby", "starting")], None, ["database: no synchronous standby"]),
    # the standby's host is gone from Patroni's view altogether: the inventory says there should be two
    ([_m("db1", "leader")], 2, ["database: no synchronous standby"]),
    ([_m("db1", "leader")], 1, []),
    ([_m("db1", "leader"), _m("db3", "sync_standby"), _m("db2", "replica")], None,
     ["database: no synchronous standby in another site than the leader db1 (synchronous standbys: db3)"]),
])
def test_database(members, expected, found):
    assert health.database_problems(members, SITES, expected=expected) == found


def test_vips_and_programs():
    assert health.vip_problems("sz1", "198.18.1.5", ["g1"]) == []
    assert health.vip_problems("sz1", "198.18.1.5", []) == ["sz1: nobody holds the VIP 198.18.1.5"]
    assert health.vip_problems("sz1", "198.18.1.5", ["g2", "g1"]) == ["sz1: VIP 198.18.1.5 held by 2 hosts: g1, g2"]
    assert health.program_problems("h", {"a": "RUNNING", "b": "FATAL"}, ["a", "c"]) == ["h: b is fatal",
                                                                                       "h: c is not supervised"]
    assert health.program_problems("h", {}) == ["h: no supervised programs (not deployed, or crashed)"]


def _view(**database: object) -> dict:
    host = {"service": "orderdb", "reachable": True, "programs": {"patroni": "running"}, "addresses": []}
    return {"sites": {"sz1": {"hosts": {"db1": host}, "carriers": {"ct": True, "cu": False},
                              "vip": {"address": "198.18.1.5", "holder": "g1", "holders": ["g1", "g2"]}},
                      "hk1": {"hosts": {"db2": dict(host, programs={"patroni": "stopped"})}, "carriers": {},
                              "vip": None}},
            "outside": {}, "database": {"members": [], **database}, "consensus": {"leader": "e1"}}


def test_status_judges_what_it_saw_as_drills_and_the_audit_do():
    view = _view(members=[_m("db1", "leader", "running"), _m("db2", "sync_standby", "starting")])
    assert problems(view) == ["sz1: VIP 198.18.1.5 held by 2 hosts: g1, g2", "sz1: carrier cu is down",
                              "db2: patroni is stopped", "database: no synchronous standby"]


def _cluster(nodes=None, services=None, expected=("gateway",), error=None):
    return {"nodes": {"n1": True} if nodes is None else nodes, "expected": list(expected), "error": error,
            "services": {"gateway": {"replicas": 2, "ready": 2, "disruptions_allowed": 1}}
            if services is None else services}


def test_site_clusters_are_judged_by_their_nodes_replicas_and_api():
    assert health.cluster_problems({"sz1": _cluster(), "wit": _cluster(services={}, expected=())}) == []
    assert health.cluster_problems({
        "sz1": _cluster(nodes={"n1": False}),
        "hk1": _cluster(services={"gateway": {"replicas": 2, "ready": 1, "disruptions_allowed": 0}}),
        "dr1": _cluster(services={}),
        "gz1": _cluster(error="gz1: list nodes: API server unreachable (MaxRetryError)"),
    }) == ["dr1: gateway is not deployed in its cluster", "gz1: cluster: gz1: list nodes: API server unreachable "
           "(MaxRetryError)", "hk1: gateway has 1 of 2 replicas ready", "sz1: node n1 is not Ready"]
    # status judges the clusters it saw the same way
    view = _view(members=[_m("db1", "leader", "running"), _m("db2", "sync_standby", "running")])
    healthy = [p for p in problems(view)]
    view["clusters"] = {"hk1": _cluster(nodes={"n1": False})}
    assert problems(view) == healthy + ["hk1: node n1 is not Ready"]


def test_status_reads_a_systemd_hosts_units_as_its_programs():
    """On systemd hosts `status` lists the tradestack-<program> units (all of them: a failed one too)."""
    from tradestack.deploy.status import _host
    from tradestack.substrates.inventory import Host

    units = ("tradestack-etcd.service loaded active running tradestack etcd\n"
             "tradestack-tradestack-router.service loaded failed failed tradestack tradestack-router\n"
             "tradestack-old.service not-found inactive dead tradestack-old.service\n")
    seen = _host({"Systemd units": {"stdout": units}}, Host("h", "router", "sz1", "198.18.1.9"))
    assert seen["programs"] == {"etcd": "running", "tradestack-router": "failed"}
    assert health.program_problems("h", seen["programs"]) == ["h: tradestack-router is failed"]


def _status_with_answers(tmp_path, monkeypatch, silent_twice: set[str]) -> tuple[dict, list]:
    """`status` over the in-memory stack with a playbook run that hears nothing from some hosts the first time
    (and from `silent_twice` the second time too); returns the view and the limits the runs were given."""
    from tradestack.adapters.ansible import PlaybookResult, TaskFailure
    from tradestack.deploy import status

    from .memory_substrate import MemorySubstrate

    stack = MemorySubstrate(tmp_path)
    monkeypatch.setattr(status, "open_stack", lambda name: stack)
    limits: list = []
    first_silent = {"mem-sz1-gateway-1", "mem-hk1-router-1"}

    def playbook(spec, on_event, cancel=lambda: False):
        limits.append(spec.limit)
        failures = []
        for name in sorted(stack.hosts) if spec.limit is None else spec.limit.split(","):
            silent = name in (first_silent if spec.limit is None else silent_twice)
            event = "runner_on_unreachable" if silent else "runner_on_ok"
            res = {"msg": "Connection timed out during banner exchange"} if silent else {"stdout": ""}
            on_event({"event": event, "event_data": {"host": name, "task": "Supervised programs", "res": res}})
            if silent:
                failures.append(TaskFailure(name, "Supervised programs", res["msg"], unreachable=True))
        return PlaybookResult(status="failed" if failures else "successful", rc=0, hosts={}, failures=failures,
                              artifacts=tmp_path)

    monkeypatch.setattr(status, "run_playbook", playbook)
    return status.collect("mem"), limits


def test_status_asks_a_host_that_did_not_answer_once_more_before_calling_it_unreachable(tmp_path, monkeypatch):
    view, limits = _status_with_answers(tmp_path, monkeypatch, silent_twice=set())
    assert limits == [None, "mem-hk1-router-1,mem-sz1-gateway-1"]
    assert not [p for p in problems(view) if "unreachable" in p]
    view, _ = _status_with_answers(tmp_path, monkeypatch, silent_twice={"mem-sz1-gateway-1"})
    assert [p for p in problems(view) if "unreachable" in p] == [
        "mem-sz1-gateway-1 is unreachable: Connection timed out during banner exchange"]


def test_status_reads_programs_where_the_stacks_host_settings_put_them(tmp_path, monkeypatch):
    """A stack brought up with its own service user and state root (every test run's) keeps its supervisor's
    configuration there: `status` must tell its playbook so, or it reads no programs at all."""
    from tradestack.adapters.ansible import PlaybookResult
    from tradestack.deploy import status
    from tradestack.hostsettings import HostSettings

    from .memory_substrate import MemorySubstrate

    stack = MemorySubstrate(tmp_path)
    stack.settings = HostSettings("tsx1", "tsx1", "/var/lib/ts-x1", "/opt/ts-x1")
    monkeypatch.setattr(status, "open_stack", lambda name: stack)
    given = []
    monkeypatch.setattr(status, "run_playbook", lambda spec, on_event, cancel=None: given.append(spec.extravars)
                        or PlaybookResult(status="successful", rc=0, hosts={}, failures=[], artifacts=tmp_path))
    status.collect("mem")
    assert given[0]["tradestack_root"] == "/var/lib/ts-x1" and given[0]["tradestack_user"] == "tsx1"


def test_a_site_host_or_venue_with_nothing_supervised_is_a_problem_the_clients_host_is_not():
    view = _view(members=[_m("db1", "leader", "running"), _m("db2", "sync_standby", "running")])
    healthy = problems(view)
    empty = {"service": "gateway", "reachable": True, "programs": {}, "addresses": []}
    view["sites"]["sz1"]["hosts"]["g1"] = empty
    view["outside"] = {"clients": dict(empty, service="loadgen"), "ats": dict(empty, service="venue")}
    assert sorted(problems(view)) == sorted([*healthy, "g1: no supervised programs (not deployed, or crashed)",
                                             "ats: no supervised programs (not deployed, or crashed)"])


def _alerts_answer(*alerts: tuple[str, str, str, dict]) -> dict:
    return {"json": {"status": "success", "data": {"alerts": [
        {"labels": {"alertname": name, "severity": severity, **labels}, "state": state,
         "activeAt": "2026-12-07T10:00:00Z", "annotations": {"summary": f"{name} summary"}}
        for name, severity, state, labels in alerts]}}}


def test_status_lists_the_alerts_every_prometheus_holds_once_and_a_critical_one_firing_is_a_problem():
    from tradestack.deploy.status import _alerts

    vip = ("TradestackSiteVipDown", "critical", "firing", {"site": "sz1"})
    results = {"m1": {"Alerts Prometheus holds": _alerts_answer(vip, ("TradestackTargetDown", "warning", "firing",
                                                                       {"host": "g1"}))},
               "m2": {"Alerts Prometheus holds": _alerts_answer(vip, ("TradestackDatabaseNoLeader", "critical",
                                                                       "pending", {}))}}
    seen = _alerts(results, ["m1", "m2"])
    assert [(a["alert"], a["state"], a["seen_by"]) for a in seen["alerts"]] == [
        ("TradestackSiteVipDown", "firing", ["m1", "m2"]), ("TradestackTargetDown", "firing", ["m1"]),
        ("TradestackDatabaseNoLeader", "pending", ["m2"])]
    view = _view(members=[_m("db1", "leader", "running"), _m("db2", "sync_standby", "running")])
    healthy = problems(view)
    view["monitoring"] = seen
    # the warning and the pending critical alert are shown, not problems
    assert problems(view) == healthy + ["alert TradestackSiteVipDown is firing: TradestackSiteVipDown summary"]
    # one Prometheus answering is enough; none answering is a problem of its own
    assert _alerts({"m2": results["m2"]}, ["m1", "m2"])["answered"] == ["m2"]
    view["monitoring"] = _alerts({}, ["m1", "m2"])
    assert problems(view) == healthy + ["monitoring: no Prometheus answered (m1, m2)"]
