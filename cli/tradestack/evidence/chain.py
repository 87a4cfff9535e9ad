"""Evidence records: each drill report, audit report or capacity verify result kept as a signed record of its
files' SHA-256, chained to the record before it (one chain per stack), with copies of the files beside it.

In a store (`store.py`), per stack:
    STACK/records/00000001.json      the record: canonical JSON (sorted keys, no spaces)
    STACK/records/00000001.json.sig  its SSHSIG signature (namespace `tradestack-evidence`)
    STACK/objects/SHA256             each file's bytes, named by their digest
and in the anchor store, which the signer keeps out of the state directory's writers' reach, STACK.head (+ .sig):
the newest record's number and digest, so removing the newest record is found too.

`verify` names every record that was edited, removed, inserted, reordered or re-signed by another key, and every
file whose bytes changed or went missing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import sshsig
from .store import Store

NAMESPACE = "tradestack-evidence"
FORMAT = 1
Kind = Literal["drill", "audit", "capacity"]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int = FORMAT
    stack: str
    seq: int = Field(ge=1)
    kind: Kind
    subject: str = Field(description="what the record is of: a drill run's id, an audit's or a verify's folder")
    created: str
    tool_version: str
    operator: str
    signer: str = Field(description="the signing key's SHA256 fingerprint")
    previous: str | None = Field(description="SHA-256 of the record before it in the stack's chain; none for the first")
    files: dict[str, str] = Field(description="each file's name and SHA-256")

    def canonical(self) -> bytes:
        return json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":")).encode()


class Head(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stack: str
    seq: int
    digest: str

    def canonical(self) -> bytes:
        return json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":")).encode()


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_name(stack: str, seq: int) -> str:
    return f"{stack}/records/{seq:08d}.json"


def _seqs(store: Store, stack: str) -> dict[int, str]:
    """Record numbers by name, from the names alone (a name that is not a record number is ignored)."""
    found = {}
    for name in store.names(f"{stack}/records"):
        stem = Path(name).name.removesuffix(".json")
        if name.endswith(".json") and stem.isdigit():
            found[int(stem)] = name
    return found


def _head(anchor: Store, stack: str, keys: Mapping[str, Ed25519PublicKey]) -> tuple[Head | None, str | None]:
    data, sig = anchor.get(f"{stack}.head"), anchor.get(f"{stack}.head.sig")
    if data is None:
        return None, None
    signer = sshsig.signer_of((sig or b"").decode(errors="replace"), data, NAMESPACE)
    if signer is None or not _allowed(signer, keys):
        return None, f"the chain's head in {anchor.describe()} is not signed by an allowed signer"
    try:
        return Head.model_validate_json(data), None
    except ValidationError:
        return None, f"the chain's head in {anchor.describe()} is unreadable"


def _allowed(key: Ed25519PublicKey, keys: Mapping[str, Ed25519PublicKey]) -> bool:
    return any(sshsig.public_blob(key) == sshsig.public_blob(k) for k in keys.values())


def append(store: Store, anchor: Store, *, stack: str, kind: Kind, subject: str, files: Mapping[str, Path],
           key: Ed25519PrivateKey, operator: str, tool_version: str, now: datetime | None = None) -> Record:
    """A new record of `files` at the end of the stack's chain: the files' bytes first, then the record and its
    signature, then the head (a record whose head was not moved on is still found by verify, as an extra)."""
    seqs = _seqs(store, stack)
    last = max(seqs, default=0)
    previous = None
    if last:
        data = store.get(seqs[last])
        previous = digest(data) if data is not None else None
    sums = {}
    for name, path in sorted(files.items()):
        content = path.read_bytes()
        sums[name] = digest(content)
        store.put(f"{stack}/objects/{sums[name]}", content)
    record = Record(stack=stack, seq=last + 1, kind=kind, subject=subject,
                    created=(now or datetime.now(timezone.utc)).isoformat(timespec="seconds"),
                    tool_version=tool_version, operator=operator, signer=sshsig.fingerprint(key.public_key()),
                    previous=previous, files=sums)
    data = record.canonical()
    store.put(record_name(stack, record.seq), data)
    store.put(record_name(stack, record.seq) + ".sig", sshsig.sign(key, data, NAMESPACE).encode())
    head = Head(stack=stack, seq=record.seq, digest=digest(data)).canonical()
    anchor.put(f"{stack}.head", head, replace=True)
    anchor.put(f"{stack}.head.sig", sshsig.sign(key, head, NAMESPACE).encode(), replace=True)
    return record


def records(store: Store, stack: str) -> list[Record]:
    """The stack's readable records, oldest first (unchecked: `verify` judges them)."""
    out = []
    for _, name in sorted(_seqs(store, stack).items()):
        try:
            out.append(Record.model_validate_json(store.get(name) or b""))
        except ValidationError:
            continue
    return out


