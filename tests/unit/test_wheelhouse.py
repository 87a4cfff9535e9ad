"""The wheelhouse cache keeps the wheelhouses used last, not one per source change for ever."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tradestack.builds.wheelhouse import prune

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

    from tradestack.builds import wheelhouse

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


def test_two_deploys_building_one_source_at_once_get_the_same_wheel(tmp_path, monkeypatch):
    """Two test workers (or operators) deploying the same source at once: each wheel build differs in its bytes,
    so both must end up with the one wheel that won, never the first installing one and the second overwriting
    it (a later deploy then saw another wheel and reinstalled it on every host)."""
    import os
    import subprocess
    import threading
    import time

    from tradestack.builds import wheelhouse

    monkeypatch.setattr(wheelhouse, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(wheelhouse, "source_digest", lambda root: "abc123")

    started = []

    def pip_wheel(argv, **_kw):
        target = Path(argv[argv.index("--wheel-dir") + 1])
        started.append(target)
        time.sleep(0.3 * len(started))  # both under way at once; the second finishes after the first returned
        (target / "tradestack-0.1.0-py3-none-any.whl").write_bytes(os.urandom(64))  # not byte-reproducible
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(wheelhouse.subprocess, "run", pip_wheel)
    built: list = []
    workers = [threading.Thread(target=lambda: built.append(wheelhouse.build(tmp_path))) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(built) == 2 and built[0].sha256 == built[1].sha256 and built[0].directory == built[1].directory
    assert sorted(p.name for p in (tmp_path / "cache" / "wheelhouse").iterdir()) == ["abc123"]  # no staging left
