"""Drills without a lab: drill files, figures (golden values), verdicts, reports, history, CLI edges."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradestack.cli.app import app
from tradestack.drills import engine, figures, files, history, lock, model, reconcile, report, verdict
from tradestack.substrates import faults
from tradestack.drills.journal import Journal
from tradestack.drills.figures import ClientOrder, Sample, Window
from tradestack.errors import InputError

pytestmark = pytest.mark.unit


# -- drill files ------------------------------------------------------------------------------------
def test_every_catalogue_drill_validates_and_the_catalogue_has_the_eleven_named_drills():
    names = set(files.catalogue())
    assert names == {"carrier-outage", "facility-power-flash", "site-power-loss", "leader-site-power-loss",
                     "db-primary-crash",
                     "gateway-host-crash", "gray-host-freeze", "carrier-blackhole", "site-partition",
                     "upstream-outage", "load-spike"}
    for name in names:
        drill = files.resolve(name)
        assert drill.name == name and drill.faults
    # drills that need clusters are a catalogue of their own: an audit asks every stack only for the first
    assert set(files.cluster_catalogue()) == {"site-node-loss", "site-pods-deleted", "site-node-drain",
                                              "site-api-server-cut"}
    kinds = {name: type(files.resolve(name).faults[0]) for name in files.cluster_catalogue()}
    assert kinds == {"site-node-loss": faults.NodeLoss, "site-pods-deleted": faults.PodDelete,
                     "site-node-drain": faults.NodeDrain, "site-api-server-cut": faults.ApiServerCut}
    assert all(f.site == "hk1" for name in kinds for f in files.resolve(name).faults)
    # and drills that need hosts run by systemd: an orderly reboot of the database leader
    assert {n: [type(f) for f in files.resolve(n).faults] for n in files.systemd_catalogue()} == {
        "db-leader-reboot": [faults.Reboot]}


def test_a_bad_drill_file_names_file_line_and_field(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: broken\ndescription: x\nfaults:\n  - kind: link-down\n    group: carrier:ct\n"
                    "    duration_s: -3\n  - kind: meteor\nexpect:\n  max_recovery_s: fast\n")
    with pytest.raises(files.DrillFileError) as caught:
        files.load_drill(path)
    text = str(caught.value)
    assert f"{path}:6:17: faults[0].duration_s: Input should be greater than or equal to 0" in text
    assert f"{path}:7:" in text and "meteor" in text
    assert f"{path}:9:19: expect.max_recovery_s" in text


def test_an_unknown_drill_name_lists_the_catalogue():
    with pytest.raises(InputError, match="no drill 'nope': give a drill file, or one of carrier-blackhole"):
        files.resolve("nope")


def test_unknown_fields_are_errors_not_ignored(tmp_path: Path):
    path = tmp_path / "typo.yaml"
    path.write_text("name: t\ndescription: x\nfaults: [{kind: link-down, group: carrier:ct, duraton_s: 3}]\n")
    with pytest.raises(files.DrillFileError, match=r"typo.yaml:3:\d+: faults\[0\].duraton_s: unknown field"):
        files.load_drill(path)


def test_fault_window_runs_from_first_injection_to_last_restore():
    drill = model.Drill(name="d", description="x", faults=[
        faults.LinkDown(kind="link-down", group="carrier:ct", at_s=0, duration_s=10),
        faults.HostFreeze(kind="host-freeze", host="sz1-gateway-2", at_s=5, duration_s=12)])
    assert drill.fault_window_s == 17


# -- figures (hand-computed) ------------------------------------------------------------------------
def _order(sent: float, latency_ms: float = 10, outcome: str = "acked", attempts: int = 1,
           endpoint: str = "http://a") -> ClientOrder:
    return ClientOrder(sent, latency_ms, outcome, attempts, endpoint)


def _steady(start: float, end: float, step: float = 0.5) -> list[ClientOrder]:
    """Clean orders every `step` seconds in [start, end): clients served throughout."""
    return [_order(start + i * step) for i in range(round((end - start) / step))]


def test_recovery_is_when_the_last_unclean_order_after_injection_was_answered():
    orders = _steady(100.0, 120.0) + [_order(102.0, latency_ms=3000),  # answered at 105.0
                                      _order(103.0, outcome="unknown", attempts=3, latency_ms=1500)]  # at 104.5
    assert figures.recovery(orders, injected=101.5, ended=120.0) == pytest.approx(3.5)


def test_recovery_is_zero_only_when_clients_were_served_cleanly_throughout():
    assert figures.recovery(_steady(100.0, 120.0), injected=101.0, ended=120.0) == 0.0
    never = _steady(100.0, 102.0) + [_order(102.0, outcome="unknown", attempts=4, latency_ms=500)]
    assert figures.recovery(never, injected=101.0, ended=120.0) is None  # no clean order afterwards
    late = _steady(100.0, 120.0) + [_order(118.0, outcome="unknown", latency_ms=100)]
    assert figures.recovery(late, injected=101.0, ended=120.0) is None  # not sustained before the end


def test_clients_that_died_at_injection_never_recovered_rather_than_in_0_s():
    # main said 0.0 here: no unclean order after the fault, because no order at all
    assert figures.recovery(_steady(100.0, 101.0), injected=101.0, ended=120.0) is None


def test_a_silence_without_any_unclean_order_is_an_outage_until_answers_resume():
    # nothing answered from 103 to 108 (clients waiting), no unclean order in the ledger either
    silent = _steady(100.0, 103.0) + _steady(108.0, 120.0)
    assert figures.recovery(silent, injected=101.0, ended=120.0) == pytest.approx(7.01)  # 108 + 10 ms - 101
    # clients that went silent before the end never recovered
    assert figures.recovery(_steady(100.0, 110.0), injected=101.0, ended=120.0) is None


def test_a_retried_order_is_not_clean_even_if_acked():
    assert not _order(1.0, attempts=2).clean and not _order(1.0, latency_ms=1001).clean and _order(1.0).clean


def _sample(t: float, leader: str | None = "db1", vip: str | None = "g1", breakers: int = 0,
            sessions: int = 30) -> Sample:
    return Sample(t, leader, {"sz1": vip}, breakers, {"bgp_established": sessions})


def test_detection_no_leader_time_and_vip_moves_from_samples():
    samples = [_sample(0.0), _sample(0.5), _sample(1.0), _sample(1.5, leader=None, vip=None),
               _sample(2.0, leader=None, vip="g2"), _sample(2.5, leader="db2", vip="g2"), _sample(3.0, leader="db2")]
    assert figures.detection(samples, injected=1.2) == pytest.approx(0.3)
    assert figures.no_leader(samples) == pytest.approx(1.0)
    assert figures.vip_moves(samples, injected=1.2) == {"sz1": pytest.approx(0.8)}


def test_nothing_changed_means_no_detection_and_a_withdrawn_bgp_path_is_a_reaction():
    samples = [_sample(0.0), _sample(1.0), _sample(2.0)]
    assert figures.detection(samples, injected=0.5) is None
    withdrawn = [_sample(0.0), _sample(0.4), _sample(0.9, sessions=28), _sample(1.4, sessions=28)]
    assert figures.detection(withdrawn, injected=0.5) == pytest.approx(0.4)


def _k8s(t: float, nodes: int, ready: int, evicted: int, newest: int) -> Sample:
    return Sample(t, "db1", {"sz1": "g1"}, 0, {"bgp_established": 30, "k8s.hk1.nodes_ready": nodes,
                                              "k8s.hk1.pods_ready": ready, "k8s.hk1.pods_evicted": evicted,
                                              "k8s.hk1.newest_ready": newest,
                                              "k8s.sz1.nodes_ready": 1, "k8s.sz1.pods_ready": 2,
                                              "k8s.sz1.pods_evicted": 0, "k8s.sz1.newest_ready": 50})


def test_kubernetes_figures_read_not_ready_eviction_and_a_ready_replacement_per_cluster():
    # hk1's node is lost at t=100: NotReady at 140, its pods evicted at 145, the node back at 170 and a
    # replacement created at 171 ready at 173; sz1 never reacts, so it is not reported
    samples = [_k8s(99.5, 1, 2, 0, 50), _k8s(120, 1, 2, 0, 50), _k8s(140, 0, 0, 0, 50), _k8s(145, 0, 0, 2, 50),
               _k8s(171, 1, 1, 2, 171), _k8s(173, 1, 2, 0, 171)]
    assert figures.kubernetes(samples, injected=100.0) == {
        "hk1": {"not_ready_s": 40.0, "evicted_s": 45.0, "replacement_ready_s": 73.0}}
    # Kubernetes' default: the pods tolerate the lost node for 300 s, longer than this drill watched
    slow = [_k8s(99.5, 1, 2, 0, 50), _k8s(140, 0, 0, 0, 50), _k8s(171, 1, 2, 0, 50)]
    assert figures.kubernetes(slow, injected=100.0) == {
        "hk1": {"not_ready_s": 40.0, "evicted_s": None, "replacement_ready_s": None}}
    assert figures.kubernetes([_sample(0.0), _sample(1.0)], injected=0.5) == {}  # no clusters: no figures
    assert figures.Figures(kubernetes={"hk1": {"evicted_s": 45.0}}).to_dict()["kubernetes"]["hk1"]["evicted_s"] == 45.0


def test_figures_the_samples_cannot_support_are_null_never_0():
    # samples 20 s apart (the last at the very end) cover 4 x 5 s of an 85 s drill: no figure read from them
    sparse = [_sample(100.0 + 20 * k, leader=None) for k in range(5)]
    f = figures.compute(_steady(95.0, 180.0), sparse, Window(injected=100.0, restored=170.0, ended=180.0, start=95.0))
    assert f.samples == 5 and f.watched == pytest.approx(20 / 85)
    assert f.no_leader_s is None and f.detection_s is None and f.vip_moves is None and f.kubernetes == {}
    assert f.to_dict()["no_leader_s"] is None and f.to_dict()["vip_moves_s"] is None
    nothing = figures.compute(_steady(95.0, 180.0), [], Window(injected=100.0, restored=170.0, ended=180.0, start=95.0))
    assert nothing.samples == 0 and nothing.watched == 0 and nothing.no_leader_s is None  # main said 0.0
    dense = [_sample(95.0 + 0.5 * k, leader=None if 120 <= 95.0 + 0.5 * k < 125 else "db1") for k in range(171)]
    f = figures.compute(_steady(95.0, 180.0), dense, Window(injected=100.0, restored=170.0, ended=180.0, start=95.0))
    assert f.watched == pytest.approx(1.0) and f.no_leader_s == pytest.approx(5.0)


def test_watched_is_the_share_of_the_drill_within_a_gap_after_a_sample():
    samples = [_sample(0.0), _sample(1.0), _sample(8.0)]
    assert figures.watched(samples, 0.0, 10.0, gap=2.0) == pytest.approx(0.5)   # [0, 3) and [8, 10)
    assert figures.watched(samples, 0.0, 10.0) == pytest.approx(0.8)            # 5 s: [0, 6) and [8, 10)
    assert figures.watched([], 0.0, 10.0) == 0.0


def test_a_replacement_created_in_the_second_of_the_injection_counts():
    # pods deleted through the API at 100.6 are replaced within the same second: creation times are whole
    # seconds (100), yet the replacement ready at 104 is one
    samples = [_k8s(100.0, 1, 2, 0, 50), _k8s(100.9, 1, 0, 2, 50), _k8s(104.6, 1, 2, 0, 100)]
    assert figures.kubernetes(samples, injected=100.6) == {
        "hk1": {"not_ready_s": None, "evicted_s": pytest.approx(0.3), "replacement_ready_s": pytest.approx(4.0)}}
    # one created the second before is not
    early = [_k8s(100.0, 1, 2, 0, 50), _k8s(100.9, 1, 0, 2, 50), _k8s(104.6, 1, 2, 0, 99)]
    assert figures.kubernetes(early, injected=100.6)["hk1"]["replacement_ready_s"] is None


def test_compute_splits_latency_by_phase_and_counts_errors():
    orders = [_order(1.0, 10), _order(2.0, 20), _order(5.0, 900), _order(6.0, 50, "unknown", 2),
              _order(9.0, 30, endpoint="http://b")]
    f = figures.compute(orders, [], Window(injected=4.0, restored=8.0, ended=10.0))
    assert f.orders == 5 and f.client_errors == 1 and f.error_rate == pytest.approx(0.2)
    assert f.latency_p99_ms == {"before": 20, "during": 900, "after": 30}
    assert f.served_by == {"http://a": 3, "http://b": 1}


def test_percentile_is_nearest_rank():
    assert figures.percentile([float(v) for v in range(1, 101)], 0.99) == 99.0
    assert figures.percentile([5.0], 0.99) == 5.0 and figures.percentile([], 0.5) is None


def test_timeline_bins_by_send_time():
    orders = [_order(10.1), _order(10.2), _order(10.7, outcome="refused", attempts=2)]
    assert figures.timeline(orders, start=10.0) == [{"t": 0.0, "acked": 2, "errors": 0, "p99_ms": 10},
                                                     {"t": 0.5, "acked": 0, "errors": 1, "p99_ms": None}]


def test_a_gap_in_which_nothing_was_sent_is_zero_orders_not_a_line_across_it():
    orders = [_order(10.1), _order(11.6)]
    assert figures.timeline(orders, start=10.0) == [
        {"t": 0.0, "acked": 1, "errors": 0, "p99_ms": 10}, {"t": 0.5, "acked": 0, "errors": 0, "p99_ms": None},
        {"t": 1.0, "acked": 0, "errors": 0, "p99_ms": None}, {"t": 1.5, "acked": 1, "errors": 0, "p99_ms": 10}]
    assert figures.continuous(figures.timeline(orders, start=10.0)) == figures.timeline(orders, start=10.0)


# -- verdicts -----------------------------------------------------------------------------------------
def _reconciliation(lost: int = 0, dupes: int = 0, bad: int = 0, silent: int = 0, missed: int = 0) -> dict:
    def cut(n: int) -> dict:
        return {"count": n, "sample": []}
    return {"ok": not (lost or dupes or bad or silent or missed), "ledger_orders": 100, "acked_missing": cut(lost),
            "acked_id_mismatch": cut(0), "duplicates": {"database": dupes, "venues": cut(0)},
            "bad_balances_seen": cut(bad), "wrong_balances": cut(0), "unsettled": cut(0),
            "silently_ended": cut(silent), "not_placed_but_present": cut(0), "venue_mismatch": cut(missed)}


def _drill(**expect) -> model.Drill:
    return model.Drill(name="d", description="x", faults=[faults.LinkDown(kind="link-down", group="carrier:ct")],
                       expect=model.Expectations(**expect))


def _checks(drill: model.Drill, figs: figures.Figures, rec: dict | None, journal: Journal,
            spike: dict | None = None, load: list[str] | None = None, watch: list[str] | None = None) -> list[dict]:
    """The verdict's checks, with the clients' load and the observer's samples as good as they come unless said."""
    return verdict.verdict_checks(drill, figs, rec, journal, spike, load=load or [], watch=watch or [])


