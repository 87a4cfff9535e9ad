"""The audit without hosts: the catalogue, verdicts per control, reports and their manifest, CLI edges."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradestack.audit import catalogue, report
from tradestack.audit.evidence import DAY, Run, judge
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


@pytest.mark.parametrize("runs, ok, finding", [
    ([], False, "no run of d in the drill history: no evidence it was ever tested"),
    ([Run("r1", NOW - 3600, "fail"), Run("r2", NOW - 7200, "aborted")], False, "2 run(s) of d, none passing (latest: fail)"),
    ([Run("r1", NOW - 40 * DAY, "pass")], False, "last passing run of d is 40.0 days old (max 30)"),
    ([Run("old", NOW - 40 * DAY, "pass"), Run("new", NOW - DAY, "pass")], True, None),
    ([Run("p", NOW - 2 * DAY, "pass"), Run("f", NOW - DAY, "fail")], True, None),  # last failed, a recent pass holds
])
def test_evd01_judges_missing_failed_or_stale_evidence_as_findings(runs, ok, finding):
    judged = judge("d", runs, NOW, 30)
    assert judged.ok is ok and judged.finding == finding


def test_evd01_evidence_names_the_last_run_its_verdict_and_age():
    judged = judge("db-primary-crash", [Run("r9", NOW - 2 * DAY, "pass"), Run("r10", NOW - DAY / 2, "fail")], NOW, 30)
    assert judged.summary() == ("db-primary-crash: last run r10, fail, 0.50 days ago; last pass 2.00 days ago; "
                                "2 run(s)")
    assert judge("x", [], NOW, 30).summary() == "x: never run"


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
