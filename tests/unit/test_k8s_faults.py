"""Faults through the Kubernetes API: draining a node honours disruption budgets, and pods are spread again after.

The API is an in-memory cluster here (a scheduler that places a replacement on the schedulable node with fewest
of its service's pods, as the workloads' hard topology spread does); the real API server is driven by
tests/integration/test_k8s_substrate.py.
"""

from __future__ import annotations

import pytest

from tradestack.adapters.kube import DeploymentView, NodeView, PodView
from tradestack.drills import model
from tradestack.kubernetes import substrate
from tradestack.kubernetes.workloads import NAMESPACE
from tradestack.substrates.base import SubstrateError

pytestmark = pytest.mark.unit


class Api:
    """Nodes, pods by (name, node, service, owner), a budget that refuses the first `refusals` evictions."""

    def __init__(self, nodes: list[str], pods: list[tuple[str, str, str]], refusals: int = 0):
        self.unschedulable = {n: False for n in nodes}
        self.placed = [{"name": name, "node": node, "service": service, "owner": "ReplicaSet"}
                       for name, node, service in pods]
        self.refusals = refusals
        self.evicted: list[str] = []
        self.serial = 0

    def nodes(self) -> list[NodeView]:
        return [NodeView(n, True, (), off) for n, off in self.unschedulable.items()]

    def pods(self, namespace: str, selector: str = "") -> list[PodView]:
        return [PodView(NAMESPACE, p["name"], p["node"], "Running", True, None,
                        {"app.kubernetes.io/name": p["service"]}) for p in self.placed if p["owner"] != "DaemonSet"]

    def deployments(self, namespace: str) -> list[DeploymentView]:
        services = sorted({p["service"] for p in self.placed if p["owner"] != "DaemonSet"})
        return [DeploymentView(NAMESPACE, s, n, n, None, {})
                for s in services for n in [sum(p["service"] == s for p in self.placed)]]

    def pods_on(self, node: str) -> list[tuple[str, str, str | None]]:
        return [(NAMESPACE, p["name"], p["owner"]) for p in self.placed if p["node"] == node]

    def evict(self, namespace: str, name: str) -> bool:
        if self.refusals:
            self.refusals -= 1
            return False
        [pod] = [p for p in self.placed if p["name"] == name]
        self.placed.remove(pod)
        self.evicted.append(name)
        self.serial += 1
        ready = [n for n, off in self.unschedulable.items() if not off]
        target = min(ready, key=lambda n: sum(p["node"] == n and p["service"] == pod["service"] for p in self.placed))
        self.placed.append({**pod, "name": f"{pod['service']}-new{self.serial}", "node": target})
        return True

    def where(self) -> dict[str, list[str]]:
        return {n: sorted(p["name"] for p in self.placed if p["node"] == n) for n in self.unschedulable}


def test_a_drain_evicts_every_pod_but_daemonsets_and_asks_again_while_a_budget_refuses():
    api = Api(["a", "b"], [("gw-1", "a", "gateway"), ("gw-2", "b", "gateway")], refusals=2)
    api.placed.append({"name": "proxy-a", "node": "a", "service": "proxy", "owner": "DaemonSet"})
    api.unschedulable["a"] = True                       # cordoned first, as the fault does
    substrate.drain(api, "a", timeout=30)
    assert api.evicted == ["gw-1"]                      # refused twice, then allowed
    assert api.where() == {"a": ["proxy-a"], "b": ["gateway-new1", "gw-2"]}


def test_a_drain_that_a_budget_blocks_for_good_fails_naming_the_pod():
    api = Api(["a", "b"], [("gw-1", "a", "gateway")], refusals=10_000)
    with pytest.raises(SubstrateError, match=r"draining a: a disruption budget still refuses to evict "
                                             rf"{NAMESPACE}/gw-1 after 0 s"):
        substrate.drain(api, "a", timeout=0)


def test_pods_crowded_onto_one_node_are_spread_again_one_eviction_at_a_time():
    api = Api(["a", "b"], [("gw-1", "a", "gateway"), ("gw-2", "a", "gateway"), ("gw-3", "a", "gateway"),
                           ("rt-1", "a", "router"), ("rt-2", "b", "router")])
    substrate.rebalance(api, "hk1")
    counts = {n: sum(p["node"] == n and p["service"] == "gateway" for p in api.placed) for n in ("a", "b")}
    assert counts == {"a": 2, "b": 1}                   # within one of each other: the spread's own skew
    assert len(api.evicted) == 1 and api.evicted[0].startswith("gw-")   # the router was spread already


def test_nothing_moves_while_the_other_node_cannot_take_pods():
    api = Api(["a", "b"], [("gw-1", "a", "gateway"), ("gw-2", "a", "gateway")])
    api.unschedulable["b"] = True
    substrate.rebalance(api, "hk1")
    assert api.evicted == []


