"""The audit without hosts: the catalogue, verdicts per control, reports and their manifest, CLI edges."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradestack.audit import catalogue, report
from tradestack.audit.evidence import DAY, Run, Wanted, judge
from tradestack.audit.run import headline, passes, verdicts
from tradestack.cli.app import app
from tradestack.errors import InputError

pytestmark = pytest.mark.unit


def test_the_catalogue_covers_resilience_security_operations_and_evidence_and_every_control_has_checks():
    items = catalogue.controls()
    ids = [c.id for c in items]
    assert len(ids) == len(set(ids)) == 17
    assert {i.split("-")[0] for i in ids} == {"RES", "SEC", "OPS", "EVD", "KUB"}
    # the Kubernetes controls hold only stacks whose services run in clusters
    assert {c.id for c in items if c.applies_to == "clusters"} == {"KUB-01", "KUB-02", "KUB-03", "KUB-04"}
    assert all(c.refs and c.rationale and c.remedy for c in items)
    implemented = "".join(p.read_text() for p in catalogue.CHECKS.glob("test_*.py"))
    assert all(f'pytest.mark.control("{i}")' in implemented for i in ids)


def test_unknown_control_ids_are_input_errors_listing_the_known_ones():
    with pytest.raises(InputError, match="unknown control.s. NOPE-99; known: RES-01"):
        catalogue.select(catalogue.controls(), ["RES-01", "NOPE-99"])
    assert [c.id for c in catalogue.select(catalogue.controls(), ["SEC-04"])] == ["SEC-04"]


def _record(control: str, target: str, outcome: str, reason: str = "") -> dict:
    return {"nodeid": f"x[{target}]", "control": control, "target": target, "outcome": outcome, "reason": reason,
            "duration_s": 0.1, "evidence": [{"host": target, "at": 0.0, "command": "true", "rc": 0, "output": "<ok>"}]}


def test_a_control_passes_only_when_every_target_was_judged_and_passed():
    chosen = catalogue.select(catalogue.controls(), ["RES-01", "SEC-04", "EVD-01", "OPS-02"])
    records = [_record("RES-01", "db1", "passed"), _record("RES-01", "db2", "passed"),
               _record("SEC-04", "gw1", "passed"), _record("SEC-04", "gw2", "failed", "mode 0o644"),
               _record("EVD-01", "carrier-outage", "skipped", "no run yet")]
    by_id = {c["id"]: c for c in verdicts(chosen, records)}
    assert by_id["RES-01"]["verdict"] == "pass" and by_id["RES-01"]["targets"] == 2
    assert by_id["SEC-04"]["verdict"] == "fail" and by_id["SEC-04"]["failed"] == ["gw2: mode 0o644"]
    # main called an all-skipped control "skipped": nothing judged is a failure
    assert by_id["EVD-01"]["verdict"] == "fail"
    assert by_id["EVD-01"]["failed"] == ["carrier-outage: not judged: no run yet"]
    assert by_id["OPS-02"]["verdict"] == "fail"
    assert by_id["OPS-02"]["failed"] == ["nothing to judge: the control found no target on this stack"]


def test_the_exit_policy_counts_failing_controls_at_or_above_its_severity():
    chosen = catalogue.select(catalogue.controls(), ["RES-01", "RES-06", "OPS-02"])  # high, medium, low
    all_pass = [_record("RES-01", "db1", "passed"), _record("RES-06", "x", "passed"), _record("OPS-02", "h", "passed")]
    assert passes(verdicts(chosen, all_pass), "low")
    medium_fails = verdicts(chosen, [_record("RES-01", "db1", "passed"), _record("RES-06", "x", "failed", "1 of 2"),
                                     _record("OPS-02", "h", "passed")])
    assert passes(medium_fails, "high") and not passes(medium_fails, "medium") and not passes(medium_fails, "low")
    low_fails = verdicts(chosen, [_record("RES-01", "db1", "passed"), _record("RES-06", "x", "passed"),
                                  _record("OPS-02", "h", "failed", "no rotation")])
    assert passes(low_fails, "medium") and not passes(low_fails, "low")
    assert not passes(verdicts(chosen, [_record("RES-01", "db1", "skipped", "no leader to ask")]), "high")
    assert not passes(verdicts(chosen, [_record("RES-06", "x", "passed")]), "high")  # RES-01 checked nothing


def test_the_headline_names_every_failing_control_and_its_severity_most_severe_first():
    chosen = catalogue.select(catalogue.controls(), ["EVD-01", "RES-01", "SEC-02", "OPS-02"])
    found = verdicts(chosen, [_record("EVD-01", "carrier-outage", "failed", "never run"),
                              _record("RES-01", "db1", "passed"), _record("OPS-02", "h", "failed", "x")])
    # main's title said PASS here (every high control... except SEC-02, which found nothing, was not named)
    assert headline(found) == "FAIL: SEC-02 (high), EVD-01 (medium), OPS-02 (low)"
    assert headline(verdicts(chosen[:2], [_record("EVD-01", "d", "passed"), _record("RES-01", "db1", "passed")])) \
        == "PASS"


NOW = 1_800_000_000.0
DIGEST = "d" * 64
ENGINE = (("the load ran as planned", True), ("the stack was watched", True), ("reconciliation ran", True),
          ("recovery time (s)", True), ("acknowledged orders lost", True))
WANTED = Wanted("db-primary-crash", DIGEST, 48.0, 320)


def _run(run: str, age_days: float, **kw) -> Run:
    fields = {"drill": "db-primary-crash", "verdict": "pass", "digest": DIGEST, "rate": 48.0, "sessions": 320,
              "tool": "tradestack 0.1.0", "checks": ENGINE} | kw
    return Run(run, started=NOW - age_days * DAY, **fields)


@pytest.mark.parametrize("run, why", [
    (_run("renamed", 1, drill="db-crash-copy", digest="e" * 64), "its definition differs from the catalogue's"),
    (_run("own-file", 1, digest="f" * 64, rate=2.0, sessions=4), "its definition differs from the catalogue's"),
    (_run("token-load", 1, rate=4.8, sessions=32),
     "its load (4.8 orders/s, 32 sessions) is below the declared peak (48 orders/s, 320 sessions)"),
    (_run("old", 40), "it is 40.0 days old (max 30)"),
    (_run("failed", 1, verdict="fail"), "its verdict is fail"),
    (_run("unjudged", 1, checks=(("acknowledged orders lost", True),)),
     "not judged: the load ran as planned, the stack was watched, reconciliation ran"),
    (_run("red-check", 1, checks=ENGINE[:2] + (("reconciliation ran", False),)), "checks failed: reconciliation ran"),
    (_run("before-digests", 1, digest=None),
     "it records no definition digest (run before runs were bound to their definition)"),
    (_run("no-tool", 1, tool=None), "it records no tool version"),
    (_run("counts", 1), None),
])
def test_evd01_counts_only_a_recent_passing_run_of_the_catalogue_definition_at_peak(run, why):
    from tradestack.audit.evidence import rejection

    assert rejection(run, WANTED, NOW, 30) == why


def test_evd01_shows_the_run_that_counts_and_why_each_other_does_not():
    runs = [_run("renamed", 0.5, drill="db-crash-copy", digest="e" * 64),  # another drill: not considered
            _run("token-load", 1, rate=4.8, sessions=32), _run("passing", 2), _run("old", 40),
            _run("other-drill", 1, drill="carrier-outage", digest="c" * 64)]
    judged = judge(WANTED, runs, NOW, 30)
    assert judged.ok and judged.counting is not None and judged.counting.run == "passing"
    assert judged.rejected == [
        ("token-load", "its load (4.8 orders/s, 32 sessions) is below the declared peak (48 orders/s, 320 sessions)"),
        ("old", "it is 40.0 days old (max 30)")]
    assert judged.summary() == ("counts: passing; token-load does not count: its load (4.8 orders/s, 32 sessions) "
                                "is below the declared peak (48 orders/s, 320 sessions); old does not count: it is "
                                "40.0 days old (max 30)")


def test_evd01_a_file_named_like_a_catalogue_drill_is_not_its_evidence():
    # main accepted any passing run named db-primary-crash: here a user's own file of that name, token load
    judged = judge(WANTED, [_run("mine", 1, digest="f" * 64, rate=2.0, sessions=4)], NOW, 30)
    assert not judged.ok and judged.finding == "none of 1 run(s) of db-primary-crash counts as evidence"
    assert judge(WANTED, [], NOW, 30).finding == ("no run of db-primary-crash in the drill history: no evidence it "
                                                   "was ever tested")


def test_a_run_report_gives_evd01_what_it_judges():
    report = {"run": "r1", "drill": "db-primary-crash", "started": 5.0, "verdict": "pass", "definition_digest": DIGEST,
              "tool": "tradestack 0.1.0", "plan": {"rate": 48.0, "sessions": 320},
              "checks": [{"check": "reconciliation ran", "ok": True}]}
    assert Run.from_report(report) == Run("r1", "db-primary-crash", 5.0, "pass", DIGEST, 48.0, 320, "tradestack 0.1.0",
                                          (("reconciliation ran", True),))


def test_the_digest_is_the_definitions_not_the_files_layout():
    from tradestack.drills import files, model

    drill = files.resolve("db-primary-crash")
    same = model.Drill.model_validate(drill.model_dump())
    assert same.digest == drill.digest and len(drill.digest) == 64
    edited = model.Drill.model_validate({**drill.model_dump(), "load": {**drill.load.model_dump(), "peak_fraction": 0.1}})
    assert edited.digest != drill.digest


def test_reports_are_escaped_self_contained_and_the_manifest_catches_tampering(tmp_path: Path):
    chosen = catalogue.select(catalogue.controls(), ["SEC-04"])
    records = [_record("SEC-04", "gw<1>", "failed", "mode 0o644")]
    (tmp_path / "junit.xml").write_text("<testsuites/>")
    summary = {"stack": "lab", "topology": "t.yaml", "tool": "tradestack 0", "started": "s", "ended": "e",
               "hosts": ["gw<1>"]}
    found = verdicts(chosen, records)
    paths = report.write_reports(tmp_path, {**summary, "headline": headline(found)}, found, records, ok=False)
    page = paths["html"].read_text()
    assert 'id="verdict" class="bad">FAIL: SEC-04 (high)<' in page and "gw&lt;1&gt;" in page
    assert "<b>What to do:</b> chmod 0600 the file" in page
    assert "DORA Art. 9(4)(d)" in page and "http" not in page
    assert json.loads(paths["json"].read_text())["controls"][0]["verdict"] == "fail"
    assert report.verify_manifest(tmp_path) == []
    paths["json"].write_text(paths["json"].read_text().replace('"fail"', '"pass"'))
    assert report.verify_manifest(tmp_path) == ["audit.json"]


def test_audit_cli_lists_controls_and_refuses_unknown_ones_with_exit_2():
    runner = CliRunner()
    listed = runner.invoke(app, ["audit", "controls", "--json"])
    assert listed.exit_code == 0 and len(json.loads(listed.stdout)["controls"]) == 17
    bad = runner.invoke(app, ["audit", "run", "--controls", "XYZ-01", "--stack", "lab"])
    assert bad.exit_code == 2 and "unknown control(s) XYZ-01" in bad.output
    helped = runner.invoke(app, ["audit", "run", "--help"])
    assert helped.exit_code == 0 and "--fail-on" in helped.output and "Example" in helped.output


def test_failing_controls_come_first_in_the_html_report(tmp_path: Path):
    chosen = catalogue.select(catalogue.controls(), ["RES-01", "EVD-01", "SEC-01"])
    records = [_record("RES-01", "db1", "passed"), _record("EVD-01", "d", "failed", "never run"),
               _record("SEC-01", "h", "failed", "PasswordAuthentication is not 'no'")]
    found = verdicts(chosen, records)
    page = report.render_html({"ok": False, "stack": "lab", "topology": "t", "tool": "x", "started": "s",
                               "ended": "e", "hosts": [], "controls": found, "results": records,
                               "headline": headline(found), "fail_on": "medium"})
    assert page.index("control-SEC-01") < page.index("control-EVD-01") < page.index("control-RES-01")
    assert "FAIL: SEC-01 (high), EVD-01 (medium)" in page and "of severity medium or high" in page


def test_the_plugin_imports_and_every_check_module_compiles():
    import importlib
    import py_compile

    importlib.import_module("tradestack.audit.plugin")
    for path in sorted(catalogue.CHECKS.glob("test_*.py")):  # their markers exist only under the audit's pytest
        py_compile.compile(str(path), doraise=True)


def test_an_unreachable_host_is_a_readable_failure_with_its_evidence():
    from tradestack.audit.plugin import Evidence

    class Unreachable:
        def run(self, command):
            raise RuntimeError("CommandResult(backend=x, exit_status=255, command=b'date', _stdout=b'', "
                               "_stderr=b'ssh: connect to host 198.19.196.24 port 22: No route to host\\r\\n')")

    ev = Evidence()
    with pytest.raises(AssertionError, match="h1 is unreachable over SSH: ssh: connect to host 198.19.196.24 "
                                             "port 22: No route to host"):
        ev.run(Unreachable(), "h1", "date")
    assert ev.items[0]["rc"] == 255 and ev.items[0]["command"] == "date"


def test_evidence_recorded_by_a_check_reaches_the_records_even_when_it_fails(tmp_path: Path):
    import subprocess
    import sys

    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "test_one.py").write_text(
        "import pytest\n\n@pytest.mark.control('OPS-01')\ndef test_x(evidence):\n"
        "    evidence.note('h1', 'date', 'Mon')\n    assert False, 'clock off by 9 s'\n")
    results = tmp_path / "records.json"
    context = tmp_path / "context.json"
    context.write_text(json.dumps({"hosts": {}, "controls": ["OPS-01"], "results_file": str(results)}))
    done = subprocess.run([sys.executable, "-m", "pytest", str(checks), "-p", "tradestack.audit.plugin",
                           "--audit-context", str(context), "-c", "/dev/null", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(checks)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout[-2000:]
    [record] = json.loads(results.read_text())
    assert record["control"] == "OPS-01" and record["outcome"] == "failed" and record["reason"] == "clock off by 9 s"
    assert record["evidence"][0]["command"] == "date" and record["evidence"][0]["output"] == "Mon"


def test_testinfra_shares_one_ssh_master_per_host_during_the_run_and_the_users_ansible_config_is_kept(
        tmp_path, monkeypatch):
    """Without a control path every command of the audit is a new SSH login; testinfra takes it only from an
    Ansible configuration file, so the run writes one: the user's own with the control path added."""
    from testinfra.utils.ansible_runner import AnsibleRunner

    from tradestack.audit.run import shared_connections

    inventory = tmp_path / "inventory.yml"
    inventory.write_text("all:\n  hosts:\n    h1: {ansible_host: 198.18.0.9, ansible_user: root}\n")
    users = tmp_path / "users.cfg"
    users.write_text("[defaults]\nforks = 7\n")
    monkeypatch.setenv("ANSIBLE_CONFIG", str(users))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with shared_connections(run_dir):
        AnsibleRunner._runners.clear()
        backend = AnsibleRunner(str(inventory)).get_host("h1").backend
        written = (run_dir / "ansible.cfg").read_text()
    AnsibleRunner._runners.clear()
    assert backend.controlpath == f"{run_dir}/ssh/%%C"   # testinfra doubles the % for its own formatting
    assert "forks = 7" in written
    assert (run_dir / "ssh").stat().st_mode & 0o777 == 0o700
    assert Path(os.environ["ANSIBLE_CONFIG"]) == users  # restored after the run