def test_an_unmeetable_recovery_bound_fails_the_verdict():
    figs = figures.Figures(recovery_s=2.5)
    checks = _checks(_drill(max_recovery_s=0.001), figs, _reconciliation(), Journal())
    failed = [c for c in checks if not c["ok"]]
    assert [c["check"] for c in failed] == ["recovery time (s)"] and failed[0]["actual"] == 2.5


def test_lost_orders_silent_cancels_and_failed_restores_each_fail_their_check():
    journal = Journal()
    with journal.step("restore: carrier ct"):
        raise RuntimeError("nft said no")
    checks = _checks(_drill(), figures.Figures(), _reconciliation(lost=2, silent=1), journal)
    failed = {c["check"]: c["actual"] for c in checks if not c["ok"]}
    assert failed == {"every step and restore succeeded": ["restore: carrier ct"], "acknowledged orders lost": 2,
                      "every order accounted for (none pending, none ended without a reason)": 1}
    assert journal.steps[0].detail == "RuntimeError: nft said no"


def test_a_fill_the_system_of_record_missed_fails_the_drill():
    checks = _checks(_drill(), figures.Figures(), _reconciliation(missed=1), Journal())
    assert [c["check"] for c in checks if not c["ok"]] == ["every order as its venue's book says"]


def test_no_reconciliation_is_a_failed_check_not_a_pass():
    checks = _checks(_drill(), figures.Figures(), None, Journal())
    ran = next(c for c in checks if c["check"] == "reconciliation ran")
    assert not ran["ok"] and ran["actual"] == "not run: the clients sent no order"
    journal = Journal()
    with journal.step("reconcile"):
        raise RuntimeError("connection refused")
    ran = next(c for c in _checks(_drill(), figures.Figures(), None, journal) if c["check"] == "reconciliation ran")
    assert not ran["ok"] and ran["actual"] == "RuntimeError: connection refused"


