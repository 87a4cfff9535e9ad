"""Evidence as a stack's commands keep it: records in the state directory's store, signed with the operator's key,
whose file (and the chains' heads beside it) live outside the state directory, in the operator's configuration.

    $TRADESTACK_EVIDENCE_KEY, else $XDG_CONFIG_HOME/tradestack/evidence_ed25519 (else ~/.config/...)
    the key's heads: KEY.heads/STACK.head (+ .sig)
    the records: STATE/evidence/STACK/ (chain.py)

or, for a stack told so (`evidence store s3://BUCKET[/PREFIX]`, kept in STATE/evidence/.STACK.store.json; for
every other stack $TRADESTACK_EVIDENCE_STORE, $TRADESTACK_EVIDENCE_S3_ENDPOINT, $TRADESTACK_EVIDENCE_RETENTION),
records and heads as object versions locked in compliance mode for the stack's retention (default 5y; say 30s,
90d or 7y): PREFIX/STACK/... and PREFIX/heads/STACK.head (s3store.py).

The key is made on first use (an OpenSSH Ed25519 key without passphrase, readable by its owner alone, with its
.pub); an auditor verifies with that .pub in an allowed-signers file, by this tool or by `ssh-keygen -Y verify`.
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .. import __version__
from ..errors import InputError
from ..paths import state_dir
from . import chain, sshsig
from .store import DirectoryStore, Store

if TYPE_CHECKING:
    from .s3store import ObjectLockStore

KEY_ENV = "TRADESTACK_EVIDENCE_KEY"
STORE_ENV, ENDPOINT_ENV, RETENTION_ENV = ("TRADESTACK_EVIDENCE_STORE", "TRADESTACK_EVIDENCE_S3_ENDPOINT",
                                          "TRADESTACK_EVIDENCE_RETENTION")


def key_path() -> Path:
    if os.environ.get(KEY_ENV):
        return Path(os.environ[KEY_ENV]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME")
    return (Path(base) if base else Path.home() / ".config") / "tradestack" / "evidence_ed25519"


def retention(text: str, what: str = RETENTION_ENV) -> timedelta:
    """A retention as people write it: 30s, 15m, 12h, 90d, 5y (a year of 365 days)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "y": 365 * 86400}
    number, unit = text.strip()[:-1], text.strip()[-1:].lower()
    if unit not in units or not number.isdigit() or int(number) == 0:
        raise InputError(f"{what}={text!r}: say a positive whole number and a unit (30s, 90d, 5y)")
    return timedelta(seconds=int(number) * units[unit])


def _setting_path(stack: str) -> Path:
    return state_dir() / "evidence" / f".{stack}.store.json"


def store_setting(stack: str | None) -> dict[str, str] | None:
    """Where a stack keeps its evidence if it was told (`evidence store`), else the environment's choice for every
    stack; None: the local directory. Keys: url, endpoint, retention."""
    if stack is not None:
        try:
            found = json.loads(_setting_path(stack).read_text())
            if isinstance(found, dict) and found.get("url"):
                return {k: str(v) for k, v in found.items() if v}
        except (OSError, ValueError):
            pass
    if os.environ.get(STORE_ENV):
        return {k: v for k, v in (("url", os.environ[STORE_ENV]), ("endpoint", os.environ.get(ENDPOINT_ENV, "")),
                                  ("retention", os.environ.get(RETENTION_ENV, ""))) if v}
    return None


def _object_lock(setting: dict[str, str] | None, moving: bool) -> ObjectLockStore | None:
    if not setting:
        return None
    from .s3store import DEFAULT_RETENTION, Location, ObjectLockStore

    where = Location.parse(setting["url"], setting.get("endpoint"))
    kept = retention(setting["retention"]) if setting.get("retention") else DEFAULT_RETENTION
    if moving:
        where = Location(where.bucket, f"{where.prefix}/heads".lstrip("/"), where.endpoint)
    return ObjectLockStore(where, kept, moving=moving)


def records_store(stack: str | None = None) -> Store:
    """Where `stack`'s records are kept (without a stack: the environment's store, else the local directory)."""
    return _object_lock(store_setting(stack), moving=False) or DirectoryStore(state_dir() / "evidence")


def heads_store(key: Path | None = None, stack: str | None = None) -> Store:
    key = key or key_path()
    return _object_lock(store_setting(stack), moving=True) or DirectoryStore(key.with_name(key.name + ".heads"))


