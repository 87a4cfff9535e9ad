"""Images built from files: reproducible digests, files where they belong, never root."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from tradestack.builds.images import ImageSpec, build

pytestmark = pytest.mark.unit


def _spec(tmp_path: Path, content: bytes = b"#!/bin/sh\necho hi\n") -> ImageSpec:
    tool = tmp_path / "tool"
    tool.write_bytes(content)
    tool.chmod(0o755)
    (tmp_path / "data.txt").write_text("data")
    return ImageSpec("tradestack.local/tool:1", {"usr/bin/tool": tool, "etc/tool/data.txt": tmp_path / "data.txt"},
                     ("/usr/bin/tool",))


def _read(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_the_same_files_give_the_same_digest_and_other_files_another(tmp_path: Path):
    one = build(_spec(tmp_path), tmp_path / "a")
    again = build(_spec(tmp_path), tmp_path / "b")
    assert one.digest == again.digest and one.archive.read_bytes() == again.archive.read_bytes()
    other = build(_spec(tmp_path, b"#!/bin/sh\necho bye\n"), tmp_path / "c")
    assert other.digest != one.digest
    assert one.pinned == f"tradestack.local/tool@{one.digest}"


def test_the_archive_is_an_oci_layout_naming_the_image_with_its_files_in_one_layer(tmp_path: Path):
    image = build(_spec(tmp_path), tmp_path / "out")
    blobs = _read(image.archive)
    index = json.loads(blobs["index.json"])
    [entry] = index["manifests"]
    assert entry["annotations"]["io.containerd.image.name"] == "tradestack.local/tool:1"
    assert entry["digest"] == image.digest
    manifest = json.loads(blobs["blobs/sha256/" + image.digest.split(":")[1]])
    config = json.loads(blobs["blobs/sha256/" + manifest["config"]["digest"].split(":")[1]])
    assert config["config"]["User"] == "65534:65534" and config["config"]["Entrypoint"] == ["/usr/bin/tool"]
    [layer] = manifest["layers"]
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blobs["blobs/sha256/" + layer["digest"].split(":")[1]]))) as t:
        members = {m.name: m for m in t.getmembers()}
    assert members["usr/bin/tool"].mode == 0o755 and members["etc/tool/data.txt"].mode == 0o644
    assert members["tmp"].isdir() and members["usr/bin"].isdir()
    assert all(m.uid == 0 and m.mtime == 0 for m in members.values())


def test_the_image_entry_point_serves_a_component_and_says_what_is_wrong_with_its_config(tmp_path: Path, capsys):
    from tradestack.refstack.__main__ import main

    bad = tmp_path / "venue.json"
    bad.write_text('{"name": "exchange", "port": 70000}')
    assert main(["venue", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "port" in err and str(bad) in err
    with pytest.raises(SystemExit):
        main(["database", "--config", str(bad)])  # not a component: argparse says so


def test_replicas_sharing_one_configuration_are_named_by_instance_and_a_bad_name_is_refused(tmp_path: Path, capsys):
    from tradestack.refstack.__main__ import main
    from tradestack.refstack.config import GatewayConfig
    from tradestack.refstack.service import _named

    config = GatewayConfig(dsn="host=127.0.0.1")
    assert _named(config, "gateway-7d9f8c-x2x7q").instance == "gateway-7d9f8c-x2x7q"
    assert _named(config, None) is config
    good = tmp_path / "gateway.json"
    good.write_text('{"dsn": "host=127.0.0.1"}')
    assert main(["gateway", "--config", str(good), "--instance", "Not_A_Name"]) == 2
    assert "--instance 'Not_A_Name'" in capsys.readouterr().err