def test_reconciling_no_order_judged_nothing():
    checks = _checks(_drill(), figures.Figures(), {**_reconciliation(), "ledger_orders": 0}, Journal())
    assert next(c for c in checks if c["check"] == "reconciliation ran")["ok"] is False
    checks = _checks(_drill(), figures.Figures(), {**_reconciliation(), "ledger_orders": 12}, Journal())
    assert next(c for c in checks if c["check"] == "reconciliation ran")["actual"] == "12 ledger orders reconciled"


def test_problems_with_the_load_or_the_samples_fail_their_checks():
    checks = _checks(_drill(), figures.Figures(), _reconciliation(), Journal(), load=["before the fault: sent 3 of 240"],
                     watch=["no sample of the stack was taken"])
    failed = {c["check"]: c["actual"] for c in checks if not c["ok"]}
    assert failed == {"the load ran as planned": "before the fault: sent 3 of 240",
                      "the stack was watched": "no sample of the stack was taken"}


def test_a_phase_short_of_its_planned_orders_or_sessions_says_so():
    ok = figures.PhaseLoad(5.0, 240, 229, 320, 310)
    assert ok.shortfalls() == []  # 228 is 95% of 240; 304 of 320
    assert figures.PhaseLoad(5.0, 240, 227, 320, 320).shortfalls() == ["sent 227 of 240 planned orders (95%)"]
    assert figures.PhaseLoad(5.0, 240, 240, 320, 303).shortfalls() == ["held 303 of 320 sessions"]
    assert figures.PhaseLoad(5.0, 240, 240, 320, None).shortfalls() == ["no progress report from the clients"]
    assert figures.PhaseLoad(0.0, 0, 0, 320, 320).shortfalls() == ["nothing planned in 0.0 s"]


