"""Ed25519 signatures in OpenSSH's SSHSIG format (PROTOCOL.sshsig), which auditors check with the standard tool:

    ssh-keygen -Y verify -f allowed_signers -I IDENTITY -n tradestack-evidence -s record.json.sig < record.json

Only the format's encoding is written here; the cryptography is the `cryptography` package's.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..errors import InputError

MAGIC = b"SSHSIG"
VERSION = 1
HASH = "sha512"
KEY_TYPE = b"ssh-ed25519"
BEGIN, END = "-----BEGIN SSH SIGNATURE-----", "-----END SSH SIGNATURE-----"


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _read_string(blob: bytes, at: int) -> tuple[bytes, int]:
    if at + 4 > len(blob):
        raise ValueError("truncated")
    (size,) = struct.unpack(">I", blob[at:at + 4])
    if at + 4 + size > len(blob):
        raise ValueError("truncated")
    return blob[at + 4:at + 4 + size], at + 4 + size


def public_blob(key: Ed25519PublicKey) -> bytes:
    return _string(KEY_TYPE) + _string(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def public_line(key: Ed25519PublicKey) -> str:
    """The key as OpenSSH writes it (`ssh-ed25519 AAAA...`), for an allowed-signers file."""
    return f"{KEY_TYPE.decode()} {base64.b64encode(public_blob(key)).decode()}"


def fingerprint(key: Ed25519PublicKey) -> str:
    """`SHA256:...` as `ssh-keygen -l` prints it."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(public_blob(key)).digest()).decode().rstrip("=")


def _signed_data(message: bytes, namespace: str) -> bytes:
    return MAGIC + _string(namespace.encode()) + _string(b"") + _string(HASH.encode()) \
        + _string(hashlib.sha512(message).digest())


def sign(key: Ed25519PrivateKey, message: bytes, namespace: str) -> str:
    """The armored signature `ssh-keygen -Y sign -n NAMESPACE` would write for `message`."""
    signature = _string(KEY_TYPE) + _string(key.sign(_signed_data(message, namespace)))
    blob = MAGIC + struct.pack(">I", VERSION) + _string(public_blob(key.public_key())) + _string(namespace.encode()) \
        + _string(b"") + _string(HASH.encode()) + _string(signature)
    text = base64.b64encode(blob).decode()
    return "\n".join([BEGIN, *(text[i:i + 70] for i in range(0, len(text), 70)), END]) + "\n"


def signer_of(armored: str, message: bytes, namespace: str) -> Ed25519PublicKey | None:
    """The Ed25519 key whose valid signature of `message` under `namespace` this is; None for anything else (a
    signature of other bytes or another namespace, another key type, a damaged or unparseable signature)."""
    lines = armored.strip().splitlines()
    if len(lines) < 3 or lines[0] != BEGIN or lines[-1] != END:
        return None
    try:
        blob = base64.b64decode("".join(lines[1:-1]), validate=True)
        if blob[:6] != MAGIC or struct.unpack(">I", blob[6:10])[0] != VERSION:
            return None
        at = 10
        key_blob, at = _read_string(blob, at)
        signed_namespace, at = _read_string(blob, at)
        _reserved, at = _read_string(blob, at)
        hash_name, at = _read_string(blob, at)
        signature, at = _read_string(blob, at)
        key_type, rest = _read_string(key_blob, 0)
        raw_key, _ = _read_string(key_blob, rest)
        sig_type, rest = _read_string(signature, 0)
        raw_sig, _ = _read_string(signature, rest)
    except (ValueError, struct.error):
        return None
    if key_type != KEY_TYPE or sig_type != KEY_TYPE or hash_name != HASH.encode() \
            or signed_namespace != namespace.encode():
        return None
    try:
        key = Ed25519PublicKey.from_public_bytes(raw_key)
        key.verify(raw_sig, _signed_data(message, namespace))
    except (ValueError, InvalidSignature):
        return None
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """An unencrypted OpenSSH Ed25519 private key (`ssh-keygen -t ed25519 -N ''`)."""
    try:
        key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise InputError(f"the evidence signing key cannot be read: {exc.strerror}", source=path) from None
    except (ValueError, TypeError) as exc:
        raise InputError(f"not an unencrypted OpenSSH private key: {exc}", source=path) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError("the evidence signing key must be Ed25519 (ssh-keygen -t ed25519)", source=path)
    return key


def public_path(private: Path) -> Path:
    """Where OpenSSH keeps a private key's public half: beside it, with .pub added."""
    return private.with_name(private.name + ".pub")


def new_private_key(path: Path) -> Ed25519PrivateKey:
    """A new key written as `ssh-keygen -t ed25519 -N ''` would, readable by its owner alone, and its .pub."""
    key = Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=False)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                       serialization.NoEncryption()))
    public_path(path).write_text(public_line(key.public_key()) + "\n")
    return key


def allowed_signers(lines: str, namespace: str) -> dict[str, Ed25519PublicKey]:
    """The Ed25519 keys of an allowed-signers file (ssh-keygen(1), ALLOWED SIGNERS) that may sign `namespace`, by
    principal: `principal [namespaces="a,b"] ssh-ed25519 AAAA...`; other lines and key types are skipped."""
    found: dict[str, Ed25519PublicKey] = {}
    for line in lines.splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        principal, rest = fields[0], fields[1:]
        spaces = [f.split("=", 1)[1].strip('"').split(",") for f in rest if f.startswith("namespaces=")]
        if spaces and namespace not in spaces[0]:
            continue
        try:
            at = rest.index(KEY_TYPE.decode())
            blob = base64.b64decode(rest[at + 1])
            key_type, after = _read_string(blob, 0)
            raw, _ = _read_string(blob, after)
            if key_type == KEY_TYPE:
                found[principal] = Ed25519PublicKey.from_public_bytes(raw)
        except (ValueError, IndexError):
            continue
    return found
