"""Controls of the site clusters, checked through each cluster's API: disruption budgets and eviction from a lost
node, container security and pinned images, CPU requests against declared capacity, placement and spread.
Only stacks whose services run in clusters are held to them (the controls' `applies_to: clusters`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tradestack.adapters.kube import Cluster, millicores

MAX_EVICTION_S = 30
TAINTS = ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")


def _sites(ctx: Any) -> list[str]:
    """Every site the topology places a clustered service in: each must have a cluster that can be read."""
    return sorted({site for svc in ctx["clustered"] for site, n in ctx["placement"].get(svc, {}).items() if n})


def _placed(audit: Any, site: str) -> dict[str, int]:
    """The clustered services the topology places in `site`, with their replicas."""
    return {svc: audit["placement"][svc][site] for svc in audit["clustered"]
            if audit["placement"].get(svc, {}).get(site)}


def _deployments(audit: Any, site: str) -> tuple[Cluster, dict[str, Any]]:
    """The site cluster's API and the Deployment of every service placed there; fails when the cluster cannot be
    read or a placed service has no Deployment (nothing to judge is never a pass)."""
    kubeconfig = audit["clusters"].get(site)
    assert kubeconfig, f"{site}: the stack places {', '.join(_placed(audit, site))} there and no cluster was found"
    api = Cluster(Path(kubeconfig), site)
    items = api.apps.list_namespaced_deployment(audit["cluster_namespace"], _request_timeout=api.timeout).items
    deployments = {d.metadata.name: d for d in items if d.metadata.name in audit["clustered"]}
    missing = sorted(set(_placed(audit, site)) - set(deployments))
    if missing:
        api.close()
    assert not missing, f"{site}: no Deployment of {', '.join(missing)}, which the topology places there"
    return api, deployments


def _allowed_down(budget: Any, replicas: int) -> int:
    """How many of `replicas` a disruption budget lets go at once (Kubernetes rounds a percentage of
    maxUnavailable up)."""
    spec = budget.spec
    if spec.max_unavailable is not None:
        value = str(spec.max_unavailable)
        return -(-replicas * int(value[:-1]) // 100) if value.endswith("%") else int(value)
    if spec.min_available is not None:
        value = str(spec.min_available)
        keep = -(-replicas * int(value[:-1]) // 100) if value.endswith("%") else int(value)
        return replicas - keep
    return replicas


@pytest.mark.control("KUB-01")
@pytest.mark.targets("site", _sites)
def test_disruption_budgets_allow_one_down_and_pods_leave_a_lost_node_in_seconds(audit, evidence, site):
    api, deployments = _deployments(audit, site)
    with api:
        budgets = {b.metadata.name: b for b in api.policy.list_namespaced_pod_disruption_budget(
            audit["cluster_namespace"], _request_timeout=api.timeout).items}
    for name, d in sorted(deployments.items()):
        budget = budgets.get(name)
        assert budget is not None, f"{site}: {name} has no PodDisruptionBudget"
        replicas = int(d.spec.replicas or 0)
        down = _allowed_down(budget, replicas)
        evidence.note(site, f"{name} budget", f"maxUnavailable {budget.spec.max_unavailable}, minAvailable "
                                              f"{budget.spec.min_available}, {replicas} replicas: {down} may go at "
                                              f"once; allowed now "
                                              f"{budget.status.disruptions_allowed if budget.status else '?'}")
        assert down >= 1, f"{site}: {name}'s budget allows no replica down (a drain would never finish)"
        assert down < replicas, (f"{site}: {name}'s budget lets {down} of {replicas} replicas go at once: a drain "
                                 "can take the site's last serving replica")
        tolerated = {t.key: t.toleration_seconds for t in d.spec.template.spec.tolerations or []
                     if t.effect == "NoExecute"}
        evidence.note(site, f"{name} tolerations", tolerated)
        slow = [f"{key} {tolerated.get(key, 'unset (300 s)')}" for key in TAINTS
                if tolerated.get(key) is None or tolerated[key] > MAX_EVICTION_S]
        assert not slow, f"{site}: {name}'s pods stay on a lost node: {', '.join(slow)}"


@pytest.mark.control("KUB-02")
@pytest.mark.targets("site", _sites)
def test_containers_run_unprivileged_as_non_root_from_pinned_images(audit, evidence, site):
    api, deployments = _deployments(audit, site)
    api.close()
    for name, d in sorted(deployments.items()):
        pod = d.spec.template.spec
        pod_ctx = pod.security_context
        for c in pod.containers:
            sc = c.security_context
            evidence.note(site, f"{name}/{c.name}", {"image": c.image, "runAsNonRoot": sc and sc.run_as_non_root,
                                                     "runAsUser": sc and sc.run_as_user,
                                                     "privileged": sc and sc.privileged})
            non_root = (sc and sc.run_as_non_root) or (pod_ctx and pod_ctx.run_as_non_root)
            user = (sc and sc.run_as_user) if sc and sc.run_as_user is not None else (pod_ctx and pod_ctx.run_as_user)
            assert non_root and user != 0, f"{site}: {name}/{c.name} may run as root"
            assert sc and not sc.privileged and sc.allow_privilege_escalation is False, \
                f"{site}: {name}/{c.name} is privileged or may escalate"
            assert sc.read_only_root_filesystem, f"{site}: {name}/{c.name} has a writable root filesystem"
            assert "@sha256:" in c.image, f"{site}: {name}/{c.name} runs {c.image!r}, not pinned by digest"


@pytest.mark.control("KUB-03")
@pytest.mark.targets("site", _sites)
def test_replicas_request_the_cpu_their_declared_capacity_needs(audit, evidence, site):
    api, deployments = _deployments(audit, site)
    api.close()
    for name, d in sorted(deployments.items()):
        requests = (d.spec.template.spec.containers[0].resources.requests or {})
        got, want = millicores(requests.get("cpu")), audit["cpu_requests_m"][name]
        evidence.note(site, f"{name} CPU request", f"{got}m (declared capacity needs {want}m)")
        assert got is not None and got >= want, f"{site}: {name} requests {got}m CPU; its capacity needs {want}m"


@pytest.mark.control("KUB-04")
@pytest.mark.targets("site", _sites)
def test_each_site_runs_its_placed_replicas_ready_and_spread_over_its_nodes(audit, evidence, site):
    api, deployments = _deployments(audit, site)
    with api:
        pods = api.pods(audit["cluster_namespace"], "app.kubernetes.io/part-of=tradestack")
        nodes = [n.name for n in api.nodes()]
    for service, placed in sorted(_placed(audit, site).items()):
        d = deployments.get(service)
        ready = int(d.status.ready_replicas or 0) if d is not None else 0
        evidence.note(site, f"{service} ready", f"{ready} of {placed} placed")
        assert ready >= placed, f"{site}: {service} has {ready} ready of {placed} placed"
        spread = [c for c in d.spec.template.spec.topology_spread_constraints or []
                  if c.topology_key == "kubernetes.io/hostname"]
        assert spread, f"{site}: {service} does not ask to be spread over nodes"
        on = {}
        for p in pods:
            if p.labels.get("app.kubernetes.io/name") == service and p.ready and not p.terminating and p.node:
                on[p.node] = on.get(p.node, 0) + 1
        evidence.note(site, f"{service} per node", on)
        if len(nodes) > 1 and ready > 1:
            assert len(on) > 1, f"{site}: every ready {service} replica is on {', '.join(on)}"
