"""What a site's cluster runs, from the topology: replicas, requests, eviction in seconds, no privilege."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradestack.capacity.requests import Resources, requests
from tradestack.kubernetes import workloads
from tradestack.topology import load_topology

pytestmark = pytest.mark.unit

TOPOLOGY = load_topology(Path(__file__).resolve().parents[2] / "infra" / "topologies" / "lab.yaml")
CONFIGS = {"gateway": '{"dsn": "x"}', "router": '{"dsn": "y"}'}


def _by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def test_each_site_runs_its_placed_stateless_services_and_the_witness_none():
    sz1 = workloads.site_manifests(TOPOLOGY, "sz1", "img@sha256:abc", CONFIGS)
    deployments = _by_kind(sz1, "Deployment")
    assert {name: d["spec"]["replicas"] for name, d in deployments.items()} == {"gateway": 2, "router": 1}
    assert workloads.clustered_services(TOPOLOGY, "wit") == []  # consensus is not stateless: no cluster work
    assert set(_by_kind(sz1, "PodDisruptionBudget")) == set(_by_kind(sz1, "Service")) == {"gateway", "router"}
    assert all(p["spec"]["maxUnavailable"] == 1 for p in _by_kind(sz1, "PodDisruptionBudget").values())


def test_requests_follow_declared_capacity_at_the_measured_cost_per_order():
    gateway = requests(TOPOLOGY, "gateway")  # 60/s x 1.5 ms + 50 m; 96 MiB + 400 x 64 KiB
    assert gateway == Resources(cpu_m=140, memory_mi=121)
    router = requests(TOPOLOGY, "router")    # 120/s x 2.4 ms + 50 m
    assert router.cpu_m == 338
    pod = _by_kind(workloads.site_manifests(TOPOLOGY, "hk1", "img", CONFIGS), "Deployment")["gateway"]
    assert pod["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "140m",
                                                                                          "memory": "121Mi"}


def test_pods_leave_a_lost_node_in_seconds_and_run_without_privilege():
    spec = _by_kind(workloads.site_manifests(TOPOLOGY, "sz1", "img", CONFIGS), "Deployment")["router"][
        "spec"]["template"]["spec"]
    assert {t["key"]: t["tolerationSeconds"] for t in spec["tolerations"]} == {
        "node.kubernetes.io/not-ready": workloads.EVICTION_S, "node.kubernetes.io/unreachable": workloads.EVICTION_S}
    assert workloads.EVICTION_S < workloads.DEFAULT_EVICTION_S
    slow = _by_kind(workloads.site_manifests(TOPOLOGY, "sz1", "img", CONFIGS, eviction_s=300), "Deployment")
    assert {t["tolerationSeconds"] for t in slow["router"]["spec"]["template"]["spec"]["tolerations"]} == {300}
    security = spec["containers"][0]["securityContext"]
    assert security["runAsNonRoot"] and not security["allowPrivilegeEscalation"] and security["readOnlyRootFilesystem"]
    assert security["capabilities"] == {"drop": ["ALL"]} and spec["priorityClassName"] == workloads.PRIORITY_CLASS


def test_configurations_are_secrets_and_every_service_needs_one():
    objects = workloads.site_manifests(TOPOLOGY, "sz1", "img", CONFIGS)
    assert _by_kind(objects, "Secret")["gateway-config"]["stringData"] == {"gateway.json": '{"dsn": "x"}'}
    assert not _by_kind(objects, "ConfigMap")
    with pytest.raises(ValueError, match="no configuration for router"):
        workloads.site_manifests(TOPOLOGY, "sz1", "img", {"gateway": "{}"})


def test_an_apply_waits_for_ready_replicas_unless_told_not_to():
    waiting = workloads.site_manifests(TOPOLOGY, "sz1", "img", CONFIGS)
    assert not any("pulumi.com/skipAwait" in o["metadata"].get("annotations", {}) for o in waiting)
    created = workloads.site_manifests(TOPOLOGY, "sz1", "img", CONFIGS, await_ready=False)
    assert all(o["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true" for o in created)