def test_two_reconciliations_add_up():
    merged = reconcile.merge(_reconciliation(lost=1), _reconciliation(lost=2, dupes=1))
    assert merged["acked_missing"]["count"] == 3 and merged["duplicates"]["database"] == 1 and not merged["ok"]


# -- reports and history ----------------------------------------------------------------------------
def _document(verdict: str = "pass") -> dict:
    return {"run": "20260101T000000Z-carrier-outage", "drill": "carrier-outage", "stack": "lab",
            "description": "carrier <ct> fails", "verdict": verdict,
            "checks": [{"check": "acknowledged orders lost", "expected": "<= 0", "actual": 0, "ok": True}],
            "figures": {"recovery_s": 1.2}, "reconciliation": _reconciliation(), "started": 1000.0,
            "ended": 1060.0, "plan": {"steps": ["preflight", "inject"]}, "marks": {"load_started": 0.5,
                                                                                  "injected": 5.5, "restored": 20.5},
            "journal": [{"name": "inject", "started": 1005.5, "ended": 1005.6, "ok": True, "detail": "x"}],
            "timeline": [{"t": 0.0, "acked": 10, "errors": 0, "p99_ms": 12.0},
                         {"t": 5.0, "acked": 3, "errors": 4, "p99_ms": 900.0}],
            "samples": [{"t": 1.0, "leader": "db1", "vip_holders": {"sz1": "g1"}},
                        {"t": 6.0, "leader": "db2", "vip_holders": {"sz1": "g1"}}],
            "interrupted": None, "aborted": None}


