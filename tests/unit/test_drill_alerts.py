"""Drills judge what the on-call was sent: Alertmanager's notifications as the drill's receiver logged them, each
expected alert's time to its notification after the fault and to its resolution after the restore."""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path

import pytest
from pydantic import ValidationError

from tradestack.drills import alerts, engine, model
from tradestack.drills.alerts import Notification
from tradestack.refstack import alertsink
from tradestack.substrates import faults

from .memory_substrate import MemorySubstrate

pytestmark = pytest.mark.unit

T = 1_800_000_000.0   # the fault is injected at T, restored at T + 30
NO_LEADER = model.ExpectedAlert(alert="TradestackDatabaseNoLeader", notified_within_s=15, resolved_within_s=60)
VIP = model.ExpectedAlert(alert="TradestackSiteVipDown", notified_within_s=15, resolved_within_s=60)


def _line(received: float, *alerts_: tuple[str, str, dict]) -> str:
    body = {"status": alerts_[0][1], "receiver": "on-call", "alerts": [
        {"status": status, "labels": {"alertname": name, "severity": "critical", **labels}}
        for name, status, labels in alerts_]}
    return json.dumps({"received": received, "notification": body})


def test_each_alert_is_timed_from_the_fault_and_resolved_once_every_instance_is():
    log = "\n".join([
        _line(T - 50, ("TradestackTargetDown", "firing", {"host": "old"})),            # before the load: not ours
        _line(T + 9.5, ("TradestackDatabaseNoLeader", "firing", {})),
        _line(T + 11, ("TradestackSiteVipDown", "firing", {"site": "sz1"})),
        _line(T + 16, ("TradestackSiteVipDown", "firing", {"site": "hk1"})),
        _line(T + 20, ("TradestackDatabaseNoLeader", "resolved", {})),                # healed while held
        _line(T + 40, ("TradestackSiteVipDown", "resolved", {"site": "sz1"})),        # hk1 still firing
        _line(T + 44, ("TradestackTargetDown", "firing", {"host": "g1"})),
        _line(T + 72, ("TradestackSiteVipDown", "resolved", {"site": "hk1"})),
        '{"received": 1800000100.0, "notif',                                          # torn last line
    ])
    heard = alerts.judge([NO_LEADER, VIP], alerts.parse_log(log), injected=T, restored=T + 30, since=T - 10)
    times = {a.alert: a for a in heard.expected}
    assert (times["TradestackDatabaseNoLeader"].notified_s, times["TradestackDatabaseNoLeader"].resolved_s) == \
        (9.5, -10.0)
    # notified by its first site; resolved only when the second site's was: 72 - 30
    vip = times["TradestackSiteVipDown"]
    assert (vip.notified_s, vip.resolved_s, vip.instances) == (11.0, 42.0, 2)
    assert [a.alert for a in heard.unexpected] == ["TradestackTargetDown"] and heard.unexpected[0].notified_s == 44
    assert heard.notifications == 7
    checks = alerts.checks(heard, [NO_LEADER, VIP], None)
    assert [(c["check"], c["actual"], c["ok"]) for c in checks] == [
        ("alert TradestackDatabaseNoLeader notified", "9.5 s", True),
        ("alert TradestackDatabaseNoLeader resolved", "10.0 s before the restore", True),
        ("alert TradestackSiteVipDown notified", "11.0 s", True),
        ("alert TradestackSiteVipDown resolved", "42.0 s", True)]


def test_late_missing_and_unresolved_alerts_fail_and_nothing_judged_fails_too():
    log = "\n".join([_line(T + 20, ("TradestackDatabaseNoLeader", "firing", {}))])
    heard = alerts.judge([NO_LEADER, VIP], alerts.parse_log(log), injected=T, restored=T + 30, since=T)
    assert [(c["actual"], c["ok"]) for c in alerts.checks(heard, [NO_LEADER, VIP], None)] == [
        ("20.0 s", False), ("not resolved", False), ("never notified", False), ("never notified", False)]
    unjudged = alerts.checks(None, [VIP], "the stack has no monitoring hosts: nobody was paged")
    assert [c["ok"] for c in unjudged] == [False, False]
    assert unjudged[0]["actual"] == "the stack has no monitoring hosts: nobody was paged"
    assert alerts.checks(None, [], "whatever") == []  # nothing expected: nothing to judge


def test_a_drill_file_names_its_alerts_and_bounds():
    drill = model.Drill(name="d", description="x", faults=[faults.LinkDown(kind="link-down", group="carrier:ct")],
                        alerts=[{"alert": "TradestackSiteVipDown", "notified_within_s": 15}])
    assert drill.alerts[0].resolved_within_s == 60.0
    for bad in ({"alert": "no spaces allowed"}, {"alert": "X", "notified_within_s": 0}, {"alert": "X", "typo": 1}):
        with pytest.raises(ValidationError):
            model.ExpectedAlert(**bad)


