"""A real single-node Kubernetes cluster inside one lab namespace: etcd, kube-apiserver, controller-manager,
scheduler, containerd (runc, CNI bridge), kubelet and kube-proxy (nftables), the real programs.

Every program is started with `nsenter --net` (not `ip netns exec`, which also makes a mount namespace and
remounts /sys, hiding the cgroup mounts from the kubelet and containerd). Each cluster keeps everything under
its own directory: etcd data, containerd root, state and sockets, CNI configuration and IPAM data, kubelet
root, pod logs, certificates, the pods' network namespaces. What containerd and CNI keep machine-wide
(/run/containerd/runc/k8s.io, the CNI result cache) is keyed by container id and removed with the cluster.

What this machine needs and why (probed; see README "Kubernetes in the lab"): cgroups are hybrid v1, so the
kubelet is v1.34 (the last to run on v1 unprompted) with the cgroupfs driver and no per-QoS cgroups; root
lacks CAP_SYS_RESOURCE, so containerd may not raise OOM scores; no iptables, so kube-proxy runs in nftables
mode; kube-proxy waits for the node to have an address, so the node has its LAN address and a default route.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import tarfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..adapters.commands import run
from ..errors import EnvironmentProblem
from ..builds.images import ImageSpec, build
from ..paths import cache_dir
from ..polling import wait_for
from . import clusterpki
from .netlink import LabError, alive
from .plan import ClusterNode

KUBERNETES_VERSION = "1.34.4"  # infra/toolchain/build-kubernetes.sh builds this one
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
NODE_COMPONENTS = ("containerd", "kubelet", "kube-proxy")
COMPONENTS = (*CONTROL_PLANE, *NODE_COMPONENTS)   # a single-node cluster's
PAUSE_IMAGE = "tradestack.local/pause:3.10"
CNI_BIN = "/usr/lib/cni"
RUN_ROOT = Path("/run/tradestack-k8s")
CNI_CACHE = Path("/var/lib/cni/results")


@dataclass(frozen=True)
class Worker:
    """A second node of a site's cluster: kubelet, containerd and kube-proxy in a namespace of its own, reaching
    the API server over the management network (so losing either node's LAN leaves the other one in touch)."""

    node: str
    netns: str
    node_ip: str


@dataclass(frozen=True)
class NodeRuntime:
    """Where one node's runtime lives: containerd, the CNI bridge, the kubelet, kube-proxy."""

    key: str                  # "" for the control-plane node, else the worker's number ("w1")
    node: str
    netns: str
    node_ip: str
    pod_subnet: str           # its share of the cluster's pod range
    directory: Path
    run_dir: Path

    @property
    def cri_socket(self) -> Path:
        return self.run_dir / "containerd.sock"

    @property
    def pod_netns_dir(self) -> Path:
        """Where the CRI mounts its pods' network namespaces: under the node's own state, never the machine-wide
        /run/netns (containerd's `netns_mounts_under_state_dir`), so they go with the node and no other cluster on
        the machine sees them."""
        return self.run_dir / "containerd" / "io.containerd.grpc.v1.cri" / "netns"

    def component(self, name: str) -> str:
        """A component's name in the cluster: `kubelet` on the first node, `kubelet@w1` on a worker."""
        return f"{name}@{self.key}" if self.key else name


@dataclass(frozen=True)
class ClusterSpec:
    """Where a site's cluster lives: its namespace (already wired), addresses and directory."""

    name: str                 # e.g. "t1-sz1": the cluster, its CA and kubeconfig context
    netns: str
    node: str                 # the control-plane node's name (it runs pods too)
    node_ip: str              # its address on the site LAN (the kubelet's and kube-proxy's)
    api_addresses: tuple[str, ...]   # where the API server is reached (management, LAN)
    pod_cidr: str
    service_cidr: str
    directory: Path
    workers: tuple[Worker, ...] = ()

    @property
    def nodes(self) -> list[NodeRuntime]:
        """Every node, the control-plane node first; the pod range is shared out between them."""
        import ipaddress

        subnets = list(ipaddress.ip_network(self.pod_cidr).subnets(
            prefixlen_diff=max(0, (len(self.workers)).bit_length())))
        first = NodeRuntime("", self.node, self.netns, self.node_ip, str(subnets[0]), self.directory, self.run_dir)
        return [first] + [NodeRuntime(f"w{i}", w.node, w.netns, w.node_ip, str(subnets[i]),
                                      self.directory / f"w{i}", self.run_dir / f"w{i}")
                          for i, w in enumerate(self.workers, start=1)]

    @property
    def components(self) -> list[str]:
        """Every program the cluster runs, by its name here (what `running` and the lab stack check)."""
        return [*CONTROL_PLANE, *(n.component(c) for n in self.nodes for c in NODE_COMPONENTS)]

    @property
    def service_ip(self) -> str:
        network = self.service_cidr.split("/")[0].rsplit(".", 1)[0]
        return f"{network}.1"

    @property
    def server(self) -> str:
        """The API server as the operator reaches it: the first of `api_addresses` (management)."""
        return f"https://{self.api_addresses[0]}:6443"

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig, everything inline: what the lab hands to the kubernetes substrate."""
        return self.directory / "admin.kubeconfig"

    @property
    def run_dir(self) -> Path:
        """Sockets, pidfiles and the kubelet's root: a short path (unix sockets take at most 107 bytes)."""
        return RUN_ROOT / self.name

    @property
    def cri_socket(self) -> Path:
        return self.run_dir / "containerd.sock"


def spec_for(stack: str, node: ClusterNode, workdir: Path) -> ClusterSpec:
    """The cluster the lab runs for a planned site node (the program declares it, tests and tools find it)."""
    name = f"{stack}-{node.site}"
    workers = tuple(Worker(f"{name}-node{i}", ns, ip) for i, (ns, ip, _) in enumerate(node.workers, start=2))
    return ClusterSpec(name, node.netns, f"{name}-node", node.node_ip, (node.mgmt_ip, node.node_ip), node.pod_cidr,
                       node.service_cidr, workdir / node.netns / "cluster", workers)


def props(spec: ClusterSpec) -> dict[str, object]:
    """The spec as a Pulumi resource's inputs (plain values), and back with `from_props`."""
    return {"name": spec.name, "netns": spec.netns, "node": spec.node, "node_ip": spec.node_ip,
            "api_addresses": list(spec.api_addresses), "pod_cidr": spec.pod_cidr, "service_cidr": spec.service_cidr,
            "directory": str(spec.directory),
            "workers": [{"node": w.node, "netns": w.netns, "node_ip": w.node_ip} for w in spec.workers]}


def from_props(values: dict[str, Any]) -> ClusterSpec:
    return ClusterSpec(values["name"], values["netns"], values["node"], values["node_ip"],
                       tuple(values["api_addresses"]), values["pod_cidr"], values["service_cidr"],
                       Path(values["directory"]),
                       tuple(Worker(w["node"], w["netns"], w["node_ip"]) for w in values.get("workers") or []))


def kube_bin() -> Path:
    """The multi-call binary built by `make setup-kubernetes` (infra/toolchain/build-kubernetes.sh)."""
    path = cache_dir() / "kubernetes" / f"v{KUBERNETES_VERSION}" / "bin"
    if not (path / "kube").exists():
        raise EnvironmentProblem(f"Kubernetes v{KUBERNETES_VERSION} is not built ({path / 'kube'} missing): run "
                                 "`make setup-kubernetes` (about 10 min the first time)")
    return path


def toolchain_problems() -> list[str]:
    """What this machine lacks to run the lab's clusters (empty: nothing): checked before a stack with clusters
    is brought up, so that nothing is half-created for want of a program."""
    problems = []
    for check in (kube_bin, *(lambda p=p: _need(p) for p in ("containerd", "ctr", "runc"))):
        try:
            check()
        except EnvironmentProblem as exc:
            problems.append(str(exc))
    if not (Path(CNI_BIN) / "bridge").exists():
        problems.append(f"the CNI plugins are not installed ({CNI_BIN}/bridge missing): run `make setup-kubernetes`")
    return problems


def _need(program: str) -> str:
    found = shutil.which(program) or (f"/usr/sbin/{program}" if Path(f"/usr/sbin/{program}").exists() else None)
    if not found:
        raise EnvironmentProblem(f"{program} is not installed: run `make setup-kubernetes`")
    return found


def containerd_config(node: NodeRuntime) -> str:
    d = node.directory / "containerd"
    disabled = ", ".join(f'"{p}"' for p in (
        "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
        "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp",
        "io.containerd.internal.v1.tracing"))
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{d / 'root'}"
state = "{node.run_dir / 'containerd'}"
disabled_plugins = [{disabled}]
[grpc]
  address = "{node.cri_socket}"
[ttrpc]
  address = "{node.cri_socket}.ttrpc"
[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{node.directory / 'cni' / 'net.d'}"
"""


def cni_network(spec: ClusterSpec, node: NodeRuntime | None = None) -> dict[str, object]:
    """Pods on a bridge in the node's namespace, routed (no NAT: the site routes each node's share of the pod
    range to that node)."""
    node = node or spec.nodes[0]
    import ipaddress

    gateway = str(ipaddress.ip_network(node.pod_subnet).network_address + 1)
    return {"cniVersion": "0.4.0", "name": f"{spec.name}-pods", "plugins": [
        {"type": "bridge", "bridge": "kpods0", "isGateway": True, "ipMasq": False, "hairpinMode": True,
         "ipam": {"type": "host-local", "dataDir": str(node.directory / "cni" / "ipam"),
                  "ranges": [[{"subnet": node.pod_subnet, "gateway": gateway}]], "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "loopback"}]}


def kubelet_config(spec: ClusterSpec, pki: clusterpki.Pki, node: NodeRuntime | None = None) -> dict[str, object]:
    node = node or spec.nodes[0]
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs", "cgroupsPerQOS": False, "enforceNodeAllocatable": [], "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{node.cri_socket}",
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(pki.crt("ca"))}},
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(pki.crt(node.component("kubelet"))),
        "tlsPrivateKeyFile": str(pki.key(node.component("kubelet"))),
        "address": node.node_ip, "port": 10250, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
        "makeIPTablesUtilChains": False, "localStorageCapacityIsolation": False, "protectKernelDefaults": False,
        "resolvConf": "", "serializeImagePulls": False,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "podLogsDir": str(node.directory / "kubelet" / "pod-logs"),
        "nodeStatusUpdateFrequency": "2s",
    }


def commands(spec: ClusterSpec, pki: clusterpki.Pki) -> dict[str, list[str]]:
    """Each component's argv (without the namespace entry)."""
    k = kube_bin()
    d = spec.directory
    kc = {name: str(d / f"{name}.kubeconfig") for name in ("controller-manager", "scheduler", "kube-proxy", "node")}
    argv = {
        "etcd": [_need("etcd"), "--name", spec.node, "--data-dir", str(d / "etcd"),
                 "--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
                 "--listen-peer-urls", "http://127.0.0.1:2380",
                 "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
                 "--initial-cluster", f"{spec.node}=http://127.0.0.1:2380", "--log-level", "warn"],
        "kube-apiserver": [
            str(k / "kube-apiserver"), "--etcd-servers=http://127.0.0.1:2379", "--bind-address=0.0.0.0",
            f"--advertise-address={spec.node_ip}", "--secure-port=6443",
            f"--tls-cert-file={pki.crt('apiserver')}", f"--tls-private-key-file={pki.key('apiserver')}",
            f"--client-ca-file={pki.crt('ca')}", "--authorization-mode=Node,RBAC",
            f"--kubelet-client-certificate={pki.crt('apiserver-kubelet-client')}",
            f"--kubelet-client-key={pki.key('apiserver-kubelet-client')}",
            f"--service-cluster-ip-range={spec.service_cidr}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki.directory / 'sa.pub'}",
            f"--service-account-signing-key-file={pki.key('sa')}",
            "--enable-admission-plugins=NodeRestriction,PodSecurity", "--profiling=false"],
        "kube-controller-manager": [
            str(k / "kube-controller-manager"), f"--kubeconfig={kc['controller-manager']}",
            f"--authentication-kubeconfig={kc['controller-manager']}",
            f"--authorization-kubeconfig={kc['controller-manager']}",
            "--bind-address=127.0.0.1", f"--service-account-private-key-file={pki.key('sa')}",
            f"--root-ca-file={pki.crt('ca')}", "--use-service-account-credentials=true", "--leader-elect=false",
            "--controllers=*,-nodeipam,-cloud-node-lifecycle", "--profiling=false"],
        "kube-scheduler": [
            str(k / "kube-scheduler"), f"--kubeconfig={kc['scheduler']}",
            f"--authentication-kubeconfig={kc['scheduler']}", f"--authorization-kubeconfig={kc['scheduler']}",
            "--bind-address=127.0.0.1", "--leader-elect=false", "--profiling=false"],
    }
    for node in spec.nodes:
        nd = node.directory
        argv[node.component("containerd")] = [_need("containerd"), "--config", str(nd / "containerd" / "config.toml")]
        argv[node.component("kubelet")] = [
            str(k / "kubelet"), f"--config={nd / 'kubelet' / 'config.json'}",
            f"--kubeconfig={nd / (node.component('node') + '.kubeconfig')}",
            f"--root-dir={node.run_dir / 'kubelet'}", f"--cert-dir={nd / 'kubelet' / 'pki'}",
            f"--hostname-override={node.node}", f"--node-ip={node.node_ip}"]
        argv[node.component("kube-proxy")] = [
            str(k / "kube-proxy"), f"--kubeconfig={nd / 'kube-proxy.kubeconfig'}", "--proxy-mode=nftables",
            f"--hostname-override={node.node}", f"--bind-address={node.node_ip}",
            f"--cluster-cidr={spec.pod_cidr}", "--conntrack-max-per-core=0",
            "--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0",
            "--metrics-bind-address=127.0.0.1:10249", "--healthz-bind-address=127.0.0.1:10256"]
    return argv


def _netns(spec: ClusterSpec, component: str) -> str:
    """The namespace a component runs in: its node's (the control plane runs on the first node)."""
    key = component.partition("@")[2]
    return next(n.netns for n in spec.nodes if n.key == key)


def _pidfile(spec: ClusterSpec, component: str) -> Path:
    return spec.run_dir / f"{component}.pid"


def running(spec: ClusterSpec, component: str) -> int | None:
    """The component's pid when it runs (its pidfile names a live process started with our command)."""
    try:
        pid = int(_pidfile(spec, component).read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid if any(str(spec.directory).encode() in part or str(spec.run_dir).encode() in part
                      for part in cmdline) else None


def _spawn(spec: ClusterSpec, component: str, argv: list[str]) -> None:
    if running(spec, component):
        return
    log = (spec.directory / "logs" / f"{component}.log").open("ab")
    proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{_netns(spec, component)}", *argv], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    log.close()
    _pidfile(spec, component).write_text(str(proc.pid))


def _api_ready(spec: ClusterSpec, pki: clusterpki.Pki) -> bool:
    """/readyz over the management address, as the operator will reach it."""
    context = ssl.create_default_context(cafile=str(pki.crt("ca")))
    context.load_cert_chain(str(pki.crt("admin")), str(pki.key("admin")))
    try:
        with urllib.request.urlopen(f"{spec.server}/readyz", context=context, timeout=2) as answer:
            return bool(answer.read().strip() == b"ok")
    except (OSError, ValueError):
        return False


def _write_configs(spec: ClusterSpec, pki: clusterpki.Pki) -> None:
    d = spec.directory
    spec.run_dir.mkdir(parents=True, exist_ok=True)
    (d / "logs").mkdir(parents=True, exist_ok=True)
    for identity in ("admin", "controller-manager", "scheduler"):
        # the control plane reaches its API server on loopback; the operator over the management network
        server = spec.server if identity == "admin" else "https://127.0.0.1:6443"
        _private(d / f"{identity}.kubeconfig", clusterpki.kubeconfig(pki, identity, server, spec.name))
    for node in spec.nodes:
        nd = node.directory
        node.run_dir.mkdir(parents=True, exist_ok=True)
        for sub in ("containerd", "cni/net.d", "cni/ipam", "kubelet/pod-logs", "kubelet/pki"):
            (nd / sub).mkdir(parents=True, exist_ok=True)
        if node.key:
            clusterpki.ensure_node(pki, node.key, node.node, node.node_ip)
        # a worker reaches the API server over the management network: its LAN may be the one that is lost
        server = spec.server if node.key else "https://127.0.0.1:6443"
        _private(nd / (node.component("node") + ".kubeconfig"),
                 clusterpki.kubeconfig(pki, node.component("node"), server, spec.name))
        _private(nd / "kube-proxy.kubeconfig", clusterpki.kubeconfig(pki, "kube-proxy", server, spec.name))
        (nd / "containerd" / "config.toml").write_text(containerd_config(node))
        (nd / "cni" / "net.d" / "10-pods.conflist").write_text(json.dumps(cni_network(spec, node), indent=1))
        (nd / "kubelet" / "config.json").write_text(json.dumps(kubelet_config(spec, pki, node), indent=1))


def _private(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)


def pause_image(out: Path) -> Path:
    """The pod sandbox image, built from the pause program compiled with the Kubernetes build (into the cluster's
    own directory: clusters started side by side never write the same file)."""
    image = build(ImageSpec(PAUSE_IMAGE, {"pause": kube_bin() / "pause"}, ("/pause",)), out)
    return image.archive


def _repository(archive: Path) -> str:
    """The repository an OCI archive names its image in (its index's `io.containerd.image.name`, less the tag)."""
    with tarfile.open(archive) as tar:
        member = tar.extractfile("index.json")
        index = json.loads(member.read()) if member else {}
    names = [m.get("annotations", {}).get("io.containerd.image.name", "") for m in index.get("manifests", [])]
    name = next((n for n in names if n), "")
    if not name:
        raise LabError(f"{archive} names no image (no io.containerd.image.name in its index)")
    return name.rsplit(":", 1)[0]


def import_images(spec: ClusterSpec, archives: list[Path]) -> None:
    """Put locally built images into the cluster's containerd (the kubelet never pulls), by tag and by digest
    (`repository@sha256:...`, what a pinned pod spec names)."""
    for node in spec.nodes:
        for archive in archives:
            done = run([_need("ctr"), "-a", str(node.cri_socket), "-n", "k8s.io", "images", "import",
                        "--base-name", _repository(archive), "--digests", str(archive)], timeout=300)
            if not done.succeeded:
                raise LabError(f"importing {archive.name} into {node.node}: {done.why()}")


def start(spec: ClusterSpec, images: list[Path], timeout: float = 120) -> Path:
    """Start (or finish starting) every component, in order; return the admin kubeconfig's path."""
    for netns in {n.netns for n in spec.nodes}:
        if not Path(f"/run/netns/{netns}").exists():
            raise LabError(f"namespace {netns} does not exist")
    pki = _pki(spec)
    _write_configs(spec, pki)
    argv = commands(spec, pki)
    deadline = time.monotonic() + timeout

    def left() -> float:
        return max(1.0, deadline - time.monotonic())

    _spawn(spec, "etcd", argv["etcd"])
    _spawn(spec, "kube-apiserver", argv["kube-apiserver"])
    for node in spec.nodes:
        _spawn(spec, node.component("containerd"), argv[node.component("containerd")])
    if not wait_for(lambda: _api_ready(spec, pki), left(), interval=0.5):
        raise LabError(f"{spec.name}: the API server is not ready; see {spec.directory / 'logs'}")
    for component in ("kube-controller-manager", "kube-scheduler"):
        _spawn(spec, component, argv[component])
    if not wait_for(lambda: all(n.cri_socket.exists() for n in spec.nodes), left(), interval=0.2):
        raise LabError(f"{spec.name}: containerd did not start; see {spec.directory / 'logs'}")
    import_images(spec, [pause_image(spec.directory / "images"), *images])
    for node in spec.nodes:
        _spawn(spec, node.component("kubelet"), argv[node.component("kubelet")])
        _spawn(spec, node.component("kube-proxy"), argv[node.component("kube-proxy")])
    return spec.kubeconfig


def _pki(spec: ClusterSpec) -> clusterpki.Pki:
    return clusterpki.ensure(spec.directory / "pki", spec.name, spec.node,
                             list(dict.fromkeys([spec.node_ip, *spec.api_addresses])), spec.service_ip)


def kill(spec: ClusterSpec, component: str) -> int | None:
    """SIGKILL one component (as a crash would); its pid, or None when it was not running."""
    pid = running(spec, component)
    if pid is not None:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        wait_for(lambda: running(spec, component) is None or not alive(pid), 5, 0.05)
    return pid


def revive(spec: ClusterSpec) -> list[str]:
    """Start again every component that is not running (after a crash), from the cluster's own files; the names
    of those started."""
    argv = commands(spec, _pki(spec))
    started = [c for c in spec.components if running(spec, c) is None]
    for component in started:
        _spawn(spec, component, argv[component])
    return started


def wait_ready(spec: ClusterSpec, timeout: float = 120) -> None:
    """Until the API server says the node is Ready (raises LabError with where to look when it is not)."""
    from ..adapters.kube import Cluster, KubeError  # the client loads only where a cluster is asked

    with Cluster(spec.kubeconfig, spec.name) as api:
        def ready() -> bool:
            try:
                ready = {n.name for n in api.nodes() if n.ready}
                return all(n.node in ready for n in spec.nodes)
            except KubeError:
                return False

        if not wait_for(ready, timeout, interval=0.5):
            raise LabError(f"{spec.name}: a node is not Ready after {timeout:g} s; "
                           f"see {spec.directory / 'logs'}")


def _kill(pid: int, timeout: float = 10) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not wait_for(lambda: not alive(pid), timeout, interval=0.1):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _shims(spec: ClusterSpec) -> list[int]:
    """containerd shims of this cluster (they outlive containerd by design)."""
    needles = [str(n.cri_socket).encode() for n in spec.nodes]
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = proc.joinpath("cmdline").read_bytes()
                if any(needle in cmdline for needle in needles):
                    found.append(int(proc.name))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
    return found


def stop(spec: ClusterSpec) -> list[str]:
    """Stop every component and every pod, unmount and remove what the cluster left outside its directory.
    Returns what could not be removed (empty: clean)."""
    containers: list[str] = []
    for node in spec.nodes:
        for component in ("kube-proxy", "kubelet"):
            if pid := running(spec, node.component(component)):
                _kill(pid)
        if running(spec, node.component("containerd")) and node.cri_socket.exists():
            ctr = [_need("ctr"), "-a", str(node.cri_socket), "-n", "k8s.io"]
            mine = run([*ctr, "containers", "ls", "-q"]).stdout.split()
            for task in run([*ctr, "tasks", "ls", "-q"]).stdout.split():  # `rm -f` kills the task first
                run([*ctr, "tasks", "rm", "-f", task])
            containers += mine
    for node in spec.nodes:
        if pid := running(spec, node.component("containerd")):
            _kill(pid)
        _pidfile(spec, node.component("containerd")).unlink(missing_ok=True)
    for component in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
        if pid := running(spec, component):
            _kill(pid)
        _pidfile(spec, component).unlink(missing_ok=True)
    for pid in _shims(spec):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    # the pods' network namespaces (each node's pod_netns_dir) are among these: only the kubelet removes them
    for mount in sorted(_mounts(spec), key=len, reverse=True):
        run(["umount", "-l", mount])
    # libcni's machine-wide result cache: one file per sandbox and network (ours, and the loopback's)
    for cached in CNI_CACHE.glob("*"):
        if cached.name.startswith(f"{cni_network(spec)['name']}-") or any(c in cached.name for c in containers):
            cached.unlink(missing_ok=True)
    left = leftovers(spec)
    if not left:
        shutil.rmtree(spec.run_dir, ignore_errors=True)
    return left


def _mounts(spec: ClusterSpec) -> list[str]:
    mine = (str(spec.directory) + "/", str(spec.run_dir) + "/")
    return [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1].startswith(mine)]


def leftovers(spec: ClusterSpec) -> list[str]:
    """Anything of this cluster still running or mounted."""
    left = [f"{c} (pid {pid})" for c in spec.components if (pid := running(spec, c))]
    left += [f"shim (pid {pid})" for pid in _shims(spec)]
    left += [f"mount {m}" for m in _mounts(spec)]
    return left
