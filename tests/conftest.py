"""Shared fixtures. Tier markers: every test module sets `pytestmark` to unit or integration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOPOLOGIES = ROOT / "infra" / "topologies"


@pytest.fixture
def lab_yaml() -> Path:
    return TOPOLOGIES / "lab.yaml"


@pytest.fixture(autouse=True)
def _isolated_state(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never write into the user's ~/.tradestack from a test."""
    monkeypatch.setenv("TRADESTACK_HOME", str(tmp_path_factory.mktemp("tradestack-home")))


def pytest_configure(config: pytest.Config) -> None:
    """Output is laid out as for a pipeline (no terminal, no COLUMNS), whoever runs the tests: pytest-xdist's
    workers run with COLUMNS=80 in their environment, which would fold the CLI's tables differently. Here, before any test
    module imports the CLI (its consoles read the width once)."""
    os.environ.pop("COLUMNS", None)
    os.environ.pop("LINES", None)


TIERS = ("unit", "integration")


# The modules whose tests use the session lab (tests/integration/conftest.py: deployed once, its tests build on
# each other). Checked below against the fixtures their tests request, so the list cannot drift.
SESSION_LAB = frozenset(f"tests/integration/{m}.py" for m in (
    "test_audit", "test_deploy", "test_drills", "test_hosts_substrate", "test_lab", "test_ssh"))


def _uses_session_lab(nodeid: str) -> bool:
    return nodeid.split("::", 1)[0] in SESSION_LAB


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test belongs to exactly one tier, so `-m unit` never silently drops one; every module that uses the
    session lab is in SESSION_LAB."""
    untiered = [item.nodeid for item in items if sum(1 for t in TIERS if item.get_closest_marker(t)) != 1]
    if untiered:
        raise pytest.UsageError("tests without exactly one tier marker (unit or integration): "
                                + ", ".join(untiered[:10]))
    unlisted = sorted({item.nodeid.split("::", 1)[0] for item in items
                       if "lab" in getattr(item, "fixturenames", ()) and not _uses_session_lab(item.nodeid)})
    if unlisted:
        raise pytest.UsageError(f"modules using the session lab but not in SESSION_LAB (tests/conftest.py): "
                                f"{', '.join(unlisted)}")


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`--dist loadgroup` (as `make test` runs, with -n 2): two groups, each run whole and in order by one worker.
    Every test of the session lab in one; every other test (the kubernetes substrate's own lab and clusters, the
    reference stack on loopback, unit tests) in the other, beside it: the lab's drills spend most of their time
    waiting out their phases, so the machine has room for both. Done here rather than with xdist_group marks,
    which pytest-xdist 3.8 no longer honours under pytest 9.2 (pytest-dev/pytest-xdist#1386)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class BesideTheLab(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "session lab" if _uses_session_lab(nodeid) else "beside the lab"

    return BesideTheLab(config, log)
