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
