"""A real single-node Kubernetes cluster inside one lab namespace: etcd, kube-apiserver, controller-manager,
scheduler, containerd (runc, CNI bridge), kubelet and kube-proxy (nftables), the real programs.

Every program is started with `nsenter --net` (not `ip netns exec`, which also makes a mount namespace and
remounts /sys, hiding the cgroup mounts from the kubelet and containerd). Each cluster keeps everything under
its own directory: etcd data, containerd root, state and sockets, CNI configuration and IPAM data, kubelet
root, pod logs, certificates. What containerd and CNI keep machine-wide (/run/containerd/runc/k8s.io, the
CNI result cache) is keyed by container id and removed with the cluster.

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
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..adapters.commands import run
from ..kubernetes.images import ImageSpec, build
from ..paths import cache_dir
from ..polling import wait_for
from . import clusterpki
from .netlink import LabError
from .plan import ClusterNode

KUBERNETES_VERSION = "1.34.4"  # infra/toolchain/build-kubernetes.sh builds this one
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "containerd", "kubelet",
              "kube-proxy")
PAUSE_IMAGE = "tradestack.local/pause:3.10"
CNI_BIN = "/usr/lib/cni"
RUN_ROOT = Path("/run/tradestack-k8s")
CNI_CACHE = Path("/var/lib/cni/results")


@dataclass(frozen=True)
class ClusterSpec:
    """Where a site's cluster lives: its namespace (already wired), addresses and directory."""

    name: str                 # e.g. "t1-sz1": the cluster, its CA and kubeconfig context
    netns: str
    node: str                 # the node's name
    node_ip: str              # its address on the site LAN (the kubelet's and kube-proxy's)
    api_addresses: tuple[str, ...]   # where the API server is reached (LAN, management)
    pod_cidr: str
    service_cidr: str
    directory: Path

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
    return ClusterSpec(name, node.netns, f"{name}-node", node.node_ip, (node.mgmt_ip, node.node_ip), node.pod_cidr,
                       node.service_cidr, workdir / node.netns / "cluster")


def props(spec: ClusterSpec) -> dict[str, object]:
    """The spec as a Pulumi resource's inputs (plain values), and back with `from_props`."""
    return {"name": spec.name, "netns": spec.netns, "node": spec.node, "node_ip": spec.node_ip,
            "api_addresses": list(spec.api_addresses), "pod_cidr": spec.pod_cidr, "service_cidr": spec.service_cidr,
            "directory": str(spec.directory)}


def from_props(values: dict[str, Any]) -> ClusterSpec:
    return ClusterSpec(values["name"], values["netns"], values["node"], values["node_ip"],
                       tuple(values["api_addresses"]), values["pod_cidr"], values["service_cidr"],
                       Path(values["directory"]))


def kube_bin() -> Path:
    """The multi-call binary built by `make setup` (infra/toolchain/build-kubernetes.sh)."""
    path = cache_dir() / "kubernetes" / f"v{KUBERNETES_VERSION}" / "bin"
    if not (path / "kube").exists():
        raise LabError(f"Kubernetes v{KUBERNETES_VERSION} is not built ({path / 'kube'} missing): run make setup")
    return path


def _need(program: str) -> str:
    found = shutil.which(program) or (f"/usr/sbin/{program}" if Path(f"/usr/sbin/{program}").exists() else None)
    if not found:
        raise LabError(f"{program} is not installed: run make setup")
    return found


def containerd_config(spec: ClusterSpec) -> str:
    d = spec.directory / "containerd"
    disabled = ", ".join(f'"{p}"' for p in (
        "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
        "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp",
        "io.containerd.internal.v1.tracing"))
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{d / 'root'}"
state = "{spec.run_dir / 'containerd'}"
disabled_plugins = [{disabled}]
[grpc]
  address = "{spec.cri_socket}"
[ttrpc]
  address = "{spec.cri_socket}.ttrpc"
