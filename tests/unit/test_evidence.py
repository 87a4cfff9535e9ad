"""Evidence records: signatures OpenSSH's own tool accepts, and a chain that names every record edited, removed
(the newest too), inserted, swapped or signed by another key."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tradestack.evidence import chain, sshsig
from tradestack.evidence.store import DirectoryStore, StoreError

pytestmark = pytest.mark.unit

SSH_KEYGEN = shutil.which("ssh-keygen")
needs_ssh_keygen = pytest.mark.skipif(SSH_KEYGEN is None, reason="OpenSSH's ssh-keygen is not installed")


@pytest.fixture
def key(tmp_path: Path) -> tuple[Ed25519PrivateKey, Path]:
    path = tmp_path / "keys" / "evidence"
    return sshsig.new_private_key(path), path


@needs_ssh_keygen
def test_a_signature_verifies_with_ssh_keygen_and_fails_on_one_changed_byte(tmp_path, key):
    private, path = key
    message = b'{"record": 1}'
    (tmp_path / "record.json").write_bytes(message)
    (tmp_path / "record.json.sig").write_text(sshsig.sign(private, message, chain.NAMESPACE))
    signers = tmp_path / "allowed_signers"
    signers.write_text(f'auditor@example namespaces="{chain.NAMESPACE}" {path.with_name("evidence.pub").read_text()}')

    def ssh_verify(data: bytes) -> subprocess.CompletedProcess:
        return subprocess.run([SSH_KEYGEN, "-Y", "verify", "-f", str(signers), "-I", "auditor@example", "-n",
                               chain.NAMESPACE, "-s", str(tmp_path / "record.json.sig")], input=data,
                              capture_output=True)

    done = ssh_verify(message)
    assert done.returncode == 0, done.stderr
    assert b"Good" in done.stdout + done.stderr
    assert ssh_verify(b'{"record": 2}').returncode != 0
    assert sshsig.signer_of(open(tmp_path / "record.json.sig").read(), message, chain.NAMESPACE) is not None
    assert sshsig.signer_of(open(tmp_path / "record.json.sig").read(), message, "another-namespace") is None


@needs_ssh_keygen
def test_a_signature_ssh_keygen_made_verifies_here_and_a_key_it_made_signs(tmp_path):
    keyfile = tmp_path / "id"
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(keyfile)], check=True)
    (tmp_path / "m").write_bytes(b"evidence")
    subprocess.run([SSH_KEYGEN, "-q", "-Y", "sign", "-f", str(keyfile), "-n", chain.NAMESPACE, str(tmp_path / "m")],
                   check=True, capture_output=True)
    signer = sshsig.signer_of((tmp_path / "m.sig").read_text(), b"evidence", chain.NAMESPACE)
    assert signer is not None
    assert sshsig.public_line(signer) == " ".join(keyfile.with_suffix(".pub").read_text().split()[:2])
    assert sshsig.fingerprint(signer) in subprocess.run([SSH_KEYGEN, "-l", "-f", str(keyfile)], capture_output=True,
                                                        text=True).stdout
    assert isinstance(sshsig.load_private_key(keyfile), Ed25519PrivateKey)


def test_the_allowed_signers_file_gives_keys_for_the_namespace_only(key):
    private, path = key
    line = path.with_name("evidence.pub").read_text().strip()
    keys = sshsig.allowed_signers(f"# comment\na@x {line}\nb@x namespaces=\"git\" {line}\n"
                                  f"c@x namespaces=\"git,{chain.NAMESPACE}\" {line}\n", chain.NAMESPACE)
    assert sorted(keys) == ["a@x", "c@x"]


def _chain(tmp_path: Path, key, n: int) -> tuple[DirectoryStore, DirectoryStore, dict]:
    private, path = key
    store, anchor = DirectoryStore(tmp_path / "store"), DirectoryStore(tmp_path / "anchor")
    for i in range(1, n + 1):
        report = tmp_path / "reports" / f"run{i}" / "report.json"
        report.parent.mkdir(parents=True)
        report.write_text(f'{{"run": {i}, "verdict": "pass"}}')
        chain.append(store, anchor, stack="lab", kind="drill", subject=f"run{i}", files={"report.json": report},
                     key=private, operator="sre@host", tool_version="0.1")
    keys = sshsig.allowed_signers(f"sre {path.with_name('evidence.pub').read_text()}", chain.NAMESPACE)
    return store, anchor, keys


def test_an_untouched_chain_verifies_every_record(tmp_path, key):
    store, anchor, keys = _chain(tmp_path, key, 3)
    assert chain.verify(store, anchor, "lab", keys) == (3, [])
    assert [r.previous is None for r in chain.records(store, "lab")] == [True, False, False]


def test_nothing_to_verify_is_a_problem_not_a_pass(tmp_path, key):
    store, anchor, keys = _chain(tmp_path, key, 0)
    count, problems = chain.verify(store, anchor, "lab", keys)
    assert count == 0 and problems and "nothing to verify" in problems[-1]


def test_a_changed_byte_of_a_report_names_its_record_and_file(tmp_path, key):
    store, anchor, keys = _chain(tmp_path, key, 3)
    second = chain.records(store, "lab")[1]
    obj = store.root / "lab" / "objects" / second.files["report.json"]
    data = bytearray(obj.read_bytes())
    data[3] ^= 1
    obj.write_bytes(bytes(data))
    assert chain.verify(store, anchor, "lab", keys)[1] == [
        f"record 2: file report.json was changed (SHA-256 {chain.digest(bytes(data))[:16]}..., "
        f"recorded {second.files['report.json'][:16]}...)"]


@pytest.mark.parametrize("removed", [1, 2, 3])
def test_a_removed_record_is_named_the_newest_too(tmp_path, key, removed):
    store, anchor, keys = _chain(tmp_path, key, 3)
    for suffix in ("", ".sig"):
        (store.root / (chain.record_name("lab", removed) + suffix)).unlink()
    problems = chain.verify(store, anchor, "lab", keys)[1]
    assert problems and all(f"record {removed}" in p for p in problems), problems


def test_two_swapped_records_are_named(tmp_path, key):
    store, anchor, keys = _chain(tmp_path, key, 3)
    two, three = (store.root / chain.record_name("lab", i) for i in (2, 3))
    for suffix in ("", ".sig"):
        a, b = Path(str(two) + suffix), Path(str(three) + suffix)
        data = a.read_bytes()
        a.write_bytes(b.read_bytes())
        b.write_bytes(data)
    problems = chain.verify(store, anchor, "lab", keys)[1]
    assert any(p.startswith("record 2: holds record 3") for p in problems), problems
    assert any(p.startswith("record 3: holds record 2") for p in problems), problems


def test_a_record_rewritten_and_re_signed_by_another_key_is_named(tmp_path, key):
    store, anchor, keys = _chain(tmp_path, key, 2)
    name = chain.record_name("lab", 1)
    forged = chain.Record.model_validate_json(store.get(name) or b"").model_copy(update={"operator": "mallory"})
    other = Ed25519PrivateKey.generate()
    (store.root / name).write_bytes(forged.canonical())
    (store.root / (name + ".sig")).write_text(sshsig.sign(other, forged.canonical(), chain.NAMESPACE))
    problems = chain.verify(store, anchor, "lab", keys)[1]
    assert problems[0].startswith("record 1: its signature does not verify"), problems
    assert any(p.startswith("record 2: does not follow record 1") for p in problems), problems


def test_a_record_name_is_written_once(tmp_path, key):
    store, _, _ = _chain(tmp_path, key, 1)
    name = chain.record_name("lab", 1)
    store.put(name, store.get(name) or b"")  # the same bytes again: nothing to refuse
    with pytest.raises(StoreError, match="written once"):
        store.put(name, b"{}")
    with pytest.raises(StoreError, match="not a name inside"):
        store.put("../outside", b"x")


def test_the_cli_lists_shows_and_verifies_a_stacks_records_and_fails_naming_an_edited_one(tmp_path, monkeypatch):
    """Through `tradestack evidence`, with the operator's key made on first use outside the state directory."""
    import json

    from typer.testing import CliRunner

    from tradestack.cli.app import app
    from tradestack.evidence import keeper

    monkeypatch.setenv("TRADESTACK_HOME", str(tmp_path / "state"))
    monkeypatch.setenv(keeper.KEY_ENV, str(tmp_path / "operator" / "evidence_ed25519"))
    runner = CliRunner()
    nothing = runner.invoke(app, ["evidence", "verify", "--stack", "lab", "--json"])
    assert nothing.exit_code == 2 and "no evidence key" in nothing.stdout  # no key yet: nothing could be signed
    for i in (1, 2):
        report = tmp_path / f"r{i}" / "report.json"
        report.parent.mkdir()
        report.write_text(f'{{"run": {i}}}')
        keeper.keep("lab", "drill", f"run{i}", {"report.json": report})
    assert (tmp_path / "operator" / "evidence_ed25519").stat().st_mode & 0o077 == 0
    assert not (tmp_path / "state" / "evidence" / "lab.head").exists()  # the head is kept with the key
    listed = json.loads(runner.invoke(app, ["evidence", "list", "--stack", "lab", "--json"]).stdout)
    assert [r["subject"] for r in listed["records"]] == ["run1", "run2"]
    shown = runner.invoke(app, ["evidence", "show", "2", "--stack", "lab"])
    assert shown.exit_code == 0 and "subject: run2" in shown.stdout
    assert runner.invoke(app, ["evidence", "show", "3", "--stack", "lab"]).exit_code == 2
    good = runner.invoke(app, ["evidence", "verify", "--stack", "lab", "--json"])
    assert good.exit_code == 0 and json.loads(good.stdout) == {"ok": True, "stack": "lab", "records": 2,
                                                                "problems": []}
    record = tmp_path / "state" / "evidence" / chain.record_name("lab", 1)
    record.write_bytes(record.read_bytes().replace(b'"run1"', b'"run9"'))
    bad = runner.invoke(app, ["evidence", "verify", "--stack", "lab"])
    assert bad.exit_code == 1
    assert "record 1: its signature does not verify" in bad.stderr
    assert "record 2: does not follow record 1" in bad.stderr


