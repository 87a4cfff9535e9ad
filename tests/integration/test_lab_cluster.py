"""A real single-node Kubernetes cluster in a lab namespace: the node goes Ready, pods from a locally built
image run as nobody and answer through their Service (kube-proxy, nftables), and stopping it leaves nothing."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tradestack.adapters.commands import run
from tradestack.adapters.kube import Cluster
from tradestack.kubernetes.images import ImageSpec, build
from tradestack.lab import cluster as labcluster
from tradestack.polling import wait_for

from .conftest import RUN, STACK

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

MGMT_ROOT, MGMT_NODE = "198.19.120.0", "198.19.120.1"  # outside every lab stack's address plan
NODE_IP, LAN_GATEWAY = "198.19.121.10", "198.19.121.1"


def _pod_namespaces() -> set[str]:
    """The CRI's per-pod network namespaces on this machine."""
    return {n.split()[0] for n in run(["ip", "netns", "list"]).stdout.splitlines() if n.startswith("cni-")}


def _ok(argv: list[str]) -> None:
    done = run(argv)
    assert done.succeeded, done.why()


@pytest.fixture
def site(tmp_path: Path):
    """A namespace wired as a lab site's node: a management link from here, a LAN address, a default route."""
    ns, root_if = f"tsk{RUN}", f"tsk{RUN}m"
    _ok(["ip", "netns", "add", ns])
    try:
        _ok(["ip", "link", "add", root_if, "type", "veth", "peer", "name", "mgmt0", "netns", ns])
        _ok(["ip", "addr", "add", f"{MGMT_ROOT}/31", "dev", root_if])
        _ok(["ip", "link", "set", root_if, "up"])
        for argv in (["ip", "link", "set", "lo", "up"], ["ip", "addr", "add", f"{MGMT_NODE}/31", "dev", "mgmt0"],
                     ["ip", "link", "set", "mgmt0", "up"],
                     ["ip", "link", "add", "lan0", "type", "veth", "peer", "name", "lan0p"],
                     ["ip", "addr", "add", f"{NODE_IP}/24", "dev", "lan0"], ["ip", "link", "set", "lan0", "up"],
                     ["ip", "link", "set", "lan0p", "up"],
                     ["ip", "route", "add", "default", "via", LAN_GATEWAY, "dev", "lan0", "onlink"]):
            _ok(["ip", "-n", ns, *argv[1:]])
        spec = labcluster.ClusterSpec(name=f"tsk{RUN}", netns=ns, node=f"tsk{RUN}-node", node_ip=NODE_IP,
                                      api_addresses=(MGMT_NODE, NODE_IP), pod_cidr="198.19.122.0/24",
                                      service_cidr="198.19.123.0/24", directory=tmp_path / "cluster")
        yield spec
    finally:
        if "spec" in locals():
            labcluster.stop(spec)
        run(["ip", "link", "del", root_if])
        run(["ip", "netns", "del", ns])


def _refstack_image(tmp_path: Path):
    """The trading services' image from this checkout (its wheelhouse is the deploy's, cached by source)."""
    from tradestack.deploy import wheelhouse
    from tradestack.kubernetes.pyimage import refstack_image
    from tradestack.paths import cache_dir

    wheels = wheelhouse.build(Path(__file__).resolve().parents[2])
    return refstack_image(wheels.directory, cache_dir() / "images" / "refstack-site", tmp_path / "images", "it")


def _web_image(tmp_path: Path) -> str:
    page = tmp_path / "index.html"
    page.write_text("served from a pod\n")
    spec = ImageSpec("tradestack.local/web-probe:1", {"bin/busybox": Path("/bin/busybox"), "www/index.html": page},
                     ("/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"))
    return str(build(spec, tmp_path / "images").archive)