def test_the_receiver_logs_each_notification_with_when_it_arrived(tmp_path: Path):
    log = tmp_path / "alerts.jsonl"
    stop = threading.Event()
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    said: list[str] = []
    thread = threading.Thread(target=alertsink.serve, args=("127.0.0.1", port, log, stop, said.append), daemon=True)
    thread.start()
    body = {"status": "firing", "alerts": [{"status": "firing", "labels": {"alertname": "TradestackSiteVipDown"}}]}

    def post(data: bytes) -> int:
        request = urllib.request.Request(f"http://127.0.0.1:{port}/alerts", data=data,
                                         headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return answer.status
        except urllib.error.HTTPError as exc:
            return exc.code
    from tradestack.polling import wait_for

    assert wait_for(lambda: said, 5, 0.05) and said == [f"receiving on 127.0.0.1:{port}"]  # the port is bound
    assert post(json.dumps(body).encode()) == 200 and post(b"not json") == 400
    stop.set()
    thread.join(timeout=5)
    [heard] = alerts.parse_log(log.read_text())
    assert heard == Notification(heard.received, "TradestackSiteVipDown", "firing",
                                 (("alertname", "TradestackSiteVipDown"),))


@pytest.fixture
def memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MemorySubstrate:
    substrate = MemorySubstrate(tmp_path)
    from tradestack.drills import session

    for module in (engine, session):
        monkeypatch.setattr(module, "open_stack", lambda name: substrate)
    return substrate


def _drill(*expected: model.ExpectedAlert) -> model.Drill:
    return model.Drill(name="mem-drill", description="x",
                       faults=[faults.LinkDown(kind="link-down", group="carrier:ct", at_s=0.0, duration_s=0.4)],
                       load=model.Load(peak_fraction=1.0, sessions=2),
                       timing=model.Timing(baseline_s=0.3, recovery_s=0.4, settle_s=1), alerts=list(expected))


def test_a_drill_on_a_monitored_stack_times_the_page_and_reports_what_else_was_sent(memory):
    memory.with_monitoring(("TradestackSiteVipDown", 0.2, 0.1), ("TradestackTargetDown", 0.3, None))
    result = engine.run(engine.plan(_drill(VIP), "mem"))
    assert memory.events[:2] == ["receiver started", "load started"]
    assert result.verdict == "pass", [c for c in result.checks if not c["ok"]]
    document = result.to_dict()
    [vip] = document["alerts"]["expected"]
    assert vip["alert"] == "TradestackSiteVipDown" and 0.15 <= vip["notified_s"] <= 1.5 and vip["resolved_s"] < 1
    assert [a["alert"] for a in document["alerts"]["unexpected"]] == ["TradestackTargetDown"]
    assert any("on the clients host" not in s and "alerts: what Alertmanager sends" in s
               for s in result.plan.steps)


def test_a_drill_expecting_an_alert_that_never_comes_or_no_monitoring_at_all_fails(memory):
    memory.with_monitoring(("TradestackTargetDown", 0.1, 0.1))
    result = engine.run(engine.plan(_drill(VIP), "mem"))
    assert result.verdict == "fail"
    assert [c["actual"] for c in result.checks if c["check"].startswith("alert ")] == ["never notified"] * 2
    bare = MemorySubstrate(memory.work)
    result = engine.run(engine.DrillPlan(**{**vars(engine.plan(_drill(VIP), "mem")), "substrate": bare}))
    assert result.verdict == "fail" and result.to_dict()["alerts"] is None
    assert [c["actual"] for c in result.checks if c["check"].startswith("alert ")] == [
        "the stack has no monitoring hosts: nobody was paged"] * 2


@pytest.mark.parametrize("listen", ["198.19.0.1", "198.19.0.1:http", ":9095", "198.19.0.1:70000"])
def test_the_receiver_refuses_an_address_it_cannot_use(listen, tmp_path):
    from typer.testing import CliRunner

    from tradestack.cli.app import app

    r = CliRunner().invoke(app, ["refstack", "alert-sink", "--listen", listen, "--log", str(tmp_path / "a.jsonl")])
    assert r.exit_code == 2 and "not ADDRESS:PORT" in r.output and "Traceback" not in r.output


def test_every_alert_a_catalogue_drill_expects_is_a_rule_of_the_repository():
    import yaml

    from tradestack.drills import files

    root = Path(__file__).resolve().parents[2]
    rules = {r["alert"] for f in (root / "infra" / "monitoring" / "rules").glob("*.yml")
             for g in yaml.safe_load(f.read_text())["groups"] for r in g["rules"] if "alert" in r}
    catalogue = root / "cli" / "tradestack" / "drills" / "catalogue"
    expected = {a.alert: path.name for path in catalogue.rglob("*.yaml") for a in files.load_drill(path).alerts}
    assert expected and set(expected) <= rules, {a: f for a, f in expected.items() if a not in rules}


def test_a_receiver_that_cannot_listen_fails_the_expected_alerts_and_the_drill_still_runs(memory):
    from .memory_substrate import Sink

    memory.with_monitoring(("TradestackSiteVipDown", 0.2, 0.1))
    taken = Sink()
    taken.code = 1
    taken.stderr_lines = lambda: ["error: cannot receive on 198.19.0.1:9095: Address already in use"]  # type: ignore
    real_spawn = memory.spawn
    memory.spawn = lambda host, argv: taken if "alert-sink" in argv else real_spawn(host, argv)  # type: ignore
    result = engine.run(engine.plan(_drill(VIP), "mem"))
    step = next(s for s in result.journal.steps if s.name == "start the on-call's receiver")
    assert not step.ok and "Address already in use" in step.detail
    assert result.verdict == "fail" and [c["actual"] for c in result.checks if c["check"].startswith("alert ")] == [
        "the on-call's receiver did not start"] * 2
    assert result.figures is not None and result.figures.orders > 0  # the drill itself ran