def use_store(stack: str, url: str | None, endpoint: str | None = None, retention_text: str | None = None,
              check: bool = True) -> Store:
    """Keep `stack`'s evidence from now on in the S3 bucket at `url` (None: the local directory again). The
    bucket must hold Object Lock (a bucket without it would let records be deleted): checked unless `check` is
    off. Records kept before stay where they are."""
    path = _setting_path(stack)
    if url is None:
        path.unlink(missing_ok=True)
        return records_store(stack)
    setting = {"url": url, "endpoint": endpoint or "", "retention": retention_text or ""}
    if retention_text:
        retention(retention_text, "--retention")
    store = _object_lock({k: v for k, v in setting.items() if v}, moving=False)
    if check and store is not None:
        store.require_object_lock()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(setting, sort_keys=True) + "\n")
    return store


def operator() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def keep(stack: str, kind: chain.Kind, subject: str, files: Mapping[str, Path]) -> chain.Record:
    """Append a record of `files` to the stack's chain, signed with the operator's key (made if there is none)."""
    path = key_path()
    store = records_store(stack)
    locks = state_dir() / "evidence"
    locks.mkdir(parents=True, exist_ok=True)
    # one append at a time per stack: a drill and an audit ending together must not both take the next number
    with open(locks / f".{stack}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        key = sshsig.load_private_key(path) if path.exists() else sshsig.new_private_key(path)
        return chain.append(store, heads_store(path, stack), stack=stack, kind=kind, subject=subject, files=files,
                            key=key, operator=operator(), tool_version=__version__)


def allowed_keys(signers: Path | None) -> dict[str, Ed25519PublicKey]:
    """The keys an allowed-signers file lets sign evidence; without one, the operator's own key's .pub."""
    if signers is None:
        pub = sshsig.public_path(key_path())
        if not pub.exists():
            raise InputError(f"no evidence key's public half at {pub}: give --allowed-signers, or keep a record first")
        text, source = f"{operator()} {pub.read_text()}", pub
    else:
        try:
            text, source = signers.read_text(), signers
        except OSError as exc:
            raise InputError(f"cannot read the allowed-signers file: {exc.strerror}", source=signers) from None
    keys = sshsig.allowed_signers(text, chain.NAMESPACE)
    if not keys:
        raise InputError(f"no Ed25519 key in it may sign namespace {chain.NAMESPACE}", source=source)
    return keys


def verify(stack: str, signers: Path | None = None, exported: Path | None = None) -> tuple[int, list[str]]:
    """The stack's chain as kept here, or as `export` wrote it to `exported` (whose allowed_signers is the
    default there)."""
    if exported is None:
        return chain.verify(records_store(stack), heads_store(stack=stack), stack, allowed_keys(signers))
    if not (exported / stack).is_dir():
        raise InputError(f"no exported evidence of stack {stack} in {exported}")
    given = signers or (exported / ALLOWED_SIGNERS)
    return chain.verify(DirectoryStore(exported), DirectoryStore(exported / "heads"), stack, allowed_keys(given))


ALLOWED_SIGNERS = "allowed_signers"


def export(stack: str, to: Path) -> int:
    """The stack's records, the files they hold, the chain's head and an allowed-signers file of the operator's key,
    copied to `to` as the store lays them out (`evidence verify --from` and `ssh-keygen -Y verify` read them
    there). Returns the number of records."""
    source, target = records_store(stack), DirectoryStore(to)
    names = source.names(stack)
    if not any(n.endswith(".json") for n in names):
        raise InputError(f"stack {stack} has no evidence records to export in {source.describe()}")
    for name in names:
        target.put(name, source.get(name) or b"")
    heads = DirectoryStore(to / "heads")
    for name in (f"{stack}.head", f"{stack}.head.sig"):
        data = heads_store(stack=stack).get(name)
        if data is not None:
            heads.put(name, data, replace=True)
    pub = sshsig.public_path(key_path())
    if pub.exists():
        line = f'{operator()} namespaces="{chain.NAMESPACE}" {pub.read_text().strip()}\n'
        target.put(ALLOWED_SIGNERS, line.encode(), replace=True)
    return len(chain.records(source, stack))


def report(stack: str, topology: Any, since: datetime, until: datetime, out: Path,
           signers: Path | None = None) -> tuple[dict[str, Any], dict[str, Path]]:
    """The BC/DR test report of the stack's records over [since, until] in `out`: report.json, report.html and
    (Chromium's print of the page) report.pdf. Returns the document and the files written."""
    from ..adapters import browser
    from . import report as bcdr

    if since > until:
        raise InputError(f"--since {since.isoformat()} is after --until {until.isoformat()}")
    doc = bcdr.build(records_store(stack), heads_store(stack=stack), stack, topology, allowed_keys(signers),
                     since, until)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "report.json", "html": out / "report.html", "pdf": out / "report.pdf"}
    files["json"].write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    files["html"].write_text(bcdr.html(doc))
    browser.print_pdf(files["html"], files["pdf"])
    return doc, files