[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{spec.directory / 'cni' / 'net.d'}"
"""


def cni_network(spec: ClusterSpec) -> dict[str, object]:
    """Pods on a bridge in the node's namespace, routed (no NAT: the site routes the pod range to the node)."""
    gateway = spec.pod_cidr.split("/")[0].rsplit(".", 1)[0] + ".1"
    return {"cniVersion": "0.4.0", "name": f"{spec.name}-pods", "plugins": [
        {"type": "bridge", "bridge": "kpods0", "isGateway": True, "ipMasq": False, "hairpinMode": True,
         "ipam": {"type": "host-local", "dataDir": str(spec.directory / "cni" / "ipam"),
                  "ranges": [[{"subnet": spec.pod_cidr, "gateway": gateway}]], "routes": [{"dst": "0.0.0.0/0"}]}},
        {"type": "loopback"}]}


def kubelet_config(spec: ClusterSpec, pki: clusterpki.Pki) -> dict[str, object]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs", "cgroupsPerQOS": False, "enforceNodeAllocatable": [], "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{spec.cri_socket}",
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(pki.crt("ca"))}},
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(pki.crt("kubelet")), "tlsPrivateKeyFile": str(pki.key("kubelet")),
        "address": spec.node_ip, "port": 10250, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
        "makeIPTablesUtilChains": False, "localStorageCapacityIsolation": False, "protectKernelDefaults": False,
        "resolvConf": "", "serializeImagePulls": False,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "podLogsDir": str(spec.directory / "kubelet" / "pod-logs"),
        "nodeStatusUpdateFrequency": "2s",
    }


def commands(spec: ClusterSpec, pki: clusterpki.Pki) -> dict[str, list[str]]:
    """Each component's argv (without the namespace entry)."""
    k = kube_bin()
    d = spec.directory
    kc = {name: str(d / f"{name}.kubeconfig") for name in ("controller-manager", "scheduler", "kube-proxy", "node")}
    return {
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
        "containerd": [_need("containerd"), "--config", str(d / "containerd" / "config.toml")],
        "kubelet": [
            str(k / "kubelet"), f"--config={d / 'kubelet' / 'config.json'}", f"--kubeconfig={kc['node']}",
            f"--root-dir={spec.run_dir / 'kubelet'}", f"--cert-dir={d / 'kubelet' / 'pki'}",
            f"--hostname-override={spec.node}", f"--node-ip={spec.node_ip}"],
        "kube-proxy": [
            str(k / "kube-proxy"), f"--kubeconfig={kc['kube-proxy']}", "--proxy-mode=nftables",
            f"--hostname-override={spec.node}", f"--bind-address={spec.node_ip}",
            f"--cluster-cidr={spec.pod_cidr}", "--conntrack-max-per-core=0",
            "--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0",
            "--metrics-bind-address=127.0.0.1:10249", "--healthz-bind-address=127.0.0.1:10256"],
    }


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
    proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{spec.netns}", *argv], stdin=subprocess.DEVNULL,
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
    for sub in ("logs", "containerd", "cni/net.d", "cni/ipam", "kubelet/pod-logs", "kubelet/pki"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    for identity in ("admin", "controller-manager", "scheduler", "kube-proxy", "node"):
        # the components reach their API server on loopback; the operator over the management network
        server = spec.server if identity == "admin" else "https://127.0.0.1:6443"
        path = d / f"{identity}.kubeconfig"
        path.write_text(clusterpki.kubeconfig(pki, identity, server, spec.name))
        path.chmod(0o600)
    (d / "containerd" / "config.toml").write_text(containerd_config(spec))
    (d / "cni" / "net.d" / "10-pods.conflist").write_text(json.dumps(cni_network(spec), indent=1))
    (d / "kubelet" / "config.json").write_text(json.dumps(kubelet_config(spec, pki), indent=1))


def pause_image(out: Path) -> Path:
    """The pod sandbox image, built from the pause program compiled with the Kubernetes build (into the cluster's
    own directory: clusters started side by side never write the same file)."""
    image = build(ImageSpec(PAUSE_IMAGE, {"pause": kube_bin() / "pause"}, ("/pause",)), out)
    return image.archive


def import_images(spec: ClusterSpec, archives: list[Path]) -> None:
    """Put locally built images into the cluster's containerd (the kubelet never pulls)."""
    for archive in archives:
        done = run([_need("ctr"), "-a", str(spec.cri_socket), "-n", "k8s.io", "images", "import", str(archive)],
                   timeout=300)
        if not done.succeeded:
            raise LabError(f"importing {archive.name} into {spec.name}: {done.why()}")


def start(spec: ClusterSpec, images: list[Path], timeout: float = 120) -> Path:
    """Start (or finish starting) every component, in order; return the admin kubeconfig's path."""
    if not Path(f"/run/netns/{spec.netns}").exists():
        raise LabError(f"namespace {spec.netns} does not exist")
    pki = clusterpki.ensure(spec.directory / "pki", spec.name, spec.node,
                            list(dict.fromkeys([spec.node_ip, *spec.api_addresses])), spec.service_ip)
    _write_configs(spec, pki)
    argv = commands(spec, pki)
    deadline = time.monotonic() + timeout

    def left() -> float:
        return max(1.0, deadline - time.monotonic())

    _spawn(spec, "etcd", argv["etcd"])
    _spawn(spec, "kube-apiserver", argv["kube-apiserver"])
    _spawn(spec, "containerd", argv["containerd"])
    if not wait_for(lambda: _api_ready(spec, pki), left(), interval=0.5):
        raise LabError(f"{spec.name}: the API server is not ready; see {spec.directory / 'logs'}")
    for component in ("kube-controller-manager", "kube-scheduler"):
        _spawn(spec, component, argv[component])
    if not wait_for(spec.cri_socket.exists, left(), interval=0.2):
        raise LabError(f"{spec.name}: containerd did not start; see {spec.directory / 'logs'}")
    import_images(spec, [pause_image(spec.directory / "images"), *images])
    _spawn(spec, "kubelet", argv["kubelet"])
    _spawn(spec, "kube-proxy", argv["kube-proxy"])
    return spec.kubeconfig


def wait_ready(spec: ClusterSpec, timeout: float = 120) -> None:
    """Until the API server says the node is Ready (raises LabError with where to look when it is not)."""
    from ..adapters.kube import Cluster, KubeError  # the client loads only where a cluster is asked

    with Cluster(spec.kubeconfig, spec.name) as api:
        def ready() -> bool:
            try:
                return any(n.name == spec.node and n.ready for n in api.nodes())
            except KubeError:
                return False

        if not wait_for(ready, timeout, interval=0.5):
            raise LabError(f"{spec.name}: node {spec.node} not Ready after {timeout:g} s; "
                           f"see {spec.directory / 'logs'}")


def _kill(pid: int, timeout: float = 10) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not wait_for(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), timeout, interval=0.1):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return True


