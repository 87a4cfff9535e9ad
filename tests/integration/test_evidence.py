"""Evidence of the session lab: every drill run and audit the session made is a signed record in the stack's chain
(runs after test_audit.py and test_drills.py in the lab's worker), `tradestack evidence verify` passes on them,
OpenSSH's own `ssh-keygen -Y verify` accepts a record as the README shows an auditor, and verify fails naming the
record after a byte of a report changes, after the newest record is removed and after two are swapped (on a copy
of the chain, so the session's own stays whole)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tradestack.drills import history
from tradestack.evidence import chain, keeper, sshsig

pytestmark = [pytest.mark.integration, pytest.mark.heavy]


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tradestack", *args], capture_output=True, text=True, timeout=900,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def kept(deployed, tmp_path_factory) -> dict:
    """A one-control audit of the lab, so there is a record of this module's own whatever ran before it (twice
    when it is the chain's first: the module run alone)."""
    stack = deployed["stack"].name
    for _ in range(2):
        done = _cli("audit", "run", "--stack", stack, "--controls", "SEC-01", "--out",
                    str(tmp_path_factory.mktemp("audit")), "--json")
        assert done.stdout.strip().startswith("{"), done.stderr[-3000:]
        if json.loads(done.stdout)["evidence"]["record"] > 1:
            break
    return {"stack": stack, "audit": json.loads(done.stdout)}


def test_every_drill_run_and_audit_of_the_session_is_a_record_and_the_chain_verifies(kept):
    stack = kept["stack"]
    records = chain.records(keeper.records_store(), stack)
    assert kept["audit"]["evidence"]["record"] == records[-1].seq and records[-1].kind == "audit"
    by_subject = {r.subject: r for r in records}
    # each drill run's report, as the record holds it (test_drills.py also writes history rows of its own, with no
    # report: those no drill run made)
    runs = [r for r in history.runs(stack) if (history.drills_dir(stack) / r.run / "report.json").exists()]
    for run in runs:
        report = history.drills_dir(stack) / run.run / "report.json"
        assert by_subject[run.run].files["report.json"] == chain.digest(report.read_bytes()), run.run
    print(f"\n{len(records)} records: {len(runs)} drill runs, {sum(r.kind == 'audit' for r in records)} audits")
    done = _cli("evidence", "verify", "--stack", stack, "--json")
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert json.loads(done.stdout) == {"ok": True, "stack": stack, "records": len(records), "problems": []}


def test_an_auditor_checks_a_record_with_ssh_keygen_as_the_readme_shows(kept, tmp_path):
    stack = kept["stack"]
    newest = chain.records(keeper.records_store(), stack)[-1]
    signers = tmp_path / "auditors.allowed"
    pub = sshsig.public_path(keeper.key_path()).read_text().strip()
    signers.write_text(f'{newest.operator} namespaces="tradestack-evidence" {pub}\n')
    record = keeper.records_store().root / chain.record_name(stack, newest.seq)
    # README: ssh-keygen -Y verify -f auditors.allowed -I OPERATOR -n tradestack-evidence -s RECORD.sig < RECORD
    argv = ["ssh-keygen", "-Y", "verify", "-f", str(signers), "-I", newest.operator, "-n", "tradestack-evidence",
            "-s", f"{record}.sig"]
    good = subprocess.run(argv, stdin=record.open("rb"), capture_output=True)
    assert good.returncode == 0 and b"Good" in good.stdout + good.stderr, good.stderr
    bad = subprocess.run(argv, input=record.read_bytes().replace(b'"kind":"audit"', b'"kind":"drill"'),
                         capture_output=True)
    assert bad.returncode != 0
    done = _cli("evidence", "verify", "--stack", stack, "--allowed-signers", str(signers), "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["ok"], done.stdout + done.stderr[-2000:]


def _copy(kept: dict, tmp_path: Path) -> tuple[Path, dict]:
    """The chain and the key's heads, copied: (the copy's records folder, the environment that reads it)."""
    home, key = tmp_path / "home", tmp_path / "key" / keeper.key_path().name
    shutil.copytree(keeper.records_store().root, home / "evidence")
    key.parent.mkdir()
    for suffix in (".pub", ".heads"):
        source = keeper.key_path().with_name(keeper.key_path().name + suffix)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, key.with_name(key.name + suffix))
    return home / "evidence" / kept["stack"] / "records", {"TRADESTACK_HOME": str(home), keeper.KEY_ENV: str(key)}


