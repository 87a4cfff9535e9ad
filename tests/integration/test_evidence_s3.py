"""Evidence on a real S3 server with Object Lock: the Versity S3 gateway (built from its Go module by `make setup`,
infra/toolchain/build-versitygw.sh) serving a directory of this test's own on loopback. A locked version cannot be
deleted nor its retention shortened, an overwrite or a plain delete leaves the original readable by its version
id, and a chain kept there verifies and names what was tried against it. Retentions of seconds here; the store's
default is five years."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tradestack.evidence import chain, sshsig
from tradestack.evidence.s3store import Location, ObjectLockStore
from tradestack.evidence.store import StoreError
from tradestack.refstack.localpg import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
VERSION = "1.8.0"  # infra/toolchain/build-versitygw.sh


def _gateway() -> Path:
    """The gateway's binary, built first if this machine has not got it (make setup builds it)."""
    done = subprocess.run([str(ROOT / "infra/toolchain/build-versitygw.sh")], capture_output=True, text=True,
                          timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "tradestack" / "versitygw" / f"v{VERSION}" / "bin" / "versitygw"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A gateway on a free loopback port, its data and versions in this module's own directories."""
    import boto3

    work = tmp_path_factory.mktemp("s3")
    (work / "data").mkdir()
    (work / "versions").mkdir()
    access, secret, port = f"ts{secrets.token_hex(4)}", secrets.token_hex(16), free_port()
    log = open(work / "gateway.log", "wb")
    server = subprocess.Popen([str(_gateway()), "--port", f"127.0.0.1:{port}", "--access", access, "--secret", secret,
                               "posix", "--versioning-dir", str(work / "versions"), str(work / "data")],
                              stdout=log, stderr=log, start_new_session=True)
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id=access,
                          aws_secret_access_key=secret, region_name="us-east-1")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                client.list_buckets()
                break
            except Exception:
                assert server.poll() is None and time.monotonic() < deadline, (work / "gateway.log").read_text()[-2000:]
                time.sleep(0.2)
        yield {"client": client, "endpoint": f"http://127.0.0.1:{port}", "work": work}
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _bucket(s3) -> str:
    name = f"evidence-{secrets.token_hex(4)}"
    s3["client"].create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def _store(s3, bucket: str, seconds: float = 60, moving: bool = False, prefix: str = "lab") -> ObjectLockStore:
    return ObjectLockStore(Location(bucket, prefix, s3["endpoint"]), timedelta(seconds=seconds), moving=moving,
                           client=s3["client"])


def _refused(call, **kwargs) -> str:
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as refused:
        call(**kwargs)
    return refused.value.response["Error"]["Code"]


def test_a_locked_version_cannot_be_deleted_nor_its_retention_shortened_and_the_original_stays_readable(s3):
    client, bucket = s3["client"], _bucket(s3)
    store = _store(s3, bucket)
    store.put("lab/records/00000001.json", b"the original")
    [version], _ = store.versions("lab/records/00000001.json")
    key = store.key("lab/records/00000001.json")
    retention = client.get_object_retention(Bucket=bucket, Key=key, VersionId=version["VersionId"])["Retention"]
    assert retention["Mode"] == "COMPLIANCE" and retention["RetainUntilDate"] > datetime.now(timezone.utc)

    assert _refused(client.delete_object, Bucket=bucket, Key=key, VersionId=version["VersionId"]) == "AccessDenied"
    shorter = {"Mode": "COMPLIANCE", "RetainUntilDate": datetime.now(timezone.utc) + timedelta(seconds=5)}
    assert _refused(client.put_object_retention, Bucket=bucket, Key=key, VersionId=version["VersionId"],
                    Retention=shorter) == "AccessDenied"
    governance = {"Mode": "GOVERNANCE", "RetainUntilDate": retention["RetainUntilDate"]}
    assert _refused(client.put_object_retention, Bucket=bucket, Key=key, VersionId=version["VersionId"],
                    Retention=governance, BypassGovernanceRetention=True) == "AccessDenied"

    client.put_object(Bucket=bucket, Key=key, Body=b"a rewrite")  # S3 lets anyone add a version ...
    client.delete_object(Bucket=bucket, Key=key)  # ... and a delete marker
    assert store.get("lab/records/00000001.json") == b"the original"
    assert "lab/records/00000001.json" in store.names("lab/records")
    said = store.tampering("lab/")
    assert len(said) == 2 and said[0].startswith("lab/records/00000001.json was overwritten 1 time(s)"), said
    assert "was deleted" in said[1] and version["VersionId"] in said[1], said
    with pytest.raises(StoreError, match="already holds lab/records/00000001.json with other content"):
        store.put("lab/records/00000001.json", b"another")