def test_cluster_faults_parse_and_describe_themselves():
    for kind, text in (("pod-delete", "every trading pod of site hk1's Kubernetes cluster deleted"),
                       ("node-drain", "a node of site hk1's Kubernetes cluster cordoned and drained"),
                       ("api-server-cut", "site hk1's Kubernetes API server cut off the network")):
        drill = model.Drill.model_validate({"name": "x", "description": "x",
                                            "faults": [{"kind": kind, "site": "hk1"}]})
        assert drill.faults[0].describe() == text


def test_the_lab_refuses_pod_faults_at_preflight_it_runs_no_pods():
    from tradestack.lab import actuators
    from tradestack.substrates.base import FaultRefused

    for kind in ("pod-delete", "node-drain"):
        fault = model.Drill.model_validate({"name": "x", "description": "x",
                                            "faults": [{"kind": kind, "site": "hk1"}]}).faults[0]
        with pytest.raises(FaultRefused, match="kubernetes substrate"):
            actuators.check(None, fault)  # refused on the fault alone, before the stack is asked anything


def _memory(tmp_path):
    from .memory_substrate import MemorySubstrate

    return MemorySubstrate(tmp_path)


def _fault(kind: str, **fields):
    return model.Drill.model_validate({"name": "x", "description": "x",
                                       "faults": [{"kind": kind, **fields}]}).faults[0]


def test_a_stack_without_clusters_refuses_every_cluster_fault_before_its_hosts_are_asked(tmp_path):
    from tradestack.substrates.base import FaultRefused

    stack = _memory(tmp_path)
    for kind in ("node-loss", "pod-delete", "node-drain", "api-server-cut"):
        fault = _fault(kind, site="hk1")
        with pytest.raises(FaultRefused, match="runs no Kubernetes cluster.*kubernetes substrate"):
            stack.check_fault(fault)
        with pytest.raises(FaultRefused, match="runs no Kubernetes cluster"):
            stack.actuator(fault)
    assert stack.events == []


def test_clusters_take_their_faults_and_leave_the_rest_to_the_hosts(tmp_path):
    """The clusters capability, attached to a stack, resolves cluster faults; a host fault still reaches the
    hosts' substrate. Its signals and audit facts join the hosts'."""
    from tradestack.substrates.base import Actuator
    from tradestack.substrates.clusters import Clusters

    class Fake(Clusters):
        services = ("gateway",)

        def __init__(self):
            self.checked: list[str] = []

        def sites(self):
            return {}

        def deploy_vars(self):
            return {}

        def apply_workloads(self, public, secret, on_step=lambda s: None):
            return None

        def view(self):
            return {}

        def signals(self):
            return {"k8s.hk1.pods_ready": 2}

        def actuator(self, fault):
            if fault.kind != "pod-delete":
                return None
            return Actuator("pods deleted", lambda: None, lambda step: None)

        def check_fault(self, fault):
            if fault.kind != "pod-delete":
                return False
            self.checked.append(fault.kind)
            return True

        def audit_facts(self):
            return {"clustered": ["gateway"]}

    stack = _memory(tmp_path)
    stack.clusters = Fake()
    pods = _fault("pod-delete", site="hk1")
    stack.check_fault(pods)
    assert stack.actuator(pods).text == "pods deleted" and stack.clusters.checked == ["pod-delete"]
    link = _fault("link-down", group="carrier:ct")
    stack.check_fault(link)
    assert stack.actuator(link).text == "link-down in memory"  # the hosts' substrate resolved it
    assert stack.signals()["k8s.hk1.pods_ready"] == 2 and "paths" in stack.signals()
    assert stack.audit_facts()["clustered"] == ["gateway"] and "sshd_config" in stack.audit_facts()


def test_every_kind_of_fault_says_in_words_what_it_does():
    """The vocabulary's every member describes itself (a plan and --dry-run print it), naming what it acts on."""
    import typing

    from tradestack.substrates import faults

    kinds = typing.get_args(typing.get_args(faults.Fault)[0])
    assert len(kinds) == 15
    for kind in kinds:
        assert "describe" in vars(kind), kind.__name__
        fields = {"group": "carrier:ct", "carrier": "ct", "host": "sz1-gateway-1", "program": "gateway",
                  "sites": ["sz1", "hk1"], "upstream": "exchange", "mode": "down", "site": "hk1"}
        wanted = {n: v for n, v in fields.items() if n in kind.model_fields}
        text = kind(kind=typing.get_args(kind.model_fields["kind"].annotation)[0], **wanted).describe()
        assert all(str(v[0] if isinstance(v, list) else v) in text for v in wanted.values()), (kind.__name__, text)
