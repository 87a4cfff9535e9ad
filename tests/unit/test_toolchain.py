"""The Kubernetes toolchain is built by a target of its own (`make setup-kubernetes`): a machine set up for the lab
alone refuses a stack with clusters before anything is created, naming what is missing and how to get it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradestack.adapters.pulumi import require_provider
from tradestack.errors import EnvironmentProblem
from tradestack.lab import cluster

pytestmark = pytest.mark.unit


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "tradestack"


def test_without_the_kubernetes_provider_the_kubernetes_substrate_says_how_to_build_it(empty_cache):
    with pytest.raises(EnvironmentProblem, match=r"Pulumi's kubernetes provider is not built: run `make setup-kubernetes`"):
        require_provider("kubernetes")


def test_with_the_provider_built_for_the_sdks_version_nothing_is_said(empty_cache):
    from importlib.metadata import version

    built = empty_cache / "pulumi-kubernetes" / f"v{version('pulumi-kubernetes')}" / "bin"
    built.mkdir(parents=True)
    (built / "pulumi-resource-kubernetes").write_text("#!/bin/sh\n")
    require_provider("kubernetes")


def test_without_kubernetes_built_the_labs_clusters_name_the_target_that_builds_it(empty_cache):
    problems = cluster.toolchain_problems()
    assert any(f"Kubernetes v{cluster.KUBERNETES_VERSION} is not built" in p and "make setup-kubernetes" in p
               for p in problems), problems
    built = empty_cache / "kubernetes" / f"v{cluster.KUBERNETES_VERSION}" / "bin"
    built.mkdir(parents=True)
    (built / "kube").write_text("")
    assert not any("is not built" in p for p in cluster.toolchain_problems())


def test_tradestack_turns_grpcs_fork_handlers_off_before_grpc_loads_unless_told_otherwise():
    import subprocess
    import sys

    probe = "import tradestack, os, grpc; print(os.environ['GRPC_ENABLE_FORK_SUPPORT'])"
    env = {"PATH": "/usr/bin:/bin"}
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                          check=True).stdout.strip() == "false"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                          env={**env, "GRPC_ENABLE_FORK_SUPPORT": "true"}).stdout.strip() == "true"


def _fake_pulumi(path: Path, version: str, asked: Path) -> None:
    path.write_text(f"#!/bin/sh\necho \"$@\" >> {asked}\necho v{version}\n")
    path.chmod(0o755)


def test_the_pulumi_cli_is_asked_its_version_once_per_binary(tmp_path):
    """The SDK's PulumiCommand runs `pulumi version` every time it is made, in every tradestack command that opens
    a stack: the adapter asks a binary once, and again only when the binary changed."""
    import os

    from tradestack.adapters.pulumi import cli_version

    cli, asked, memo = tmp_path / "pulumi", tmp_path / "asked", tmp_path / "home" / "cli-version"
    _fake_pulumi(cli, "3.1.2", asked)
    assert cli_version(cli, memo) == cli_version(cli, memo) == "3.1.2"
    assert asked.read_text().splitlines() == ["version"]
    _fake_pulumi(cli, "3.10.20", asked)  # rebuilt: another size
    os.utime(cli, ns=(1, 1))
    assert cli_version(cli, memo) == "3.10.20"
    assert asked.read_text().splitlines() == ["version", "version"]


def test_a_pulumi_cli_that_cannot_tell_its_version_is_a_problem_of_this_machine(tmp_path):
    from tradestack.adapters.pulumi import cli_version

    cli = tmp_path / "pulumi"
    cli.write_text("#!/bin/sh\necho 'broken install' >&2\nexit 1\n")
    cli.chmod(0o755)
    with pytest.raises(EnvironmentProblem, match="did not tell its version: broken install"):
        cli_version(cli, tmp_path / "memo")
    assert not (tmp_path / "memo").exists()


def test_the_project_file_is_replaced_whole_and_only_when_it_changes(tmp_path):
    """Commands of one stack run at once (a drill switching several machines' power); the SDK's own save truncated
    Pulumi.yaml in place, and a pulumi process reading it then failed: "expected project to be an object, was
    '<nil>'" (make test, stop 43). A reader now sees the old file or the new one, never a part."""
    import threading

    import yaml
    from pulumi import automation as auto

    from tradestack.adapters.pulumi import project_file

    def settings(name: str) -> auto.ProjectSettings:
        return auto.ProjectSettings(name=name, runtime="python", main=str(tmp_path))

    path = project_file(tmp_path, settings("one"))
    assert yaml.safe_load(path.read_text()) == {"name": "one", "runtime": "python", "main": str(tmp_path)}
    inode = path.stat().st_ino
    project_file(tmp_path, settings("one"))
    assert path.stat().st_ino == inode  # the same settings: not written again

    seen: list[object] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.append(yaml.safe_load(path.read_text()))
    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(300):
            project_file(tmp_path, settings(f"name-{i % 2}"))
    finally:
        stop.set()
        reader.join()
    assert seen and all(isinstance(s, dict) and s["name"] in ("one", "name-0", "name-1") for s in seen), \
        [s for s in seen if not isinstance(s, dict)][:3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Pulumi.yaml"]  # no temporary file left