def test_a_cluster_in_a_namespace_runs_pods_that_serve_and_stops_clean(site: labcluster.ClusterSpec, tmp_path: Path):
    cni_cache, pod_namespaces = set(labcluster.CNI_CACHE.glob("*")), _pod_namespaces()
    kubeconfig = labcluster.start(site, [Path(_web_image(tmp_path))])
    with Cluster(kubeconfig, site.name) as api:
        assert wait_for(lambda: any(n.ready for n in api.nodes()), 120, 1.0), api.nodes()
        [node] = api.nodes()
        assert NODE_IP in node.addresses
        labels = {"app": "web"}
        api.create({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
                    "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": {
                        "metadata": {"labels": labels},
                        "spec": {"automountServiceAccountToken": False,
                                 "securityContext": {"runAsNonRoot": True, "runAsUser": 65534},
                                 "containers": [{"name": "web", "image": "tradestack.local/web-probe:1",
                                                 "imagePullPolicy": "Never", "ports": [{"containerPort": 8080}],
                                                 "readinessProbe": {"tcpSocket": {"port": 8080},
                                                                    "periodSeconds": 1}}]}}}})
        api.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
                    "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}})
        assert wait_for(lambda: sum(p.ready for p in api.pods("default", "app=web")) == 2, 120, 1.0), \
            api.pods("default", "app=web")
        pods = api.pods("default", "app=web")
        service = api.service_ip("default", "web")
    assert all(p.ip and p.ip.startswith("198.19.122.") for p in pods), pods

    def fetch(url: str) -> str:
        return run(["nsenter", f"--net=/run/netns/{site.netns}", "curl", "-s", "--max-time", "2", url]).stdout

    assert fetch(f"http://{pods[0].ip}:8080/") == "served from a pod\n"
    # through the Service: kube-proxy's nftables rules in the node's namespace
    assert wait_for(lambda: fetch(f"http://{service}/") == "served from a pod\n", 30, 0.5)
    owners = run(["ps", "-o", "user=", "-C", "busybox"]).stdout.split()
    assert owners and set(owners) == {"nobody"}, owners

    assert labcluster.stop(site) == []
    assert run(["ps", "-o", "pid=", "-C", "busybox"]).stdout.strip() == ""
    assert set(labcluster.CNI_CACHE.glob("*")) == cni_cache  # nothing of ours left in libcni's shared cache
    assert _pod_namespaces() == pod_namespaces
    assert not site.run_dir.exists()


TOPOLOGY = """\
name: k8s-lab
peak: {orders_per_second: 10, sessions: 10}
headroom: 1.25
carriers: [{name: ct}, {name: cu}]
sites:
  - name: sz1
    role: active
    risk_groups: [power:sz-grid]
    uplinks: [{carrier: ct, risk_groups: [facility:ct-a]}, {carrier: cu, risk_groups: [facility:cu-a]}]
  - name: wit
    role: witness
    risk_groups: [power:wit-grid]
    uplinks: [{carrier: ct, risk_groups: [facility:ct-b]}]
upstreams: [{name: exchange}]
services:
  - {name: gateway, kind: stateless, capacity: {orders_per_second: 60, sessions: 400}, placement: {sz1: 1}}
  - {name: consensus, kind: quorum, placement: {sz1: 1, wit: 1}}
"""


@dataclass(frozen=True)
class SmallLab:
    stack: Any
    cni_cache: set[Path]          # libcni's shared cache and the CRI's pod namespaces before the lab came up
    pod_namespaces: set[str]


@pytest.fixture(scope="module")
def lab_with_clusters(tmp_path_factory: pytest.TempPathFactory):
    """A small lab of its own, brought up with clusters: one in sz1 (it runs a stateless service), none in the
    witness site. The last test destroys it and checks what is left; the fixture removes it otherwise."""
    from tradestack.lab.plan import MGMT_SLOTS, default_mgmt_slot
    from tradestack.lab.stack import LabStack

    topology = tmp_path_factory.mktemp("k8s-lab") / "k8s-lab.yaml"
    topology.write_text(TOPOLOGY)
    # a management network of its own: never the session lab's, whose slot comes from its name
    slot = (default_mgmt_slot(STACK) + 1) % MGMT_SLOTS
    stack = LabStack(f"k{RUN}", topology, mgmt_slot=slot, clusters=True)
    try:
        yield SmallLab(stack, set(labcluster.CNI_CACHE.glob("*")), _pod_namespaces())
    finally:
        if stack.exists():
            stack.destroy()


