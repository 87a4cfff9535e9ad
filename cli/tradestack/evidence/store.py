"""Where evidence is kept: named blobs in a store. A directory is the embedded default; the interface is what an
object store with Object Lock implements too (a name written once, read back, listed by prefix)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Protocol

from ..errors import TradestackError


class StoreError(TradestackError):
    """A store refused or failed a read or write."""


class Store(Protocol):
    """Named blobs. `put` writes a name once: writing other bytes under a name it holds is refused
    (`replace` is for the one name that moves on, a chain's head)."""

    def put(self, name: str, data: bytes, *, replace: bool = False) -> None: ...

    def get(self, name: str) -> bytes | None: ...

    def names(self, prefix: str) -> list[str]: ...

    def tampering(self, prefix: str) -> list[str]:
        """What was tried against names under `prefix` that the store kept apart (a store that keeps every
        version sees an overwrite or a delete; one that keeps only the bytes sees nothing)."""
        ...

    def describe(self) -> str: ...


class DirectoryStore:
    """Blobs as files under a root directory (names are relative paths)."""

    def __init__(self, root: Path):
        self.root = root

    def _path(self, name: str) -> Path:
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root.resolve()) or not name or name.startswith("/"):
            raise StoreError(f"not a name inside the store: {name!r}")
        return path

    def put(self, name: str, data: bytes, *, replace: bool = False) -> None:
        path = self._path(name)
        if path.exists() and not replace:
            if path.read_bytes() == data:
                return
            raise StoreError(f"{self.describe()} already holds {name} with other content: records are written once")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, staging = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(staging, 0o644)
            os.replace(staging, path)
        except BaseException:
            Path(staging).unlink(missing_ok=True)
            raise

    def get(self, name: str) -> bytes | None:
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            return None

    def names(self, prefix: str) -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*")
                      if p.is_file() and not p.name.startswith("."))

    def tampering(self, prefix: str) -> list[str]:
        return []  # a file keeps no history: what changed it shows as a wrong digest or signature instead

    def describe(self) -> str:
        return f"directory {self.root}"
