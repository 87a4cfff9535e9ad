"""The kubernetes substrate end to end, as an SRE drives it: `stack up --substrate kubernetes` brings up the lab's
hosts with a real cluster per site; `deploy` runs the playbooks, then applies the gateways to the clusters with
Pulumi; clients' orders go through each site's VIP to gateway pods; `capacity check --live` reads the clusters;
a hand-made scale-down is drift that `stack up` puts back; `stack destroy` leaves nothing."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tradestack.adapters.commands import run
from tradestack.adapters.kube import Cluster
from tradestack.hostsettings import HostSettings
from tradestack.lab import cluster as labcluster
from tradestack.polling import wait_for

from .cni import not_others, pod_namespaces
from .conftest import RUN, STACK, TIMED, remove_host_settings, with_short_windows

pytestmark = [pytest.mark.integration, pytest.mark.heavy, pytest.mark.timeout(1800)]

# Two sites (one two-node cluster each: sz1 with one gateway pod, hk1 with two, spread over its nodes), the
# database's synchronous standby in the other site, a consensus witness; the peak is what one gateway carries with
# the other site lost.
TOPOLOGY = """\
name: k8s-substrate
peak: {orders_per_second: 20, sessions: 100}
headroom: 1.25
carriers: [{name: ct}, {name: cu}]
sites:
  - name: sz1
    role: active
    risk_groups: [power:sz-grid]
    uplinks: [{carrier: ct, risk_groups: [facility:ct-a]}, {carrier: cu, risk_groups: [facility:cu-a]}]
  - name: hk1
    role: standby
    risk_groups: [power:hk-grid]
    uplinks: [{carrier: ct, risk_groups: [facility:ct-b]}, {carrier: cu, risk_groups: [facility:cu-b]}]
  - name: wit
    role: witness
    risk_groups: [power:wit-grid]
    uplinks: [{carrier: cu, risk_groups: [facility:cu-c]}]
upstreams: [{name: exchange}, {name: overnight-ats}]
services:
  - {name: gateway, kind: stateless, capacity: {orders_per_second: 60, sessions: 400}, placement: {sz1: 1, hk1: 2}}
  - {name: router, kind: stateless, capacity: {orders_per_second: 120}, placement: {sz1: 1, hk1: 1},
     upstreams: [exchange, overnight-ats], requires: [orderdb]}
  - {name: orderdb, kind: replicated, replication: synchronous, capacity: {orders_per_second: 120},
     placement: {sz1: 1, hk1: 1}, requires: [consensus]}
  - {name: consensus, kind: quorum, placement: {sz1: 1, hk1: 1, wit: 1}}
