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


DECLARED = ["fastapi>=0.115,<1", "uvicorn>=0.30,<1", "uvloop>=0.19,<1", "httptools>=0.6,<1", "psycopg[binary]>=3.2,<4",
            "psycopg-pool>=3.2,<4", "httpx>=0.27,<1", "aiohttp>=3.9,<4", "prometheus-client>=0.20,<1",
            "pydantic>=2.7,<3", "PyYAML>=6.0,<7", "typer>=0.29,<0.30", "rich>=13.7,<16", "numpy>=1.26,<3",
            "ansible>=10,<13", "pulumi==3.217.0", 'pytest>=8; extra == "test"']


def _wheel(path: Path, declared: list[str], salt: bytes = b"") -> None:
    """A wheel whose metadata declares `declared` (and whose bytes differ with `salt`, as real builds do)."""
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("tradestack-0.1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: tradestack\n"
                         + "".join(f"Requires-Dist: {r}\n" for r in declared))
        archive.writestr("tradestack/salt", salt)


def _pip(calls: list, declared: list[str] = DECLARED, salt=lambda: b""):
    """`pip wheel` as the build runs it: the project's wheel alone (--no-deps), then what hosts need."""
    import subprocess

    def pip_wheel(argv, **_kw):
        target = Path(argv[argv.index("--wheel-dir") + 1])
        calls.append((target, argv[argv.index(str(target)) + 1:]))
        if "--no-deps" in argv:
            _wheel(target / "tradestack-0.1.0-py3-none-any.whl", declared, salt())
        return subprocess.CompletedProcess(argv, 0, "", "")
    return pip_wheel


def test_a_host_gets_the_services_packages_at_the_projects_ranges_and_not_the_operators_tools(tmp_path, monkeypatch):
    from tradestack.builds import wheelhouse

    calls: list = []
    monkeypatch.setattr(wheelhouse, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(wheelhouse.subprocess, "run", _pip(calls))
    built = wheelhouse.build(Path(__file__).resolve().parents[2])
    wanted = (built.directory / "host-requirements.txt").read_text().splitlines()
    assert wanted == ["fastapi<1,>=0.115", "uvicorn<1,>=0.30", "uvloop<1,>=0.19", "httptools<1,>=0.6",
                      "psycopg[binary]<4,>=3.2", "psycopg-pool<4,>=3.2", "httpx<1,>=0.27", "aiohttp<4,>=3.9",
                      "prometheus-client<1,>=0.20", "pydantic<3,>=2.7", "PyYAML<7,>=6.0", "typer<0.30,>=0.29",
                      "rich<16,>=13.7", "numpy<3,>=1.26"]
    assert [argv[-1] for _, argv in calls[:1]] == [str(Path(__file__).resolve().parents[2])]
    assert calls[1][1] == [*wanted, *wheelhouse.PATRONI]


def test_a_host_package_the_project_stopped_declaring_is_a_clear_error(tmp_path, monkeypatch):
    from tradestack.builds import wheelhouse

    monkeypatch.setattr(wheelhouse, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(wheelhouse, "source_digest", lambda root: "abc123")
    monkeypatch.setattr(wheelhouse.subprocess, "run", _pip([], [r for r in DECLARED if not r.startswith("uvloop")]))
    with pytest.raises(wheelhouse.WheelhouseError, match="does not declare uvloop, which hosts need"):
        wheelhouse.build(tmp_path)
    assert list((tmp_path / "cache" / "wheelhouse").iterdir()) == []  # nothing half-built left


def test_a_wheelhouse_is_built_once_per_source_and_then_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A second build of the same source reuses the first (its wheel, so its digest: a deploy with nothing
    changed installs nothing), and marks it used now."""
    import subprocess

    from tradestack.builds import wheelhouse

    calls: list = []
    monkeypatch.setattr(wheelhouse, "cache_dir", lambda: tmp_path / "cache")
    monkeypatch.setattr(wheelhouse.subprocess, "run", _pip(calls))
    root = Path(__file__).resolve().parents[2]
    first = wheelhouse.build(root)
    os.utime(first.directory / ".complete", (1_000_000, 1_000_000))
    second = wheelhouse.build(root)
    assert len({target for target, _ in calls}) == 1 and second == first
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

    started: list = []
    pip_wheel = _pip(started, salt=lambda: os.urandom(64))  # not byte-reproducible

    def slow(argv, **kw):
        done = pip_wheel(argv, **kw)
        time.sleep(0.3 * len(started))  # both under way at once; the second finishes after the first returned
        return done

    monkeypatch.setattr(wheelhouse.subprocess, "run", slow)
    built: list = []
    workers = [threading.Thread(target=lambda: built.append(wheelhouse.build(tmp_path))) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(built) == 2 and built[0].sha256 == built[1].sha256 and built[0].directory == built[1].directory
    assert sorted(p.name for p in (tmp_path / "cache" / "wheelhouse").iterdir()) == ["abc123"]  # no staging left