def test_a_version_whose_retention_ended_may_go_as_s3_says(s3):
    """The lock is a retention, not forever: what the server enforces ends when the stack's retention does (five
    years by default; two seconds here)."""
    client, bucket = s3["client"], _bucket(s3)
    store = _store(s3, bucket, seconds=2)
    store.put("lab/objects/x", b"kept for two seconds")
    [version], _ = store.versions("lab/objects/x")
    time.sleep(3)
    client.delete_object(Bucket=bucket, Key=store.key("lab/objects/x"), VersionId=version["VersionId"])
    assert store.get("lab/objects/x") is None


def test_a_chain_kept_on_object_lock_verifies_and_names_what_was_tried_against_it(s3, tmp_path):
    bucket = _bucket(s3)
    records, heads = _store(s3, bucket, prefix="evidence"), _store(s3, bucket, moving=True, prefix="heads")
    key = sshsig.new_private_key(tmp_path / "key")
    keys = {"auditor": key.public_key()}
    for n in range(3):
        report = tmp_path / f"report{n}.json"
        report.write_text(f'{{"run": {n}}}')
        chain.append(records, heads, stack="lab", kind="drill", subject=f"run {n}", files={"report.json": report},
                     key=key, operator="tester@lab", tool_version="test")
    assert chain.verify(records, heads, "lab", keys) == (3, [])
    assert len(heads.versions("lab.head")[0]) == 3  # every head kept, the newest read

    # whoever holds the bucket's credentials but not the key: rewrite the newest record, delete another
    client = s3["client"]
    client.put_object(Bucket=bucket, Key=records.key(chain.record_name("lab", 3)), Body=b'{"forged": true}')
    client.delete_object(Bucket=bucket, Key=records.key(chain.record_name("lab", 2)))
    count, problems = chain.verify(records, heads, "lab", keys)
    assert count == 3
    assert problems == [f"lab/records/00000002.json was deleted in {records.describe()} (a delete marker): its "
                        f"locked version {records.versions('lab/records/00000002.json')[0][-1]['VersionId']} "
                        "is still read",
                        f"lab/records/00000003.json was overwritten 1 time(s) in {records.describe()}: its first "
                        f"version {records.versions('lab/records/00000003.json')[0][-1]['VersionId']} is the one "
                        "read"], problems


def test_a_stack_told_to_keep_its_evidence_on_s3_keeps_and_verifies_it_there(s3, tmp_path, monkeypatch):
    """`evidence store` refuses a bucket without Object Lock; told a locked bucket, the stack's records go there
    and `evidence verify` reads them back from it."""
    import json
    import sys

    from tradestack.evidence import keeper

    access = s3["client"]._request_signer._credentials  # the gateway's own credentials, as an operator's AWS ones
    env = {"TRADESTACK_HOME": str(tmp_path / "state"), keeper.KEY_ENV: str(tmp_path / "operator" / "key"),
           "AWS_ACCESS_KEY_ID": access.access_key, "AWS_SECRET_ACCESS_KEY": access.secret_key,
           "AWS_DEFAULT_REGION": "us-east-1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    def cli(*args: str) -> tuple[int, dict]:
        done = subprocess.run([sys.executable, "-m", "tradestack", *args, "--json"], capture_output=True, text=True,
                              timeout=120, env={**os.environ, **env})
        return done.returncode, json.loads(done.stdout or "{}")

    plain = f"plain-{secrets.token_hex(4)}"
    s3["client"].create_bucket(Bucket=plain)
    code, refused = cli("evidence", "store", f"s3://{plain}", "--stack", "lab", "--endpoint", s3["endpoint"])
    assert code == 1 and "has no Object Lock" in refused["errors"][0], refused
    locked = _bucket(s3)
    code, told = cli("evidence", "store", f"s3://{locked}/tradestack", "--stack", "lab", "--endpoint", s3["endpoint"],
                     "--retention", "60s")
    assert code == 0 and told["store"] == f"s3://{locked}/tradestack at {s3['endpoint']}", told
    for n in (1, 2):
        report = tmp_path / f"run{n}" / "report.json"
        report.parent.mkdir()
        report.write_text(f'{{"run": {n}}}')
        keeper.keep("lab", "drill", f"run{n}", {"report.json": report})
    keys = s3["client"].list_object_versions(Bucket=locked)["Versions"]
    assert {"tradestack/lab/records/00000002.json", "tradestack/heads/lab.head"} <= {v["Key"] for v in keys}
    assert not (tmp_path / "state" / "evidence" / "lab").exists()  # nothing kept locally
    code, verified = cli("evidence", "verify", "--stack", "lab")
    assert code == 0 and verified == {"ok": True, "stack": "lab", "records": 2, "problems": []}, verified