def _shims(spec: ClusterSpec) -> list[int]:
    """containerd shims of this cluster (they outlive containerd by design)."""
    needle = str(spec.cri_socket).encode()
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if needle in proc.joinpath("cmdline").read_bytes():
                    found.append(int(proc.name))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
    return found


def stop(spec: ClusterSpec) -> list[str]:
    """Stop every component and every pod, unmount and remove what the cluster left outside its directory.
    Returns what could not be removed (empty: clean)."""
    for component in ("kube-proxy", "kubelet"):
        if pid := running(spec, component):
            _kill(pid)
    containers: list[str] = []
    if running(spec, "containerd") and spec.cri_socket.exists():
        ctr = [_need("ctr"), "-a", str(spec.cri_socket), "-n", "k8s.io"]
        containers = run([*ctr, "containers", "ls", "-q"]).stdout.split()
        sandboxes = _pod_netns(ctr, containers)
        for task in run([*ctr, "tasks", "ls", "-q"]).stdout.split():  # `rm -f` kills the task first
            run([*ctr, "tasks", "rm", "-f", task])
        for netns in sandboxes:  # the CRI makes one per pod (/run/netns/cni-...); only the kubelet removes them
            run(["ip", "netns", "delete", netns.name])
    for component in ("containerd", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
        if pid := running(spec, component):
            _kill(pid)
        _pidfile(spec, component).unlink(missing_ok=True)
    for pid in _shims(spec):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
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


def _pod_netns(ctr: list[str], containers: list[str]) -> list[Path]:
    """The network namespaces of these containers' pods (as their OCI specs name them)."""
    found: list[Path] = []
    for container in containers:
        info = run([*ctr, "containers", "info", container])
        try:
            spaces = json.loads(info.stdout)["Spec"]["linux"]["namespaces"]
        except (ValueError, KeyError, TypeError):
            continue
        found += [Path(s["path"]) for s in spaces if s.get("type") == "network" and s.get("path", "").startswith(
            ("/var/run/netns/cni-", "/run/netns/cni-"))]
    return sorted(set(found))


def _mounts(spec: ClusterSpec) -> list[str]:
    mine = (str(spec.directory) + "/", str(spec.run_dir) + "/")
    return [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1].startswith(mine)]


def leftovers(spec: ClusterSpec) -> list[str]:
    """Anything of this cluster still running or mounted."""
    left = [f"{c} (pid {pid})" for c in COMPONENTS if (pid := running(spec, c))]
    left += [f"shim (pid {pid})" for pid in _shims(spec)]
    left += [f"mount {m}" for m in _mounts(spec)]
    return left
