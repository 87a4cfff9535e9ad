"""A lab cluster's configuration: what this machine needs of it, and one version everywhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tradestack.lab import cluster, clusterpki

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def _spec(tmp_path: Path) -> cluster.ClusterSpec:
    return cluster.ClusterSpec(name="t1-sz1", netns="t1-sz1-k8s", node="t1-sz1-node", node_ip="198.18.1.250",
                               api_addresses=("198.19.128.40", "198.18.1.250"), pod_cidr="198.19.65.0/24",
                               service_cidr="198.19.97.0/24", directory=tmp_path / "c")


def test_the_version_run_is_the_version_built():
    script = (ROOT / "infra" / "toolchain" / "build-kubernetes.sh").read_text()
    assert re.search(r'KUBERNETES_VERSION:-([0-9.]+)', script).group(1) == cluster.KUBERNETES_VERSION


def test_sockets_live_under_a_short_path_whatever_the_directory(tmp_path: Path):
    spec = _spec(tmp_path / ("deep" * 30))
    # the kubelet's pod-resources socket is the longest it makes: <root>/pod-resources/<10 digits>
    assert len(str(spec.run_dir / "kubelet" / "pod-resources" / "1234567890")) < 107
    assert len(str(spec.cri_socket) + ".ttrpc") < 107


def test_the_kubelet_fits_hybrid_cgroups_without_systemd_and_serves_only_authenticated_callers(tmp_path: Path):
    spec = _spec(tmp_path)
    config = cluster.kubelet_config(spec, clusterpki.Pki(tmp_path / "pki"))
    assert config["cgroupDriver"] == "cgroupfs" and config["cgroupsPerQOS"] is False
    assert config["enforceNodeAllocatable"] == []
    assert config["authentication"]["anonymous"] == {"enabled": False} and config["readOnlyPort"] == 0
    assert config["containerRuntimeEndpoint"] == f"unix://{spec.cri_socket}"


def test_containerd_keeps_to_the_cluster_and_never_raises_oom_scores(tmp_path: Path):
    spec = _spec(tmp_path)
    text = cluster.containerd_config(spec.nodes[0])
    assert "restrict_oom_score_adj = true" in text and "SystemdCgroup = false" in text
    assert f'address = "{spec.cri_socket}"' in text and f'address = "{spec.cri_socket}.ttrpc"' in text
    assert f'conf_dir = "{spec.directory / "cni" / "net.d"}"' in text
    # pods' network namespaces under the node's state (containerd 1.6 puts them at <state>/<cri plugin>/netns)
    assert "netns_mounts_under_state_dir = true" in text
    assert f'state = "{spec.run_dir / "containerd"}"' in text
    assert spec.nodes[0].pod_netns_dir == spec.run_dir / "containerd" / "io.containerd.grpc.v1.cri" / "netns"


def test_pods_are_routed_from_the_site_range_with_ipam_of_their_own(tmp_path: Path):
    spec = _spec(tmp_path)
    net = cluster.cni_network(spec)
    bridge = net["plugins"][0]
    assert net["name"] == "t1-sz1-pods" and bridge["ipMasq"] is False
    assert bridge["ipam"]["dataDir"] == str(spec.directory / "cni" / "ipam")
    assert bridge["ipam"]["ranges"] == [[{"subnet": "198.19.65.0/24", "gateway": "198.19.65.1"}]]


def test_certificates_name_what_rbac_expects_and_kubeconfigs_carry_them(tmp_path: Path):
    from cryptography import x509

    pki = clusterpki.ensure(tmp_path / "pki", "t1-sz1", "t1-sz1-node", ["198.19.128.40", "198.18.1.250"],
                            "198.19.97.1")
    node = x509.load_pem_x509_certificate(pki.crt("node").read_bytes())
    assert node.subject.rfc4514_string() == "O=system:nodes,CN=system:node:t1-sz1-node"
    served = x509.load_pem_x509_certificate(pki.crt("apiserver").read_bytes())
    sans = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {
        "198.19.128.40", "198.18.1.250", "127.0.0.1", "198.19.97.1"}
    assert oct(pki.key("ca").stat().st_mode & 0o777) == "0o600"
    config = yaml.safe_load(clusterpki.kubeconfig(pki, "admin", "https://198.19.128.40:6443", "t1-sz1"))
    assert config["clusters"][0]["cluster"]["server"] == "https://198.19.128.40:6443"
    assert config["users"][0]["user"]["client-certificate-data"]
    again = clusterpki.ensure(tmp_path / "pki", "t1-sz1", "t1-sz1-node", ["198.19.128.40"], "198.19.97.1")
    assert again.crt("ca").read_bytes() == pki.crt("ca").read_bytes()  # kept: kubeconfigs handed out stay valid


def test_a_second_node_gets_half_the_pod_range_its_own_runtime_and_reaches_the_api_over_management(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import dataclasses
    import json

    monkeypatch.setattr(cluster, "RUN_ROOT", tmp_path / "run")  # nothing written machine-wide

    spec = dataclasses.replace(_spec(tmp_path), workers=(cluster.Worker("t1-sz1-node2", "t1-sz1-k8s2",
                                                                        "198.18.1.251"),))
    first, second = spec.nodes
    assert (first.pod_subnet, second.pod_subnet) == ("198.19.65.0/25", "198.19.65.128/25")
    assert second.cri_socket == spec.run_dir / "w1" / "containerd.sock" and second.netns == "t1-sz1-k8s2"
    assert spec.components == [*cluster.CONTROL_PLANE, "containerd", "kubelet", "kube-proxy",
                               "containerd@w1", "kubelet@w1", "kube-proxy@w1"]
    bridge = cluster.cni_network(spec, second)["plugins"][0]
    assert bridge["ipam"]["ranges"] == [[{"subnet": "198.19.65.128/25", "gateway": "198.19.65.129"}]]
    assert cluster.kubelet_config(spec, clusterpki.Pki(tmp_path / "pki"), second)["address"] == "198.18.1.251"
    assert cluster.from_props(json.loads(json.dumps(cluster.props(spec)))) == spec
    pki = clusterpki.ensure(tmp_path / "pki", spec.name, spec.node, ["198.19.128.40", "198.18.1.250"], spec.service_ip)
    cluster._write_configs(spec, pki)
    worker = yaml.safe_load((second.directory / "node@w1.kubeconfig").read_text())
    assert worker["clusters"][0]["cluster"]["server"] == "https://198.19.128.40:6443"  # management, not its LAN
    assert worker["users"][0]["name"] == "node@w1"
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(pki.crt("node@w1").read_bytes())
    assert cert.subject.rfc4514_string() == "O=system:nodes,CN=system:node:t1-sz1-node2"
