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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test belongs to exactly one tier, so `-m unit` never silently drops one."""
    untiered = [item.nodeid for item in items if sum(1 for t in TIERS if item.get_closest_marker(t)) != 1]
    if untiered:
        raise pytest.UsageError("tests without exactly one tier marker (unit or integration): "
                                + ", ".join(untiered[:10]))