def test_pulumi_applies_the_trading_services_to_a_site_cluster_previews_no_change_and_destroys(
        lab_with_clusters, tmp_path: Path):
    from tradestack.capacity.live import check_live
    from tradestack.kubernetes.observe import observe
    from tradestack.kubernetes.stack import WorkloadStack
    from tradestack.topology import load_topology
    from tradestack.kubernetes.workloads import NAMESPACE, EVICTION_S

    lab = lab_with_clusters.stack
    lab.up()
    [spec] = lab.cluster_specs().values()
    image = _refstack_image(tmp_path)
    labcluster.import_images(spec, [image.archive])
    # no database in this small lab: the gateway runs and is alive, and says it is not ready (so the apply does
    # not wait for readiness here; a real apply does)
    gateway = {"instance": "gateway-1", "host": "0.0.0.0", "port": 8080,
               "dsn": "postgresql://nobody:none@198.18.1.99:5432/orders?connect_timeout=1"}
    workloads = WorkloadStack(f"w{RUN}", Path(lab.topology_path()), lab.kubeconfigs(), image.name,
                              {"sz1": {"gateway": json.dumps(gateway)}}, await_ready=False)
    try:
        first = workloads.up()
        assert first.outputs["applied"]["sz1"] == [
            "Deployment/gateway", "Namespace/tradestack", "PodDisruptionBudget/gateway",
            "PriorityClass/tradestack-trading", "Secret/gateway-config", "Service/gateway"], first.outputs
        with Cluster(lab.kubeconfigs()["sz1"], "sz1") as api:
            assert wait_for(lambda: any(p.phase == "Running" for p in api.pods(NAMESPACE)), 90, 0.5), \
                api.pods(NAMESPACE)
            [pod] = api.pods(NAMESPACE)
            deployment = api.apps.read_namespaced_deployment("gateway", NAMESPACE)
        assert pod.labels["tradestack.io/site"] == "sz1" and not pod.ready  # no database: not ready, rightly
        tolerations = {t.key: t.toleration_seconds for t in deployment.spec.template.spec.tolerations}
        assert tolerations == {"node.kubernetes.io/not-ready": EVICTION_S, "node.kubernetes.io/unreachable": EVICTION_S}
        host = f"{lab.name}-sz1-gateway-1"
        alive = run(["ip", "netns", "exec", host, "curl", "-s", "--max-time", "3", f"http://{pod.ip}:8080/healthz"])
        assert alive.succeeded and alive.stdout, alive.why()
        assert not workloads.preview().changed  # a second run changes nothing
        # capacity as the cluster runs it: the gateway is deployed with its declared request, but not ready, so
        # the live check fails and names it
        live = check_live(load_topology(lab.topology_path()), observe(lab.kubeconfigs()))
        assert live.problems == [] and live.ready == {"gateway": {"sz1": 0}}, live
        # with every site up, only the gateway falls short (this small topology's two consensus members fail
        # anyway once one site is lost)
        intact = next(i for i in range(live.report.scenario_count) if not live.report.failed_groups(i))
        assert not live.ok and {live.report.services[j].name for j in range(len(live.report.services))
                                if live.report.reasons[intact, j]} == {"gateway"}
        # and as an SRE asks it
        done = run([sys.executable, "-m", "tradestack", "capacity", "check", "--live", "--stack", lab.name, "--json"],
                   timeout=120)
        assert done.rc == 1, done.why()
        doc = json.loads(done.stdout)
        assert doc["ok"] is False and doc["live"]["ready"] == {"gateway": {"sz1": 0}}
        [everything_up] = [s for s in doc["scenarios"] if not s["failed"]]
        assert {name for name, svc in everything_up["services"].items() if not svc["ok"]} == {"gateway"}
    finally:
        gone = workloads.destroy()
    assert gone.changes.get("delete", 0) >= 7, gone.changes
    with Cluster(lab.kubeconfigs()["sz1"], "sz1") as api:
        assert wait_for(lambda: not api.pods(NAMESPACE), 60, 0.5)