def verify(store: Store, anchor: Store, stack: str, keys: Mapping[str, Ed25519PublicKey]) -> tuple[int, list[str]]:
    """(records checked, problems): each problem names the record (and file) it is about. No records at all is a
    problem too: nothing was verified."""
    problems: list[str] = []
    seqs = _seqs(store, stack)
    # a store that keeps every version (Object Lock) reads each record's first one and says what was tried since
    problems += store.tampering(f"{stack}/")
    head, head_problem = _head(anchor, stack, keys)
    if head_problem:
        problems.append(head_problem)
    if not seqs:
        return 0, problems + [f"no evidence records for stack {stack} in {store.describe()}: nothing to verify"]
    previous: tuple[int, str] | None = None  # the last record read: its number and digest
    for seq in range(1, max(seqs) + 1):
        if seq not in seqs:
            problems.append(f"record {seq} is missing (removed from the chain)")
            previous = None
            continue
        name = seqs[seq]
        data = store.get(name) or b""
        sig = (store.get(name + ".sig") or b"").decode(errors="replace")
        signer = sshsig.signer_of(sig, data, NAMESPACE)
        if signer is None or not _allowed(signer, keys):
            problems.append(f"record {seq}: its signature does not verify with an allowed signer's key "
                            "(the record was changed, or signed by someone else)")
        try:
            record = Record.model_validate_json(data)
        except ValidationError:
            problems.append(f"record {seq}: unreadable")
            previous = (seq, digest(data))
            continue
        if record.seq != seq or record.stack != stack:
            problems.append(f"record {seq}: holds record {record.seq} of stack {record.stack} (records moved or "
                            "swapped)")
        if seq == 1 and record.previous is not None:
            problems.append("record 1: names a record before it (the chain's start was removed)")
        elif previous is not None and record.previous != previous[1]:
            problems.append(f"record {seq}: does not follow record {previous[0]} (inserted, reordered or replaced)")
        for file, expected in sorted(record.files.items()):
            content = store.get(f"{stack}/objects/{expected}")
            if content is None:
                problems.append(f"record {seq}: file {file} is missing")
            elif digest(content) != expected:
                problems.append(f"record {seq}: file {file} was changed (SHA-256 {digest(content)[:16]}..., "
                                f"recorded {expected[:16]}...)")
        previous = (seq, digest(data))
    newest = max(seqs)
    if head is None and not head_problem:
        problems.append(f"no head for stack {stack} in {anchor.describe()}: the newest record cannot be checked")
    elif head is not None:
        if head.seq > newest:
            problems.append(f"record {head.seq} (the newest, as the head says) is missing: records "
                            f"{newest + 1}-{head.seq} were removed" if head.seq > newest + 1 else
                            f"record {head.seq} (the newest, as the head says) is missing")
        elif head.seq < newest:
            problems.append(f"records {head.seq + 1}-{newest} were added after the head (not by an append)")
        elif previous is not None and previous[1] != head.digest:
            problems.append(f"record {newest}: is not the record the head names")
    return len(seqs), problems