"""
PLACED = {"sz1": 1, "hk1": 2}   # gateway pods per site, as TOPOLOGY places them
SETTINGS = HostSettings(service_user=f"tk{RUN}", service_group=f"tk{RUN}g",
                        state_root=f"/var/lib/tradestack-it/k{RUN}", software_root=f"/opt/tradestack-it/k{RUN}")


def _name() -> str:
    """A stack name of this run whose management network is neither the session lab's nor the small cluster
    lab's (test_lab_cluster.py takes the slot after the session lab's)."""
    from tradestack.lab.plan import MGMT_SLOTS, default_mgmt_slot

    taken = {default_mgmt_slot(STACK), (default_mgmt_slot(STACK) + 1) % MGMT_SLOTS}
    return next(n for n in (f"k{c}{RUN}" for c in "abcdefghij") if default_mgmt_slot(n) not in taken)


def _tool(*args: str, timeout: float = 900) -> tuple[int, dict]:
    done = run([sys.executable, "-m", "tradestack", *args, "--json"], timeout=timeout, env=dict(os.environ))
    try:
        return done.rc, json.loads(done.stdout)
    except ValueError:
        raise AssertionError(done.why()) from None


@pytest.fixture(scope="module")
def k8s(lab_home: Path, tmp_path_factory: pytest.TempPathFactory):
    """The stack brought up on the kubernetes substrate and deployed; destroyed by the last test (or here)."""
    from tradestack.deploy import run as deploy

    mp = pytest.MonkeyPatch()
    mp.setenv("TRADESTACK_HOME", str(lab_home))
    topology = tmp_path_factory.mktemp("k8s-substrate") / "k8s-substrate.yaml"
    topology.write_text(TOPOLOGY)
    name = _name()
    before = {"cni_cache": set(labcluster.CNI_CACHE.glob("*")), "pod_namespaces": pod_namespaces(),
              "machine_tmp": _kubeconfigs_in_tmp()}
    try:
        rc, up = _tool("stack", "up", "--stack", name, "--substrate", "kubernetes", "--topology", str(topology),
                       "--service-user", SETTINGS.service_user, "--service-group", SETTINGS.service_group,
                       "--state-root", SETTINGS.state_root, "--software-root", SETTINGS.software_root)
        assert rc == 0 and up["ok"], up
        started = time.monotonic()
        result = deploy.apply(deploy.plan(name))
        assert result.ok, [vars(f) for f in result.failures]
        yield {"name": name, "topology": topology, "deploy": result, "deploy_s": time.monotonic() - started,
               **before}
    finally:
        from tradestack.substrates import registry

        try:
            managed = registry.lifecycle(name)
            if managed.exists():
                managed.destroy()
        finally:
            remove_host_settings(SETTINGS)
            mp.undo()


def _kubeconfigs_in_tmp() -> set[Path]:
    """Kubeconfigs in the machine's temporary directory (the kubernetes provider writes one per use)."""
    return set(Path(tempfile.gettempdir()).glob("kubeconfig*"))


def _vip_get(stack, site: str, path: str) -> tuple[int, dict | None]:
    return stack.http(stack.clients_host, "GET", f"http://{stack.vips[site]}:8080{path}", timeout=3)


def test_deploy_applies_the_gateways_to_each_sites_cluster_and_clients_orders_reach_them(k8s):
    from tradestack.drills.steady import wait_steady
    from tradestack.kubernetes.substrate import KubernetesClusters
    from tradestack.kubernetes.workloads import NAMESPACE
    from tradestack.substrates import registry

    applied = k8s["deploy"].workloads
    assert applied is not None and applied["image"].split("@")[1].startswith("sha256:"), applied
    assert applied["applied"]["sz1"] == applied["applied"]["hk1"] == [
        "Deployment/gateway", "Namespace/tradestack", "PodDisruptionBudget/gateway",
        "PriorityClass/tradestack-trading", "Secret/gateway-config", "Service/gateway"]
    assert registry.kind_of(k8s["name"]) == "kubernetes"
    stack = registry.open_stack(k8s["name"])
    assert isinstance(stack.clusters, KubernetesClusters)
    assert wait_steady(stack, 120) == []  # hosts, database, VIPs and every cluster's replicas

    for site, cluster in sorted(stack.clusters.sites().items()):
        with Cluster(cluster.kubeconfig, site) as api:
            pods = {p.name: p for p in api.pods(NAMESPACE)}
            [deployment] = api.deployments(NAMESPACE)
        assert deployment.ready == PLACED[site] and all(p.ready for p in pods.values()), pods
        # spread: no two of a site's gateway pods on one node
        assert len({p.node for p in pods.values()}) == PLACED[site], pods
        # the gateways run in the cluster, not on the site's load balancer hosts
        for host in stack.of("gateway", site):
            programs = stack.programs(host.name)
            assert programs.get("haproxy") == "running" and "tradestack-gateway" not in programs, programs
        # a client's order through the site's VIP is answered by a pod of that site's cluster, and filled
        code, health = _vip_get(stack, site, "/healthz")
        assert code == 200 and health["instance"] in pods, (health, pods)
        body = {"account": "acct-00001", "client_order_id": f"k8s-{site}-{RUN}", "symbol": "AAPL", "side": "buy",
                "qty": 1}
        code, order = stack.http(stack.clients_host, "POST", f"http://{stack.vips[site]}:8080/v1/orders", body,
                                 timeout=5)
        assert code == 201, (code, order)
        assert wait_for(lambda: (_vip_get(stack, site, f"/v1/orders/{order['id']}")[1] or {}).get("state")
                        == "filled", 20, 0.3)
    # the load balancers pass the database through only to the pods' range: a client host is refused
    db_proxy = stack.of("gateway", "sz1")[0].lan_address
    probe = (f"exec 3<>/dev/tcp/{db_proxy}/5433 || exit 9; echo connected; "
             "printf '\\0\\0\\0\\x08\\x04\\xd2\\x16\\x2f' >&3 2>/dev/null; timeout 2 head -c1 <&3 | wc -c")
    refused = stack.run(stack.clients_host, ["bash", "-c", probe], timeout=10)
    # accepted (so the port is there) and closed before PostgreSQL could answer its SSL request with a byte
    assert refused.stdout.split() == ["connected", "0"], refused.why()


