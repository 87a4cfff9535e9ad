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