def _problems(kept: dict, env: dict) -> list[str]:
    done = _cli("evidence", "verify", "--stack", kept["stack"], "--json", env=env)
    assert done.returncode == 1, done.stdout + done.stderr[-2000:]
    return json.loads(done.stdout)["problems"]


def test_a_changed_byte_a_removed_newest_record_and_two_swapped_records_are_each_named(kept, tmp_path):
    records = chain.records(keeper.records_store(), kept["stack"])
    assert len(records) >= 2, "the chain needs two records to swap"
    folder, env = _copy(kept, tmp_path / "byte")
    report = folder.parent / "objects" / records[0].files[sorted(records[0].files)[0]]
    data = bytearray(report.read_bytes())
    data[len(data) // 2] ^= 0x20
    report.write_bytes(bytes(data))
    problems = _problems(kept, env)  # record 1's, and any later record's that kept the same bytes
    assert problems[0].startswith("record 1: file ") and all(" was changed " in p for p in problems), problems

    folder, env = _copy(kept, tmp_path / "newest")
    newest = records[-1].seq
    for name in (f"{newest:08d}.json", f"{newest:08d}.json.sig"):
        (folder / name).unlink()
    assert _problems(kept, env) == [f"record {newest} (the newest, as the head says) is missing"]

    folder, env = _copy(kept, tmp_path / "swapped")
    for suffix in ("json", "json.sig"):
        first, second = folder / f"00000001.{suffix}", folder / f"00000002.{suffix}"
        data1 = first.read_bytes()
        first.write_bytes(second.read_bytes())
        second.write_bytes(data1)
    problems = _problems(kept, env)
    assert any(p.startswith("record 1: holds record 2") for p in problems), problems
    assert any(p.startswith("record 2: holds record 1") for p in problems), problems


def test_the_bcdr_report_of_the_session_has_every_section_and_record_in_its_pdf(kept, tmp_path):
    """`evidence report` over today's records of the session lab (its catalogue drills and audits): JSON, HTML
    and Chromium's PDF, whose text (pdftotext) holds every section's heading and every record's digest; page 1 is
    kept as a PNG under reports/ for whoever reads the run."""
    from datetime import date

    from tradestack.evidence import report

    stack = kept["stack"]
    done = _cli("evidence", "report", "--stack", stack, "--since", date.today().isoformat(), "--out",
                str(tmp_path / "bcdr"), "--json")
    assert done.stdout.strip().startswith("{"), done.stderr[-3000:]
    result = json.loads(done.stdout)
    doc = result["report"]
    assert done.returncode == (0 if doc["ok"] else 1), done.stderr[-2000:]
    assert doc["drills"], "no drill run of today in the chain: test_drills.py runs before this module in make test"
    assert doc["audit"] is not None and doc["verification"]["ok"], doc["verification"]
    assert {f["service"] for f in doc["functions"]} == {"gateway", "router", "orderdb"}
    records = chain.records(keeper.records_store(), stack)
    assert [r["seq"] for r in doc["records"]] == [r.seq for r in records if r.created[:10] >= date.today().isoformat()]
    text = subprocess.run(["pdftotext", "-layout", result["files"]["pdf"], "-"], capture_output=True, text=True,
                          timeout=60, check=True).stdout
    for heading in report.HEADINGS.values():
        assert heading in text, heading
    for record in doc["records"]:
        assert record["digest"] in text, record
    print(f"\nBC/DR report: {'PASS' if doc['ok'] else 'FAIL'}; functions "
          f"{[(f['service'], f['worst_recovery_s'], f['ok']) for f in doc['functions']]}; "
          f"{len(doc['deficiencies'])} deficiencies, {len(doc['records'])} records")
    reports = Path(__file__).resolve().parents[2] / "reports"
    reports.mkdir(exist_ok=True)
    subprocess.run(["pdftoppm", "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile", result["files"]["pdf"],
                    str(reports / "evidence-report-page1")], check=True, timeout=60)
    assert (reports / "evidence-report-page1.png").stat().st_size > 10_000