def test_a_lab_stack_runs_a_cluster_per_site_that_serves_the_site_and_heals_and_goes(lab_with_clusters, tmp_path):
    stack = lab_with_clusters.stack
    stack.up()
    assert set(stack.kubeconfigs()) == {"sz1"}  # wit runs no stateless service: no cluster there
    [spec] = stack.cluster_specs().values()
    labcluster.import_images(spec, [Path(_web_image(tmp_path))])
    with Cluster(stack.kubeconfigs()["sz1"], "sz1") as api:  # over the management network, as an operator
        [node] = api.nodes()
        assert node.ready and spec.node_ip in node.addresses
        api.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"},
                    "spec": {"automountServiceAccountToken": False,
                             "securityContext": {"runAsNonRoot": True, "runAsUser": 65534},
                             "containers": [{"name": "web", "image": "tradestack.local/web-probe:1",
                                             "imagePullPolicy": "Never"}]}})
        assert wait_for(lambda: any(p.ready for p in api.pods("default")), 60, 0.5), api.pods("default")
        [pod] = api.pods("default")
    # a host of the site reaches the pod through its edge, which routes the site's pod range to the node
    host = f"{stack.name}-sz1-gateway-1"
    fetched = run(["ip", "netns", "exec", host, "curl", "-s", "--max-time", "3", f"http://{pod.ip}:8080/"])
    assert fetched.stdout == "served from a pod\n", fetched.why()

    # a trading service from the image built from this checkout: the venue simulator (it needs no database)
    venue = {"name": "exchange", "host": "0.0.0.0", "port": 9001, "admin_port": 9101}
    labcluster.import_images(spec, [_refstack_image(tmp_path).archive])
    with Cluster(stack.kubeconfigs()["sz1"], "sz1") as api:
        api.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "venue", "namespace": "default"},
                    "data": {"venue.json": json.dumps(venue)}})
        api.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "venue", "namespace": "default",
                                                                    "labels": {"app": "venue"}},
                    "spec": {"automountServiceAccountToken": False,
                             "securityContext": {"runAsNonRoot": True, "runAsUser": 65534},
                             "volumes": [{"name": "config", "configMap": {"name": "venue"}}],
                             "containers": [{"name": "venue", "image": "tradestack.local/refstack:it",
                                             "imagePullPolicy": "Never",
                                             "args": ["venue", "--config", "/etc/tradestack/venue.json"],
                                             "volumeMounts": [{"name": "config", "mountPath": "/etc/tradestack"}],
                                             "readinessProbe": {"httpGet": {"path": "/healthz", "port": 9101},
                                                                "periodSeconds": 1}}]}})
        assert wait_for(lambda: any(p.ready for p in api.pods("default", "app=venue")), 90, 0.5), \
            api.pods("default", "app=venue")
        [venue_pod] = api.pods("default", "app=venue")
    health = run(["ip", "netns", "exec", host, "curl", "-s", "--max-time", "3",
                  f"http://{venue_pod.ip}:9101/healthz"])
    assert json.loads(health.stdout) == {"status": "ok", "venue": "exchange"}, health.why()

    assert not stack.refresh().changed
    kubelet = labcluster.running(spec, "kubelet")
    assert kubelet
    run(["kill", str(kubelet)])
    assert wait_for(lambda: labcluster.running(spec, "kubelet") is None, 10)
    drift = stack.refresh()
    assert drift.changes.get("update") == 1, drift.changes
    stack.up()
    assert labcluster.running(spec, "kubelet")

    stack.destroy()
    assert stack.leftovers() == [] and labcluster.leftovers(spec) == []
    assert not spec.directory.exists()
    assert set(labcluster.CNI_CACHE.glob("*")) == lab_with_clusters.cni_cache
    assert _pod_namespaces() == lab_with_clusters.pod_namespaces
