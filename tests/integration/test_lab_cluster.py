"""A real single-node Kubernetes cluster in a lab namespace: the node goes Ready, pods from a locally built
image run as nobody and answer through their Service (kube-proxy, nftables), and stopping it leaves nothing.
Clusters as a lab stack brings them up, two nodes per site, are proven in test_k8s_substrate.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradestack.adapters.commands import run
from tradestack.adapters.kube import Cluster
from tradestack.builds.images import ImageSpec, build
from tradestack.lab import cluster as labcluster
from tradestack.polling import wait_for

from .cni import not_others, pod_namespaces
from .conftest import RUN

pytestmark = [pytest.mark.integration, pytest.mark.heavy, pytest.mark.timeout(420)]

MGMT_ROOT, MGMT_NODE = "198.19.120.0", "198.19.120.1"  # outside every lab stack's address plan
NODE_IP, LAN_GATEWAY = "198.19.121.10", "198.19.121.1"


def test_cache_entries_of_another_clusters_sandboxes_are_not_ours():
    sandbox, other = "a" * 64, "b" * 64
    cached = {Path(f"/c/kad1-hk1-pods-{other}-eth0"), Path(f"/c/cni-loopback-{other}-lo"),
              Path(f"/c/tsk1-pods-{sandbox}-eth0"), Path(f"/c/cni-loopback-{sandbox}-lo"), Path("/c/stray")}
    assert not_others(cached, "tsk1-pods") == {Path(f"/c/tsk1-pods-{sandbox}-eth0"),
                                               Path(f"/c/cni-loopback-{sandbox}-lo"), Path("/c/stray")}
    assert not_others({Path(f"/c/cni-loopback-{sandbox}-lo")}, "tsk1-pods") == {Path(f"/c/cni-loopback-{sandbox}-lo")}


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


def _web_image(tmp_path: Path) -> str:
    page = tmp_path / "index.html"
    page.write_text("served from a pod\n")
    spec = ImageSpec("tradestack.local/web-probe:1", {"bin/busybox": Path("/bin/busybox"), "www/index.html": page},
                     ("/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"))
    return str(build(spec, tmp_path / "images").archive)


def test_a_cluster_in_a_namespace_runs_pods_that_serve_and_stops_clean(site: labcluster.ClusterSpec, tmp_path: Path):
    cni_cache, pod_namespaces_before = set(labcluster.CNI_CACHE.glob("*")), pod_namespaces()
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
    # each pod's network namespace under the node's own state, none in the machine-wide /run/netns
    assert len(list(site.nodes[0].pod_netns_dir.glob("cni-*"))) == 2, list(site.nodes[0].pod_netns_dir.glob("*"))
    assert pod_namespaces() - pod_namespaces_before == set()

    def fetch(url: str) -> str:
        return run(["nsenter", f"--net=/run/netns/{site.netns}", "curl", "-s", "--max-time", "2", url]).stdout

    assert fetch(f"http://{pods[0].ip}:8080/") == "served from a pod\n"
    # through the Service: kube-proxy's nftables rules in the node's namespace
    assert wait_for(lambda: fetch(f"http://{service}/") == "served from a pod\n", 30, 0.5)
    owners = run(["ps", "-o", "user=", "-C", "busybox"]).stdout.split()
    assert owners and set(owners) == {"nobody"}, owners

    assert labcluster.stop(site) == []
    assert run(["ps", "-o", "pid=", "-C", "busybox"]).stdout.strip() == ""
    # nothing of ours left in libcni's shared cache (another worker's cluster may be adding and removing its own
    # meanwhile: judged as nothing new but what belongs to another cluster's network), nor in /run/netns
    assert not_others(set(labcluster.CNI_CACHE.glob("*")) - cni_cache, f"{site.name}-pods") == set()
    assert pod_namespaces() - pod_namespaces_before == set()
    assert not site.run_dir.exists()
