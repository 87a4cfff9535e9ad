"""Container images built locally from files, as OCI archives: no registry is needed or reached.

An image is a list of files (host path -> path in the image) laid into one layer. The archive is
reproducible: entries sorted, owner root, mtime 0 (or the files' own, when asked), so the same files give the same
digest on every machine and the cluster can refer to the image by that digest (pinned, as the audit asks).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclass(frozen=True)
class ImageSpec:
    """What goes into an image: its name, files (image path -> host path), entrypoint and user."""

    name: str                          # e.g. "tradestack.local/pause:3.10" (never pulled: imported)
    files: dict[str, Path]
    entrypoint: tuple[str, ...]
    user: str = "65534:65534"          # nobody: no container of ours runs as root
    env: tuple[str, ...] = ("PATH=/usr/local/bin:/usr/bin:/bin",)
    directories: tuple[str, ...] = field(default=("tmp",))
    keep_mtimes: bool = False          # True: files keep their modification times (cached bytecode stays valid)


@dataclass(frozen=True)
class BuiltImage:
    name: str
    digest: str                        # sha256:... of the manifest: what `name@digest` pins
    archive: Path

    @property
    def pinned(self) -> str:
        return f"{self.name.rsplit(':', 1)[0]}@{self.digest}"


def _layer(spec: ImageSpec) -> tuple[bytes, str]:
    """The layer as gzip bytes, and the digest of its uncompressed tar (the config's diff id)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        parents: set[str] = set(spec.directories)
        for target in spec.files:
            parents.update(str(p) for p in PurePosixPath(target.lstrip("/")).parents if str(p) != ".")
        for directory in sorted(parents):
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755, 0
            tar.addfile(info)
        for target, source in sorted(spec.files.items()):
            data = Path(source).read_bytes()
            info = tarfile.TarInfo(target.lstrip("/"))
            stat = Path(source).stat()
            info.size, info.mtime = len(data), int(stat.st_mtime) if spec.keep_mtimes else 0
            info.mode = 0o755 if stat.st_mode & 0o111 else 0o644
            tar.addfile(info, io.BytesIO(data))
    uncompressed = raw.getvalue()
    return gzip.compress(uncompressed, compresslevel=6, mtime=0), "sha256:" + hashlib.sha256(uncompressed).hexdigest()


def _blob(tar: tarfile.TarFile, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size, info.mtime = len(data), 0
    tar.addfile(info, io.BytesIO(data))
    return f"sha256:{digest}"


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def build(spec: ImageSpec, out_dir: Path) -> BuiltImage:
    """Write `spec` as an OCI archive under out_dir (importable with `ctr images import`)."""
    layer, diff_id = _layer(spec)
    config = {"architecture": "amd64", "os": "linux",
              "config": {"Entrypoint": list(spec.entrypoint), "User": spec.user, "Env": list(spec.env)},
              "rootfs": {"type": "layers", "diff_ids": [diff_id]}}
    config_bytes = _json(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = out_dir / (spec.name.replace("/", "_").replace(":", "_") + ".oci.tar")
    partial = archive.with_suffix(".partial")
    with tarfile.open(partial, mode="w", format=tarfile.PAX_FORMAT) as tar:
        layer_digest = _blob(tar, layer)
        config_digest = _blob(tar, config_bytes)
        manifest = _json({"schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
                          "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest,
                                     "size": len(config_bytes)},
                          "layers": [{"mediaType": MEDIA_LAYER, "digest": layer_digest, "size": len(layer)}]})
        manifest_digest = _blob(tar, manifest)
        index = _json({"schemaVersion": 2, "manifests": [
            {"mediaType": MEDIA_MANIFEST, "digest": manifest_digest, "size": len(manifest),
             "annotations": {"io.containerd.image.name": spec.name,
                             "org.opencontainers.image.ref.name": spec.name.rsplit(":", 1)[1]}}]})
        for name, data in (("oci-layout", _json({"imageLayoutVersion": "1.0.0"})), ("index.json", index)):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            tar.addfile(info, io.BytesIO(data))
    partial.replace(archive)
    return BuiltImage(spec.name, manifest_digest, archive)
