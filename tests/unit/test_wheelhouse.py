"""The wheelhouse cache keeps the wheelhouses used last, not one per source change for ever."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tradestack.deploy.wheelhouse import prune

pytestmark = pytest.mark.unit


def _wheelhouse(parent: Path, name: str, used: float, complete: bool = True) -> Path:
    d = parent / name
    d.mkdir()
    (d / "dep.whl").write_bytes(b"x")
    if complete:
        (d / ".complete").touch()
        os.utime(d / ".complete", (used, used))
    os.utime(d, (used, used))
    return d


def test_prune_keeps_the_most_recently_used_and_removes_old_half_built_ones(tmp_path: Path):
    now = time.time()
    for i in range(6):
        _wheelhouse(tmp_path, f"w{i}", now - 3600 * i)
    _wheelhouse(tmp_path, "half-old", now - 3 * 86_400, complete=False)
    _wheelhouse(tmp_path, "half-new", now, complete=False)  # being built now, by another run
    removed = prune(tmp_path, keep=4)
    assert sorted(p.name for p in removed) == ["half-old", "w4", "w5"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["half-new", "w0", "w1", "w2", "w3"]


def test_prune_with_fewer_than_kept_removes_nothing(tmp_path: Path):
    _wheelhouse(tmp_path, "only", 1_900_000_000.0)
    assert prune(tmp_path, keep=4) == []
    assert (tmp_path / "only" / "dep.whl").exists()


def test_a_wheelhouse_is_built_once_per_source_and_then_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A second build of the same source reuses the first (its wheel, so its digest: a deploy with nothing
    changed installs nothing), and marks it used now."""
    import subprocess

    from tradestack.deploy import wheelhouse

    built: list[Path] = []

    def pip_wheel(argv, **kwargs):
        target = Path(argv[argv.index("--wheel-dir") + 1])
        (target / "tradestack-0.1.0-py3-none-any.whl").write_bytes(f"build {len(built)}".encode())
        built.append(target)
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(wheelhouse, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(wheelhouse.subprocess, "run", pip_wheel)
    root = Path(__file__).resolve().parents[2]
    first = wheelhouse.build(root)
    os.utime(first.directory / ".complete", (1_000_000, 1_000_000))
    second = wheelhouse.build(root)
    assert len(built) == 1 and second == first
    assert (first.directory / ".complete").stat().st_mtime > time.time() - 60