def test_the_html_report_is_self_contained_escaped_and_has_the_plot(tmp_path: Path):
    paths = report.write(_document(), tmp_path)
    page = paths["html"].read_text()
    assert 'id="verdict">PASS<' in page and "carrier &lt;ct&gt; fails" in page
    assert "data:image/png;base64," in page and "http://" not in page and "https://" not in page
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(paths["json"].read_text())["run"] == "20260101T000000Z-carrier-outage"
    assert report._failovers(_document()) == [(6.0, "database leader: db2")]


def test_history_keeps_runs_newest_first_and_reports_unknown_runs_clearly():
    older, newer = _document("fail"), {**_document(), "run": "20260102T000000Z-carrier-outage", "started": 2000.0}
    history.record(older)
    history.record(newer)
    rows = history.runs("lab")
    assert [r.run for r in rows] == [newer["run"], older["run"]] and rows[1].verdict == "fail"
    assert rows[0].recovery_s == 1.2 and rows[0].acked_lost == 0
    assert history.load("lab", older["run"])["verdict"] == "fail"
    with pytest.raises(InputError, match="no drill run 'x' on stack 'lab'"):
        history.load("lab", "x")


def test_drill_cli_list_history_and_report(tmp_path: Path):
    runner = CliRunner()
    listed = runner.invoke(app, ["drill", "list", "--json"])
    assert listed.exit_code == 0 and len(json.loads(listed.stdout)["drills"]) == 16
    needs = {d["name"]: d["substrate"] for d in json.loads(listed.stdout)["drills"]}
    assert needs["site-node-loss"] == "kubernetes" and needs["db-leader-reboot"] == "systemd hosts"
    history.record(_document())
    shown = runner.invoke(app, ["drill", "history", "--stack", "lab", "--json"])
    assert shown.exit_code == 0 and json.loads(shown.stdout)["runs"][0]["verdict"] == "pass"
    rebuilt = runner.invoke(app, ["drill", "report", _document()["run"], "--stack", "lab", "--out", str(tmp_path)])
    assert rebuilt.exit_code == 0 and (tmp_path / "report.html").exists()
    missing = runner.invoke(app, ["drill", "report", "nope", "--stack", "lab"])
    assert missing.exit_code == 2 and "no drill run 'nope'" in missing.output