def test_a_second_run_changes_nothing_and_the_live_check_reads_the_clusters(k8s):
    from tradestack.kubernetes.workloads import NAMESPACE
    from tradestack.substrates import registry

    name = k8s["name"]
    rc, preview = _tool("stack", "preview", "--stack", name)
    assert rc == 0 and preview["changed"] is False, preview

    rc, live = _tool("capacity", "check", "--live", "--stack", name)
    assert rc == 0 and live["ok"], live
    assert live["live"]["ready"] == {"gateway": PLACED} and live["live"]["problems"] == []

    # hk1's gateways scaled to nothing by hand: losing sz1 would leave no gateway, and the check says so
    stack = registry.open_stack(name)
    hk1 = stack.clusters.sites()["hk1"]
    with Cluster(hk1.kubeconfig, "hk1") as api:
        api.apps.patch_namespaced_deployment_scale("gateway", NAMESPACE, {"spec": {"replicas": 0}})
        assert wait_for(lambda: not api.pods(NAMESPACE), 60, 0.5)
    rc, live = _tool("capacity", "check", "--live", "--stack", name)
    assert rc == 1 and not live["ok"] and live["live"]["ready"]["gateway"]["hk1"] == 0
    failing = {svc for s in live["scenarios"] if s["failed"] for svc, v in s["services"].items() if not v["ok"]}
    assert failing == {"gateway"}, live["scenarios"]

    # `stack up` reads the clusters first and puts the replicas back
    rc, up = _tool("stack", "up", "--stack", name)
    assert rc == 0 and up["changed"], up
    with Cluster(hk1.kubeconfig, "hk1") as api:
        assert wait_for(lambda: any(p.ready for p in api.pods(NAMESPACE)), 90, 0.5), api.pods(NAMESPACE)
    rc, live = _tool("capacity", "check", "--live", "--stack", name)
    assert rc == 0 and live["ok"], live


def _rolled_out(api, namespace: str) -> bool:
    deployments = api.deployments(namespace)
    pods = api.pods(namespace)
    return all(d.ready == d.replicas for d in deployments) and len(pods) == sum(d.replicas for d in deployments) \
        and all(p.ready and not p.terminating for p in pods)


