"""What a site's cluster runs, from the topology: replicas, requests, eviction in seconds, no privilege."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradestack.topology.requests import Resources, requests
from tradestack.kubernetes import workloads
from tradestack.topology import load_topology

pytestmark = pytest.mark.unit

TOPOLOGY = load_topology(Path(__file__).resolve().parents[2] / "infra" / "topologies" / "lab.yaml")
CONFIGS = {"gateway": '{"dsn": "x"}'}


def _by_kind(objects: list[dict], kind: str) -> dict[str, dict]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def test_each_site_runs_its_placed_gateways_and_the_witness_nothing():
    sz1 = workloads.site_manifests(TOPOLOGY, "sz1", "img@sha256:abc", CONFIGS)
    deployments = _by_kind(sz1, "Deployment")
    # routers stay on hosts beside the database (they hold the venue sessions)
    assert {name: d["spec"]["replicas"] for name, d in deployments.items()} == {"gateway": 2}
    assert workloads.clustered_services(TOPOLOGY, "wit") == []
    assert set(_by_kind(sz1, "PodDisruptionBudget")) == set(_by_kind(sz1, "Service")) == {"gateway"}
    [port] = _by_kind(sz1, "Service")["gateway"]["spec"]["ports"]
    assert port["nodePort"] == workloads.NODE_PORTS["gateway"]  # what the site's load balancers are given
    container = deployments["gateway"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "img@sha256:abc" and container["imagePullPolicy"] == "Never"
    assert container["args"][-2:] == ["--instance", "$(POD_NAME)"]  # each replica named by its pod
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
    spec = _by_kind(workloads.site_manifests(TOPOLOGY, "sz1", "img", CONFIGS), "Deployment")["gateway"][
        "spec"]["template"]["spec"]
    assert {t["key"]: t["tolerationSeconds"] for t in spec["tolerations"]} == {
        "node.kubernetes.io/not-ready": workloads.EVICTION_S, "node.kubernetes.io/unreachable": workloads.EVICTION_S}
    assert workloads.EVICTION_S < workloads.DEFAULT_EVICTION_S
    slow = _by_kind(workloads.site_manifests(TOPOLOGY, "sz1", "img", CONFIGS, eviction_s=300), "Deployment")
    assert {t["tolerationSeconds"] for t in slow["gateway"]["spec"]["template"]["spec"]["tolerations"]} == {300}
    security = spec["containers"][0]["securityContext"]
    assert security["runAsNonRoot"] and not security["allowPrivilegeEscalation"] and security["readOnlyRootFilesystem"]
    assert security["capabilities"] == {"drop": ["ALL"]} and spec["priorityClassName"] == workloads.PRIORITY_CLASS
    [spread] = spec["topologySpreadConstraints"]
    assert spread["whenUnsatisfiable"] == "DoNotSchedule" and spread["nodeTaintsPolicy"] == "Honor"
    probe = spec["containers"][0]["readinessProbe"]
    assert probe["timeoutSeconds"] * probe["failureThreshold"] >= 3  # one slow answer does not fail a replica


def test_configurations_are_secrets_and_every_service_needs_one():
    objects = workloads.site_manifests(TOPOLOGY, "sz1", "img", CONFIGS)
    assert _by_kind(objects, "Secret")["gateway-config"]["stringData"] == {"gateway.json": '{"dsn": "x"}'}
    assert not _by_kind(objects, "ConfigMap")
    with pytest.raises(ValueError, match="no configuration for gateway"):
        workloads.site_manifests(TOPOLOGY, "sz1", "img", {})


def test_an_apply_waits_for_ready_replicas_unless_told_not_to():
    waiting = workloads.site_manifests(TOPOLOGY, "sz1", "img", CONFIGS)
    assert not any("pulumi.com/skipAwait" in o["metadata"].get("annotations", {}) for o in waiting)
    created = workloads.site_manifests(TOPOLOGY, "sz1", "img", CONFIGS, await_ready=False)
    assert all(o["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true" for o in created)
    # an apply takes back what was changed by hand
    assert all(o["metadata"]["annotations"]["pulumi.com/patchForce"] == "true" for o in waiting)


def test_pods_reach_the_database_through_their_sites_load_balancers_with_the_deploys_limits():
    import json

    public = {"tradestack_admission": {"max_in_flight": 256, "orders_per_second": 75.0, "burst": 75,
                                       "retry_after_s": 1}}
    configs = workloads.service_configs(TOPOLOGY, "hk1", public, {"tradestack_db_password": "pw"},
                                        ["198.18.2.11", "198.18.2.12"])
    gateway = json.loads(configs["gateway"])
    assert gateway["dsn"] == ("host=198.18.2.11,198.18.2.12 port=5433,5433 user=tradestack password=pw "
                              "dbname=tradestack connect_timeout=2")
    assert gateway["admission"] == public["tradestack_admission"] and gateway["host"] == "0.0.0.0"
    from tradestack.refstack.config import GatewayConfig

    GatewayConfig.model_validate(gateway)  # what the pod reads
    assert workloads.service_configs(TOPOLOGY, "wit", public, {"tradestack_db_password": "pw"}, ["x"]) == {}
    with pytest.raises(ValueError, match="no load balancer"):
        workloads.service_configs(TOPOLOGY, "hk1", public, {"tradestack_db_password": "pw"}, [])
