"""One lab stack for the whole integration run (building one per test would take far longer)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

TOPOLOGIES = Path(__file__).resolve().parents[2] / "infra" / "topologies"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Lab tests need root (network namespaces); the rest (e.g. the reference stack on loopback) do not."""
    needs_root = [item for item in items if item.get_closest_marker("integration")
                  and "lab" in getattr(item, "fixturenames", ())]
    if needs_root and os.geteuid() != 0:
        if os.environ.get("CI"):
            raise pytest.UsageError("lab integration tests need root and CI must run them: run .ci/run as root")
        skip = pytest.mark.skip(reason="needs root (network namespaces); CI runs it as root")
        for item in needs_root:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def lab_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lab-home")


@pytest.fixture(autouse=True)
def _isolated_state(lab_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Integration tests share the session lab's state dir (overrides the unit-test isolation)."""
    monkeypatch.setenv("TRADESTACK_HOME", str(lab_home))


@pytest.fixture(scope="session")
def lab(lab_home: Path):
    """The lab topology brought up once as stack `itlab`; destroyed at the end of the session."""
    from tradestack.lab.stack import LabStack  # here: Pulumi's gRPC only loads when the lab is used

    mp = pytest.MonkeyPatch()
    mp.setenv("TRADESTACK_HOME", str(lab_home))
    stack = LabStack("itlab", TOPOLOGIES / "lab.yaml")
    result, files = stack.up()
    try:
        yield {"stack": stack, "up": result, "files": files, "outputs": stack.outputs()}
    finally:
        stack.destroy()
        mp.undo()
        shutil.rmtree(lab_home, ignore_errors=True)


PLANTED = "planted-Secret-7f3e9c1d5b2a"  # the app database password, planted to be searched for


@pytest.fixture(scope="session")
def deployed(lab):
    """The trading stack deployed once onto the session's lab (deploy and drill tests share it)."""
    import yaml

    from tradestack.deploy import run

    stack = lab["stack"]
    stack.set_secret("dbAppPassword", PLANTED)
    first = run.apply(run.plan(stack.name))
    assert first.ok, [vars(f) for f in first.failures]
    inventory = yaml.safe_load(stack.access_files().inventory.read_text())["all"]["hosts"]
    return {"stack": stack, "first": first, "inventory": inventory}