def test_the_audit_holds_the_clusters_to_their_controls_and_names_kubernetes_default_eviction(k8s, tmp_path):
    from tradestack.kubernetes.workloads import DEFAULT_EVICTION_S, NAMESPACE
    from tradestack.substrates import registry

    name = k8s["name"]
    controls = ["KUB-01", "KUB-02", "KUB-03", "KUB-04", "RES-06", "SEC-04"]
    rc, doc = _tool("audit", "run", "--stack", name, "--controls", ",".join(controls), "--out", str(tmp_path / "a"))
    # sz1 runs a single gateway (PLACED): its budget (maxUnavailable 1) lets a drain take the site's only replica,
    # which KUB-01 fails; hk1's two pass, and so does every other control
    single = ("sz1: sz1: gateway's budget lets 1 of 1 replicas go at once: a drain can take the site's last serving "
              "replica")
    assert {c["id"]: c["verdict"] for c in doc["controls"]} == {**dict.fromkeys(controls, "pass"), "KUB-01": "fail"}, \
        doc["controls"]
    assert next(c for c in doc["controls"] if c["id"] == "KUB-01")["failed"] == [single]
    assert rc == 1 and not doc["ok"] and doc["headline"] == "FAIL: KUB-01 (high)"

    # hk1's gateways given Kubernetes' default tolerations (what a Deployment gets when it says nothing)
    hk1 = registry.open_stack(name).clusters.sites()["hk1"]
    slow = [{"key": k, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": DEFAULT_EVICTION_S}
            for k in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")]
    with Cluster(hk1.kubeconfig, "hk1") as api:
        api.apps.patch_namespaced_deployment("gateway", NAMESPACE,
                                             {"spec": {"template": {"spec": {"tolerations": slow}}}})
    rc, doc = _tool("audit", "run", "--stack", name, "--controls", "KUB-01", "--out", str(tmp_path / "b"))
    [kub01] = doc["controls"]
    assert rc == 1 and kub01["verdict"] == "fail", kub01
    assert any(f.startswith("hk1:") and "gateway" in f and "300" in f for f in kub01["failed"]), kub01["failed"]
    assert [f for f in kub01["failed"] if f.startswith("sz1:")] == [single], kub01["failed"]
    # `stack up` puts tradestack's settings back
    rc, up = _tool("stack", "up", "--stack", name)
    assert rc == 0 and up["changed"], up
    with Cluster(hk1.kubeconfig, "hk1") as api:
        assert wait_for(lambda: _rolled_out(api, NAMESPACE), 120, 1.0), api.pods(NAMESPACE)
        [d] = api.apps.list_namespaced_deployment(NAMESPACE).items
    assert {t.toleration_seconds for t in d.spec.template.spec.tolerations} == {5}


def _drill(stack: str, name: str) -> dict:
    """Run a catalogue drill; every restore step succeeded, no acknowledged order was lost, and every check passed
    but the timed ones (TIMED: figures of the day, printed), the exit code saying whether all did."""
    drill = with_short_windows(name, Path(tempfile.mkdtemp(prefix="k8s-drill-")))  # the catalogue's, shorter windows
    rc, result = _tool("drill", "run", str(drill), "--stack", stack, timeout=900)
    shutil.rmtree(drill.parent, ignore_errors=True)
    print(f"\n{name}: {result.get('verdict')}; figures {json.dumps(result.get('figures'))}")
    restores = [s for s in result["journal"] if s["name"].startswith("restore")]
    assert restores and all(s["ok"] for s in restores), restores
    lost = next(c for c in result["checks"] if c["check"] == "acknowledged orders lost")
    assert lost["actual"] == 0, result["checks"]
    failed = [c for c in result["checks"] if not c["ok"]]
    assert [c for c in failed if c["check"] not in TIMED] == [], failed
    assert rc == (1 if failed else 0) and result["verdict"] == ("fail" if failed else "pass"), (rc, failed)
    return result


def _hk1_nodes(stack: str) -> tuple[dict[str, int], list[str]]:
    """hk1's ready trading pods per node, and its nodes that are cordoned."""
    from tradestack.kubernetes.substrate import TRADING
    from tradestack.kubernetes.workloads import NAMESPACE
    from tradestack.substrates import registry

    with Cluster(registry.open_stack(stack).clusters.sites()["hk1"].kubeconfig, "hk1") as api:
        per_node: dict[str, int] = {}
        for p in api.pods(NAMESPACE, TRADING):
            if p.ready and not p.terminating and p.node:
                per_node[p.node] = per_node.get(p.node, 0) + 1
        return per_node, [n.name for n in api.nodes() if n.unschedulable]


@pytest.mark.peak
def test_losing_a_sites_node_keeps_the_site_serving_and_evicts_its_pods_in_seconds_with_nothing_lost(k8s):
    from tradestack.kubernetes.workloads import EVICTION_S

    result = _drill(k8s["name"], "site-node-loss")
    # what Kubernetes did, from the API as the drill sampled it: the lost node NotReady after the controller's
    # grace period, its pod evicted our tolerationSeconds later (not Kubernetes' 300 s), a replacement ready on
    # hk1's other node; sz1's cluster did not react
    hk1 = result["figures"]["kubernetes"]["hk1"]
    assert set(result["figures"]["kubernetes"]) == {"hk1"}, result["figures"]["kubernetes"]
    assert hk1["not_ready_s"] is not None and hk1["evicted_s"] is not None, hk1
    assert 0 <= hk1["evicted_s"] - hk1["not_ready_s"] <= EVICTION_S + 6, hk1  # + the taint manager's and our sampling
    # a replacement is made for an evicted pod, so it is never seen ready before the eviction; on a busy machine
    # both can show in the same sample
    assert hk1["replacement_ready_s"] is not None and hk1["replacement_ready_s"] >= hk1["evicted_s"], hk1
    # once the lost node was back, the restore spread the pods over both nodes again
    per_node, cordoned = _hk1_nodes(k8s["name"])
    assert sorted(per_node.values()) == [1, 1] and cordoned == [], per_node


@pytest.mark.peak
def test_deleting_a_sites_pods_through_the_api_is_survived_with_nothing_lost(k8s):
    result = _drill(k8s["name"], "site-pods-deleted")
    # every pod of hk1 went and came back: the Deployment's replacements are ready, spread over both nodes
    assert result["figures"]["kubernetes"]["hk1"]["replacement_ready_s"] is not None, result["figures"]
    per_node, cordoned = _hk1_nodes(k8s["name"])
    assert sorted(per_node.values()) == [1, 1] and cordoned == [], per_node


@pytest.mark.peak
def test_draining_a_node_at_peak_honours_the_budget_and_leaves_the_pods_spread_again(k8s):
    _drill(k8s["name"], "site-node-drain")
    per_node, cordoned = _hk1_nodes(k8s["name"])
    assert sorted(per_node.values()) == [1, 1] and cordoned == [], per_node


@pytest.mark.peak
def test_cutting_a_clusters_api_server_leaves_its_pods_serving(k8s):
    _drill(k8s["name"], "site-api-server-cut")
    # after the cut healed: the node the control plane had given up on is Ready, its evicted pod stopped and
    # replaced, and the pods spread over both nodes again
    per_node, cordoned = _hk1_nodes(k8s["name"])
    assert sorted(per_node.values()) == [1, 1] and cordoned == [], per_node


def test_a_killed_node_component_is_drift_that_refresh_shows_and_up_repairs(k8s):
    from tradestack.lab.stack import LabStack  # the lab's own view: which program runs where (a test may know it)

    spec = LabStack(k8s["name"]).cluster_specs()["sz1"]
    worker = spec.nodes[-1]
    killed = labcluster.kill(spec, worker.component("kube-proxy"))
    assert killed
    rc, refreshed = _tool("stack", "refresh", "--stack", k8s["name"])
    assert rc == 0 and refreshed["changes"].get("update", 0) >= 1, refreshed
    rc, up = _tool("stack", "up", "--stack", k8s["name"])
    assert rc == 0 and up["changed"], up
    assert labcluster.running(spec, worker.component("kube-proxy"))


def test_destroy_removes_the_workloads_the_clusters_and_the_hosts(k8s):
    rc, gone = _tool("stack", "destroy", "--stack", k8s["name"], "--yes")
    assert rc == 0 and gone["leftovers"] == [], gone
    # nothing of the clusters' pods is left machine-wide: libcni's result cache (judged as nothing new but what
    # belongs to another cluster's network: test_lab_cluster.py's, in the other worker, may be adding its own), and
    # no pod namespace in /run/netns (each node keeps its pods' under its own state)
    assert not_others(set(labcluster.CNI_CACHE.glob("*")) - k8s["cni_cache"], f"{k8s['name']}-") == set()
    assert pod_namespaces() - k8s["pod_namespaces"] == set()
    assert _kubeconfigs_in_tmp() == k8s["machine_tmp"]   # the provider's temporary files stayed in Pulumi's own
    from tradestack.kubernetes.stack import WorkloadStack

    assert not WorkloadStack.existing(k8s["name"]).exists()
    assert not any(line.startswith(f"{k8s['name']}-") for line in run(["ip", "netns", "list"]).stdout.splitlines())