def test_an_export_verifies_where_it_was_written_and_names_an_edit_there(tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from tradestack.cli.app import app
    from tradestack.evidence import keeper

    monkeypatch.setenv("TRADESTACK_HOME", str(tmp_path / "state"))
    monkeypatch.setenv(keeper.KEY_ENV, str(tmp_path / "operator" / "evidence_ed25519"))
    runner = CliRunner()
    assert runner.invoke(app, ["evidence", "export", "--stack", "lab", "--to", str(tmp_path / "x")]).exit_code == 2
    report = tmp_path / "report.json"
    for i in (1, 2):
        report.write_text(f'{{"run": {i}}}')
        keeper.keep("lab", "audit", f"a{i}", {"report.json": report})
    done = runner.invoke(app, ["evidence", "export", "--stack", "lab", "--to", str(tmp_path / "out"), "--json"])
    assert done.exit_code == 0 and json.loads(done.stdout)["records"] == 2, done.output
    assert (tmp_path / "out" / "allowed_signers").read_text().startswith(keeper.operator() + " namespaces=")
    good = runner.invoke(app, ["evidence", "verify", "--stack", "lab", "--from", str(tmp_path / "out"), "--json"])
    assert good.exit_code == 0 and json.loads(good.stdout)["records"] == 2, good.output
    (tmp_path / "out" / "lab" / "records" / "00000002.json").unlink()
    bad = runner.invoke(app, ["evidence", "verify", "--stack", "lab", "--from", str(tmp_path / "out"), "--json"])
    assert bad.exit_code == 1 and json.loads(bad.stdout)["problems"] == [
        "record 2 (the newest, as the head says) is missing"]


def test_a_chain_without_its_head_or_with_a_head_another_key_signed_fails(tmp_path, key):
    """The head is what catches a removed newest record: a chain whose head is gone, or forged, is not verified."""
    store, anchor, keys = _chain(tmp_path, key, 2)
    head, sig = anchor.root / "lab.head", anchor.root / "lab.head.sig"
    forged = sshsig.sign(Ed25519PrivateKey.generate(), head.read_bytes(), chain.NAMESPACE)
    saved = sig.read_text()
    sig.write_text(forged)
    assert chain.verify(store, anchor, "lab", keys)[1] == [
        f"the chain's head in {anchor.describe()} is not signed by an allowed signer"]
    sig.write_text(saved)
    head.unlink()
    assert chain.verify(store, anchor, "lab", keys)[1] == [
        f"no head for stack lab in {anchor.describe()}: the newest record cannot be checked"]


def test_a_retention_is_read_as_people_write_it_and_nonsense_is_refused():
    from datetime import timedelta

    from tradestack.errors import InputError
    from tradestack.evidence.keeper import retention

    assert retention("30s") == timedelta(seconds=30)
    assert retention("90d") == timedelta(days=90)
    assert retention("5y") == timedelta(days=5 * 365)
    for bad in ("", "5", "y", "0d", "-3d", "1.5y", "3w"):
        with pytest.raises(InputError, match="say a positive whole number and a unit"):
            retention(bad)


def test_an_s3_evidence_store_keeps_records_under_its_prefix_and_heads_beside_them(monkeypatch):
    from datetime import timedelta

    from tradestack.evidence import keeper
    from tradestack.evidence.s3store import DEFAULT_RETENTION, ObjectLockStore

    monkeypatch.setenv(keeper.STORE_ENV, "s3://broker-evidence/tradestack")
    monkeypatch.setenv(keeper.ENDPOINT_ENV, "http://127.0.0.1:7070")
    records, heads = keeper.records_store(), keeper.heads_store()
    assert isinstance(records, ObjectLockStore) and isinstance(heads, ObjectLockStore)
    assert (records.location.bucket, records.location.prefix) == ("broker-evidence", "tradestack")
    assert records.moving is False
    assert (heads.location.prefix, heads.moving) == ("tradestack/heads", True)
    assert records.key("lab/records/00000001.json") == "tradestack/lab/records/00000001.json"
    assert records.retention == DEFAULT_RETENTION >= timedelta(days=5 * 365)
    assert records.describe() == "s3://broker-evidence/tradestack at http://127.0.0.1:7070"
    monkeypatch.setenv(keeper.RETENTION_ENV, "7y")
    assert keeper.records_store().retention == timedelta(days=7 * 365)
    monkeypatch.setenv(keeper.STORE_ENV, "https://broker-evidence")
    with pytest.raises(Exception, match="not an S3 location"):
        keeper.records_store()


def _drill_report(run: str, drill: str, verdict: str, recovery: float | None, lost: int, rate: float = 48.0,
                  sessions: int = 320, failed: str | None = None) -> dict:
    checks = [{"check": "acknowledged orders lost", "expected": "<= 0", "actual": str(lost), "ok": lost == 0}]
    if failed:
        checks.append({"check": failed, "expected": "<= 0", "actual": "0.2", "ok": False})
    return {"run": run, "drill": drill, "verdict": verdict, "checks": checks, "figures": {"recovery_s": recovery},
            "reconciliation": {"acked_missing": {"count": lost}}, "plan": {"rate": rate, "sessions": sessions}}


def _kept(tmp_path: Path, key, documents: list[tuple[str, str, dict]], when: str = "2026-11-15T10:00:00+00:00"):
    """A chain of the given (kind, file name, document) records, all created at `when`."""
    import json
    from datetime import datetime

    private, path = key
    store, anchor = DirectoryStore(tmp_path / "store"), DirectoryStore(tmp_path / "anchor")
    for n, (kind, name, document) in enumerate(documents):
        file = tmp_path / "files" / str(n) / name
        file.parent.mkdir(parents=True)
        file.write_text(json.dumps(document))
        chain.append(store, anchor, stack="lab", kind=kind, subject=document.get("run", "audit"),  # type: ignore
                     files={name: file}, key=private, operator="sre@host", tool_version="0.1",
                     now=datetime.fromisoformat(when))
    keys = sshsig.allowed_signers(f"sre {path.with_name('evidence.pub').read_text()}", chain.NAMESPACE)
    return store, anchor, keys


def _period():
    from datetime import datetime, timezone

    return datetime(2026, 11, 1, tzinfo=timezone.utc), datetime(2026, 11, 30, tzinfo=timezone.utc)


def test_the_bcdr_report_judges_each_critical_function_by_the_worst_drill_of_the_period(tmp_path, key):
    """lab.yaml's gateway, router and orderdb are critical (RTO 30 s, RPO 0): a crash that took 17.4 s passes them;
    a deficiency found by a failed run stays open until the same drill passes later."""
    from tradestack.evidence import report
    from tradestack.topology import load_topology

    topology = load_topology(Path(__file__).resolve().parents[2] / "infra/topologies/lab.yaml")
    store, anchor, keys = _kept(tmp_path, key, [
        ("drill", "report.json", _drill_report("r1", "db-primary-crash", "pass", 17.4, 0)),
        ("drill", "report.json", _drill_report("r2", "site-partition", "fail", 13.1, 0, failed="client error rate")),
        ("audit", "audit.json", {"ok": False, "headline": "FAIL: EVD-01 (medium)",
                                 "controls": [{"id": "SEC-01", "verdict": "pass"},
                                              {"id": "EVD-01", "verdict": "fail", "severity": "medium",
                                               "title": "drill evidence"}]}),
    ])
    doc = report.build(store, anchor, "lab", topology, keys, *_period())
    assert [(f["service"], f["rto_s"], f["worst_recovery_s"], f["worst_recovery_run"], f["ok"])
            for f in doc["functions"]] == [("gateway", 30, 17.4, "r1", True), ("router", 30, 17.4, "r1", True),
                                            ("orderdb", 30, 17.4, "r1", True)]
    assert [(d["run"], d["check"], d["status"]) for d in doc["deficiencies"]] == [
        ("r2", "client error rate", "open")]
    assert doc["audit"]["headline"] == "FAIL: EVD-01 (medium)" and [c["id"] for c in doc["audit"]["failing"]] == [
        "EVD-01"]
    assert [r["signature"] for r in doc["records"]] == ["verified"] * 3 and doc["verification"]["ok"]
    assert doc["ok"] is False  # the open deficiency
    page = report.html(doc)
    for heading in report.HEADINGS.values():
        assert f"<h2>{heading}</h2>" in page
    assert "Reg SCI 242.1004" in page and "RTS 2024/1774 Art. 25" in page


def test_a_later_passing_run_closes_a_deficiency_and_an_objective_missed_or_a_load_below_peak_fails(tmp_path, key):
    from tradestack.evidence import report
    from tradestack.topology import load_topology

    topology = load_topology(Path(__file__).resolve().parents[2] / "infra/topologies/lab.yaml")
    store, anchor, keys = _kept(tmp_path, key, [
        ("drill", "report.json", _drill_report("r1", "site-partition", "fail", 13.1, 0, failed="client error rate")),
        ("drill", "report.json", _drill_report("r2", "site-partition", "pass", 12.9, 0)),
    ])
    doc = report.build(store, anchor, "lab", topology, keys, *_period())
    assert [(d["run"], d["status"], d["closed_by"]) for d in doc["deficiencies"]] == [("r1", "closed", "r2")]
    assert doc["ok"] is True

    slow = tmp_path / "slow"
    slow.mkdir()
    store, anchor, keys = _kept(slow, key, [
        ("drill", "report.json", _drill_report("s1", "site-power-loss", "pass", 41.0, 2, rate=4.8, sessions=32)),
    ])
    doc = report.build(store, anchor, "lab", topology, keys, *_period())
    [gateway, *_] = doc["functions"]
    assert gateway["why"] == ["recovery 41 s > RTO 30 s (s1)", "2 acknowledged orders lost > RPO 0 (s1)"]
    assert [x["at_peak"] for x in doc["load"]] == [False] and doc["ok"] is False


def test_a_period_without_drills_judges_nothing_and_fails(tmp_path, key):
    from datetime import datetime, timezone

    from tradestack.evidence import report
    from tradestack.topology import load_topology

    topology = load_topology(Path(__file__).resolve().parents[2] / "infra/topologies/lab.yaml")
    store, anchor, keys = _kept(tmp_path, key, [
        ("drill", "report.json", _drill_report("r1", "db-primary-crash", "pass", 17.4, 0)),
    ])
    doc = report.build(store, anchor, "lab", topology, keys, datetime(2026, 12, 1, tzinfo=timezone.utc),
                       datetime(2026, 12, 31, tzinfo=timezone.utc))
    assert doc["drills"] == [] and doc["ok"] is False
    assert doc["functions"][0]["why"] == ["no drill of the period measured it: nothing judged"]


def test_the_report_command_refuses_a_date_it_cannot_read_and_a_period_that_ends_before_it_starts(tmp_path,
                                                                                                   monkeypatch):
    from typer.testing import CliRunner

    from tradestack.cli.app import app
    from tradestack.evidence import keeper

    monkeypatch.setenv("TRADESTACK_HOME", str(tmp_path / "state"))
    monkeypatch.setenv(keeper.KEY_ENV, str(tmp_path / "operator" / "evidence_ed25519"))
    lab = str(Path(__file__).resolve().parents[2] / "infra/topologies/lab.yaml")
    runner = CliRunner()
    bad = runner.invoke(app, ["evidence", "report", "--stack", "lab", "--since", "last quarter", "--topology", lab,
                              "--out", str(tmp_path / "r"), "--json"])
    assert bad.exit_code == 2 and "--since 'last quarter': say a date (2026-10-01)" in bad.stdout, bad.stdout
    backwards = runner.invoke(app, ["evidence", "report", "--stack", "lab", "--since", "2026-12-01", "--until",
                                    "2026-11-01", "--topology", lab, "--out", str(tmp_path / "r"), "--json"])
    assert backwards.exit_code == 2 and "is after --until" in backwards.stdout, backwards.stdout
    assert not (tmp_path / "r").exists()


def test_a_stacks_own_store_comes_before_the_environments_and_local_takes_it_back(tmp_path, monkeypatch):
    from tradestack.evidence import keeper
    from tradestack.evidence.s3store import ObjectLockStore

    monkeypatch.setenv("TRADESTACK_HOME", str(tmp_path / "state"))
    monkeypatch.setenv(keeper.STORE_ENV, "s3://everyones/evidence")
    keeper.use_store("lab", "s3://labs-own/ev", "http://127.0.0.1:7070", "7y", check=False)
    own, other = keeper.records_store("lab"), keeper.records_store("staging")
    assert isinstance(own, ObjectLockStore) and own.describe() == "s3://labs-own/ev at http://127.0.0.1:7070"
    assert own.retention.days == 7 * 365
    assert keeper.heads_store(stack="lab").describe().startswith("s3://labs-own/ev/heads")
    assert other.describe() == "s3://everyones/evidence"
    keeper.use_store("lab", None)
    assert keeper.records_store("lab").describe() == "s3://everyones/evidence"
    monkeypatch.delenv(keeper.STORE_ENV)
    assert keeper.records_store("lab").describe() == f"directory {tmp_path / 'state' / 'evidence'}"
    with pytest.raises(Exception, match=r"--retention='forever': say a positive whole number"):
        keeper.use_store("lab", "s3://labs-own/ev", retention_text="forever", check=False)
    assert keeper.store_setting("lab") is None  # refused: nothing written


def test_a_function_whose_drill_never_recovered_or_measured_nothing_fails(tmp_path, key):
    """What the functions are judged on can be missing: a failed run with no recovery (clients never served
    again) fails them naming the run; runs with neither a recovery nor a reconciliation judged nothing."""
    from tradestack.evidence import report
    from tradestack.topology import load_topology

    topology = load_topology(Path(__file__).resolve().parents[2] / "infra/topologies/lab.yaml")
    never = _drill_report("n1", "db-primary-crash", "fail", None, 0)
    store, anchor, keys = _kept(tmp_path, key, [("drill", "report.json", never)])
    doc = report.build(store, anchor, "lab", topology, keys, *_period())
    assert [(f["service"], f["ok"], f["why"]) for f in doc["functions"]][0] == (
        "gateway", False, ["never recovered in n1"])
    assert doc["ok"] is False

    blind = tmp_path / "blind"
    blind.mkdir()
    unmeasured = {**_drill_report("b1", "db-primary-crash", "fail", None, 0), "reconciliation": None}
    store, anchor, keys = _kept(blind, key, [("drill", "report.json", unmeasured)])
    doc = report.build(store, anchor, "lab", topology, keys, *_period())
    assert doc["functions"][0]["why"] == ["no drill of the period measured it: nothing judged",
                                          "never recovered in b1"]
    assert doc["ok"] is False