def test_drill_run_help_explains_restore_and_exit_codes():
    r = CliRunner().invoke(app, ["drill", "run", "--help"])
    assert r.exit_code == 0 and "Restore always runs" in r.output and "130" in r.output and "Example" in r.output


def test_a_bad_drill_file_is_exit_2_with_its_line(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\n")
    r = CliRunner().invoke(app, ["drill", "run", str(path), "--dry-run"])
    assert r.exit_code == 2 and f"{path}:1:1" in r.output and "Traceback" not in r.output


# -- measured capacity (judging one run) -------------------------------------------------------------
def test_a_capacity_scenario_passes_only_when_enough_is_acked_fast_enough():
    from tradestack.capacity.verify import judge

    good = judge("all sites up", 100, 10, {"ok": True, "acked": 990, "throttled": 0, "server_errors": 0,
                                           "unknown": 0, "latency_ms": {"p50": 12, "p99": 80}})
    assert good.ok and good.acked_per_s == 99.0
    short = judge("site sz1 down", 100, 10, {"ok": True, "acked": 600, "throttled": 300, "latency_ms": {"p99": 80}})
    assert not short.ok and short.detail == "carried 60/s of 100/s" and short.throttled == 300
    slow = judge("all sites up", 100, 10, {"ok": True, "acked": 1000, "latency_ms": {"p99": 900}})
    assert not slow.ok and slow.detail == "p99 900 ms > 250 ms"
    broken = judge("all sites up", 100, 10, {"ok": False, "error": "boom"})
    assert not broken.ok and "boom" in broken.detail


def test_only_one_drill_per_stack_at_a_time():
    with lock.stack_lock("lab"):
        with pytest.raises(engine.DrillRefused, match="another drill is running on stack 'lab'"):
            with lock.stack_lock("lab"):
                pass
    with lock.stack_lock("lab"):  # released again
        pass


def test_a_load_spike_that_times_out_or_fails_fails_its_check():
    ok = _checks(_drill(), figures.Figures(), _reconciliation(), Journal(),
                 {"ok": True, "acked": 500, "throttled": 900, "server_errors": 0, "unknown": 0})
    bad = _checks(_drill(), figures.Figures(), _reconciliation(), Journal(), {"ok": True, "server_errors": 3, "unknown": 2})
    spike = "load spike answered with 429s, no 5xx or timeouts"
    assert next(c for c in ok if c["check"] == spike)["ok"]
    assert next(c for c in bad if c["check"] == spike) == {"check": spike, "expected": "0 of either", "actual": 5,
                                                            "ok": False}


def test_drill_load_is_the_topologys_peak_sessions_and_refresh():
    from tradestack.drills.engine import load_shape
    from tradestack.drills.model import Load
    from tradestack.topology import load_topology

    lab = load_topology(Path(__file__).resolve().parents[2] / "infra" / "topologies" / "lab.yaml")
    assert load_shape(Load(), lab) == (320, 10.0)                        # at peak: every declared session
    assert load_shape(Load(peak_fraction=0.5), lab) == (160, 10.0)       # scaled like the order rate
    assert load_shape(Load(sessions=64, refresh_s=2.0), lab) == (64, 2.0)  # a drill may say its own


def test_every_catalogue_drill_runs_at_the_full_peak_with_the_peaks_sessions():
    """The seed outages happened at peak concurrency: no catalogue drill may try its faults under a token load."""
    from tradestack.drills import files
    from tradestack.substrates.faults import LoadSpike

    for name in files.every_drill():
        drill = files.resolve(name)
        assert drill.load.peak_fraction == 1.0 and drill.load.sessions is None, name
        assert all(f.multiplier >= 3 for f in drill.faults if isinstance(f, LoadSpike)), name


def test_every_catalogue_drill_bounds_recovery_and_client_errors_every_folder_too():
    """Bounds are the worst of five benchmark runs x 1.5 (docs/drills.md cites the runs): without them a drill with
    an empty ledger judged nothing timed and passed."""
    from tradestack.drills import files

    every = files.every_drill()
    assert len(every) == 16
    for name in every:
        expect = files.resolve(name).expect
        assert expect.max_recovery_s is not None and expect.max_error_rate is not None, name


def test_a_synchronous_standby_counts_only_once_it_streams():
    """Patroni names a node that came back after a cut as synchronous standby while it still has to rewind: until
    it streams it holds none of the new commits, and a failover to it finds no healthy node (seen in capacity verify:
    the next site cut left no primary for 90 s)."""
    from tradestack.health import synchronous_standbys

    members = [{"name": "a", "role": "leader", "state": "running"},
               {"name": "b", "role": "sync_standby", "state": "running", "lag": None},
               {"name": "c", "role": "sync_standby", "state": "streaming", "lag": 0},
               {"name": "d", "role": "replica", "state": "streaming", "lag": 0}]
    assert synchronous_standbys(members) == ["c"]


def _gateway_page(parked: int, buckets: dict[str, int], total: float) -> str:
    """A gateway's /metrics as prometheus_client writes it (cumulative buckets; `count` is the +Inf bucket)."""
    lines = ["# HELP tradestack_gateway_orders_parked_total new orders that waited",
             "# TYPE tradestack_gateway_orders_parked_total counter",
             f"tradestack_gateway_orders_parked_total {parked}.0",
             "# HELP tradestack_gateway_parked_wait_seconds how long a parked order waited",
             "# TYPE tradestack_gateway_parked_wait_seconds histogram"]
    lines += [f'tradestack_gateway_parked_wait_seconds_bucket{{le="{le}"}} {n}.0' for le, n in buckets.items()]
    lines += [f"tradestack_gateway_parked_wait_seconds_count {buckets['+Inf']}.0",
              f"tradestack_gateway_parked_wait_seconds_sum {total}"]
    return "\n".join(lines) + "\n"


def test_parked_orders_and_their_wait_are_what_the_gateways_counted_during_the_drill():
    """Issue 33's parked figure: differences of each gateway's counters between the reads before and after the
    load; a gateway that restarted in between (its counters went down) counts from zero; one that did not answer
    either read is named, not counted."""
    before = {"gw-1": _gateway_page(10, {"1.0": 10, "5.0": 10, "10.0": 10, "+Inf": 10}, 5.0),
              "gw-2": _gateway_page(50, {"1.0": 50, "5.0": 50, "10.0": 50, "+Inf": 50}, 20.0),
              "gw-3": _gateway_page(0, {"1.0": 0, "5.0": 0, "10.0": 0, "+Inf": 0}, 0.0)}
    after = {"gw-1": _gateway_page(110, {"1.0": 10, "5.0": 109, "10.0": 110, "+Inf": 110}, 405.0),  # +100
             "gw-2": _gateway_page(3, {"1.0": 0, "5.0": 3, "10.0": 3, "+Inf": 3}, 9.0),  # restarted: +3
             "gw-3": None}
    p = figures.parking(before, after)
    # 103 parked, 99 of them by 5 s (99 + 3 = 102 >= 0.99 x 103 = 101.97), waits summing to 400 + 9 s
    assert (p.orders, p.wait_p99_s, p.gateways, p.unread) == (103, 5.0, 2, ("gw-3",))
    assert p.wait_mean_s == pytest.approx(409 / 103)
    slow = figures.parking({"g": _gateway_page(0, {"10.0": 0, "+Inf": 0}, 0.0)},
                           {"g": _gateway_page(100, {"10.0": 98, "+Inf": 100}, 700.0)})
    assert slow.orders == 100 and slow.wait_p99_s is None  # the 99th is above every finite bound
    nothing = figures.parking({"g": _gateway_page(4, {"+Inf": 4}, 1.0)}, {"g": _gateway_page(4, {"+Inf": 4}, 1.0)})
    assert (nothing.orders, nothing.wait_p99_s, nothing.wait_mean_s, nothing.gateways) == (0, None, None, 1)


def test_each_gateways_first_database_answer_is_timed_from_the_promotion_patroni_recorded():
    def page(back: float) -> str:
        return ("# TYPE tradestack_gateway_database_back_timestamp_seconds gauge\n"
                f"tradestack_gateway_database_back_timestamp_seconds {back}\n")

    pages = {"gw-1": page(1000.35), "gw-2": page(999.97), "gw-3": page(0.0), "gw-4": page(900.0), "gw-5": None}
    # gw-2 answered just before Patroni recorded the promotion; gw-3 never lost it (or restarted), gw-4 came back
    # before this drill's injection (at 995), gw-5 did not answer
    assert figures.first_answers(pages, 1000.0, 995.0) == {"gw-1": pytest.approx(0.35), "gw-2": pytest.approx(-0.03),
                                                           "gw-3": None, "gw-4": None, "gw-5": None}
    assert figures.first_answers(pages, None, 995.0) == dict.fromkeys(pages)  # no promotion in the drill


def test_an_order_acked_on_its_one_try_however_slow_is_not_failed_or_retried_and_an_unsent_one_is():
    """Issue 33's client figure: a parked order answered after 4 s on its first try costs latency (it is not
    served at once) but was neither failed nor retried; a retried one, a refused one and an order planned but
    never sent were."""
    from tradestack.drills.clients import Report

    orders = [_order(1.0), _order(5.0, latency_ms=4000), _order(5.5, attempts=2, latency_ms=300),
              _order(6.0, outcome="refused"), _order(9.0)]
    f = figures.compute(orders, [], Window(injected=4.0, restored=8.0, ended=10.0))
    assert f.client_errors == 3 and f.failed_or_retried == 2 and f.failed_or_retried_rate == pytest.approx(0.4)
    reports = [Report(t=t, sent=n, answered=n, served_at_once=n, connected=2, sessions=2)
               for t, n in ((3.9, 1), (7.9, 4), (9.9, 5))]
    planned = figures.compute(orders, [], Window(injected=4.0, restored=8.0, ended=10.0, start=0.0), reports,
                              rate=1.0, sessions=2)
    # planned at 1/s: baseline 4 (1 sent), fault 4 (3 sent), after 2 (1 sent): 5 never sent
    assert planned.failed_or_retried == 2 + 5 and planned.failed_or_retried_rate == pytest.approx(7 / 10)
