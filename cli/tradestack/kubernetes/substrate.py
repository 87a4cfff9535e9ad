"""The kubernetes kind: each site's gateways run as pods in that site's cluster, behind the site's load balancers
(HAProxy and keepalived holding the site's VIP, on the gateway hosts).

Everything else stays on hosts of the substrate beneath (the lab's namespaces today): the database tier
(Patroni, etcd), whose synchronous standby must be in another site and whose failover Patroni already decides
in seconds; the routers, which hold the venue sessions venues pin to known source addresses; the venues and
the clients. The hosts' substrate stays the stack (host primitives, faults and secrets are its); this kind
attaches to it, as its `clusters` (substrates/clusters.py), what it adds: the workloads (applied by Pulumi's
Kubernetes provider after the playbooks), their state in the steady check and the drills' samples, the cluster
faults, and what the playbooks must do differently (the load balancers' backends are the clusters' NodePorts; the
pods reach the database through them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..adapters.kube import Cluster, KubeError
from ..adapters.pulumi import OpResult, require_provider
from ..hostsettings import HostSettings
from ..paths import cache_dir, state_dir
from ..polling import each, wait_for
from ..substrates import faults
from ..substrates.base import Actuator, FaultRefused, StackLifecycle, Substrate, SubstrateError
from ..substrates.clusters import ClusterHosting, Clusters, SiteCluster
from ..substrates.faults import Fault
from .stack import WorkloadStack
from .workloads import CLUSTERED, NAMESPACE, NODE_PORTS, clustered_services, service_configs


def _merged(first: OpResult, second: OpResult | None) -> OpResult:
    if second is None:
        return first
    changes = dict(first.changes)
    for op, n in second.changes.items():
        changes[op] = changes.get(op, 0) + n
    return OpResult(first.kind, changes, {**first.outputs, **({"workloads": second.outputs} if second.outputs else {})},
                    first.stdout + second.stdout)


TRADING = "app.kubernetes.io/part-of=tradestack"   # every pod of the trading services
DRAIN_WAIT_S = 60.0       # how long a drain asks again while a disruption budget refuses an eviction
SETTLE_WAIT_S = 120.0     # how long replicas may take to be ready again after a fault through the API


def wait_settled(api: Cluster, site: str, timeout: float = SETTLE_WAIT_S) -> None:
    """Until every Deployment of the trading services has all its replicas ready and no pod is terminating."""
    def settled() -> bool:
        try:
            deployments = api.deployments(NAMESPACE)
            return bool(deployments) and all(d.ready >= d.replicas for d in deployments) \
                and not any(p.terminating for p in api.pods(NAMESPACE, TRADING))
        except KubeError:
            return False
    if not wait_for(settled, timeout, interval=0.5):
        raise SubstrateError(f"{site}: the trading services' replicas are not all ready after {timeout:g} s")


def drain(api: Cluster, node: str, timeout: float = DRAIN_WAIT_S) -> None:
    """Evict every pod of `node` that a DaemonSet does not own, through the Eviction API (which honours the
    disruption budgets); a refusal is asked again each second until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        left = [(ns, name) for ns, name, owner in api.pods_on(node) if owner != "DaemonSet"]
        refused = [f"{ns}/{name}" for ns, name in left if not api.evict(ns, name)]
        if not refused:
            return
        if time.monotonic() > deadline:
            raise SubstrateError(f"draining {node}: a disruption budget still refuses to evict "
                                 f"{', '.join(refused)} after {timeout:g} s")
        time.sleep(1.0)


def rebalance(api: Cluster, site: str, timeout: float = SETTLE_WAIT_S) -> None:
    """Evict one pod at a time from the node with most of a service's pods while another schedulable node has
    at least two fewer (the scheduler's spread then puts the replacement there)."""
    deadline = time.monotonic() + timeout
    while True:
        wait_settled(api, site, max(1.0, deadline - time.monotonic()))
        schedulable = [n.name for n in api.nodes() if n.ready and not n.unschedulable]
        by_service: dict[str, dict[str, list[str]]] = {}
        for p in api.pods(NAMESPACE, TRADING):
            service = p.labels.get("app.kubernetes.io/name", p.name)
            by_service.setdefault(service, {n: [] for n in schedulable}).setdefault(p.node or "", []).append(p.name)
        crowded = []
        for pods in by_service.values():
            fullest = max(sorted(pods), key=lambda n: len(pods[n]))
            if schedulable and len(pods[fullest]) - min(len(pods[n]) for n in schedulable) > 1:
                crowded.append(pods[fullest][0])
        if not crowded:
            return
        if time.monotonic() > deadline:
            raise SubstrateError(f"{site}: the trading pods are not spread over the nodes after {timeout:g} s")
        api.evict(NAMESPACE, crowded[0])
        time.sleep(1.0)


class ClusterLifecycle:
    """The stack as Pulumi manages it: the hosts' stack beneath (brought up with one cluster per site), then, once
    a deploy has applied them, the workloads' stack (project tradestack-k8s, the same name)."""

    def __init__(self, base: StackLifecycle):
        self.base = base
        self.name = base.name
        self.disposable = base.disposable

    def _workloads(self) -> WorkloadStack | None:
        stack = WorkloadStack.existing(self.name)
        return stack if stack.exists() else None

    def exists(self) -> bool:
        return self.base.exists()

    def expected_resources(self) -> int | None:
        return self.base.expected_resources()

    def preview(self, on_event: Callable[[Any], None] | None = None) -> OpResult:
        require_provider("kubernetes")  # before anything: the workloads are applied through it
        result = self.base.preview(on_event)
        workloads = self._workloads() if self.base.exists() else None
        return _merged(result, workloads.preview() if workloads else None)

    def up(self, on_event: Callable[[Any], None] | None = None) -> tuple[OpResult, Any]:
        require_provider("kubernetes")
        result, files = self.base.up(on_event)
        workloads = self._workloads()  # applied by a deploy; up repairs what drifted since
        return _merged(result, workloads.up(refresh=True) if workloads else None), files

    def refresh(self, on_event: Callable[[Any], None] | None = None) -> OpResult:
        result = self.base.refresh(on_event)
        workloads = self._workloads()
        return _merged(result, workloads.refresh() if workloads else None)

    def destroy(self, on_event: Callable[[Any], None] | None = None) -> OpResult:
        workloads = self._workloads()
        gone = None
        if workloads is not None:
            try:
                gone = workloads.destroy()
            except Exception:
                if not self.base.disposable:
                    raise
                workloads.forget()  # a disposable stack's clusters go with it: nothing to keep the state for
        return _merged(self.base.destroy(on_event), gone)

    def outputs(self, secrets_too: bool = False) -> dict[str, Any]:
        return self.base.outputs(secrets_too)

    def leftovers(self) -> list[str]:
        return self.base.leftovers() + ([f"workloads stack {self.name}"] if self._workloads() else [])

    def config(self) -> dict[str, str]:
        return self.base.config()

    def set_config(self, key: str, value: str) -> None:
        self.base.set_config(key, value)

    def set_secret(self, name: str, value: str) -> None:
        self.base.set_secret(name, value)

    @property
    def host_settings(self) -> HostSettings:
        return self.base.host_settings


class KubernetesClusters(Clusters):
    """The kubernetes kind: the stateless services (CLUSTERED) as Deployments in each site's cluster, on the clusters
    the hosts beneath run (`hosting`: the lab's today). Attached to the hosts' substrate as its `clusters`."""

    kind = "kubernetes"
    layered = True   # the registry opens the hosts beneath (brought up with a cluster per site) and hands them over
    services = CLUSTERED

    def __init__(self, stack: Substrate, hosting: ClusterHosting):
        self.stack = stack
        self.hosting = hosting
        self._clients: dict[str, Cluster] = {}

    @classmethod
    def over(cls, base: Substrate) -> Substrate:
        """`base` with its clusters attached: the stack the kubernetes kind opens."""
        if not isinstance(base, ClusterHosting):
            raise SubstrateError(f"substrate {base.kind!r} runs no Kubernetes clusters for stack {base.name!r}")
        base.clusters = cls(base, base)
        return base

    @staticmethod
    def lifecycle_over(base: StackLifecycle) -> ClusterLifecycle:
        return ClusterLifecycle(base)

    def sites(self) -> dict[str, SiteCluster]:
        return self.hosting.site_clusters()

    def deploy_vars(self) -> dict[str, Any]:
        """The playbooks leave the clustered services to the clusters; each site's load balancers send clients to
        its cluster's NodePorts and pass its pods' database connections to the Patroni leader."""
        clusters = self.sites()
        missing = sorted(set(self.stack.vips) - set(clusters))
        if missing:
            raise SubstrateError(f"no Kubernetes cluster in site {', '.join(missing)}; bring the stack up again")
        return {"tradestack_clustered_services": list(CLUSTERED),
                "tradestack_cluster_backends": {site: [f"{node}:{NODE_PORTS['gateway']}" for node in c.nodes]
                                                for site, c in sorted(clusters.items())},
                "tradestack_cluster_pod_cidrs": {site: c.pod_cidr for site, c in sorted(clusters.items())}}

    def apply_workloads(self, public: Mapping[str, Any], secret: Mapping[str, Any],
                        on_step: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
        """Build the services' image from the deploy's wheelhouse, load it into every site's cluster, and apply the
        Deployments, Services and budgets through Pulumi, waiting until every replica is ready."""
        from ..builds.pyimage import refstack_image

        clusters = self.sites()
        on_step("building the services' image")
        image = refstack_image(Path(str(public["tradestack_wheelhouse"])), cache_dir() / "images" / "refstack-site",
                               state_dir() / "stacks" / self.stack.name / "images", str(public["tradestack_wheel_sha256"])[:12])
        configs: dict[str, dict[str, str]] = {}
        for site in sorted(clusters):
            on_step(f"loading the image into {site}'s cluster")
            self.hosting.load_images(site, [image.archive])
            proxies = [h.lan_address for h in sorted(self.stack.of("gateway", site), key=lambda h: h.name)]
            configs[site] = service_configs(self.stack.topology, site, public, secret, proxies)
        on_step("applying the workloads (Pulumi, Kubernetes provider)")
        stack = WorkloadStack(self.stack.name, self.stack.topology_file, {s: c.kubeconfig for s, c in clusters.items()},
                              image.pinned, configs)
        result = stack.up()
        return {"image": image.pinned, "changes": result.changes, "applied": result.outputs.get("applied", {})}

    def view(self) -> dict[str, dict[str, Any]]:
        clusters = self.sites()

        def look(site: str) -> dict[str, Any]:
            view: dict[str, Any] = {"nodes": {}, "services": {}, "expected": clustered_services(self.stack.topology, site),
                                    "error": None}
            try:
                api = self._api(site, clusters[site].kubeconfig)
                view["nodes"] = {n.name: n.ready for n in api.nodes()}
                budgets = api.disruptions_allowed(NAMESPACE)
                view["services"] = {d.name: {"replicas": d.replicas, "ready": d.ready,
                                             "disruptions_allowed": budgets.get(d.name), "cpu_request_m": d.cpu_request_m}
                                    for d in api.deployments(NAMESPACE)
                                    if d.labels.get("app.kubernetes.io/part-of") == "tradestack"}
            except KubeError as exc:
                view["error"] = str(exc)
            return view
        return each(sorted(clusters), look, key=lambda site: site)

    def signals(self) -> dict[str, int]:
        """Per site cluster (`k8s.SITE.*`): nodes Ready, trading pods ready and evicted
        (marked for deletion, not gone), and when the newest ready one was created (epoch seconds): what the
        drill figures read time to NotReady, to eviction and to a ready replacement from."""
        found: dict[str, int] = {}
        clusters = self.sites()

        def sample(site: str) -> dict[str, int]:
            try:
                api = self._api(site, clusters[site].kubeconfig)
                nodes = api.nodes()
                pods = api.pods(NAMESPACE, TRADING)
            except KubeError:
                return {}  # the API server does not answer: no figures from this site in this sample
            serving = [p for p in pods if p.ready and not p.terminating]
            return {f"k8s.{site}.nodes_ready": sum(n.ready for n in nodes), f"k8s.{site}.pods_ready": len(serving),
                    f"k8s.{site}.pods_evicted": sum(p.terminating for p in pods),
                    f"k8s.{site}.newest_ready": int(max((p.created for p in serving), default=0))}
        for answer in each(sorted(clusters), sample, key=lambda site: site).values():
            found.update(answer)
        return found

    def _api(self, site: str, kubeconfig: Path) -> Cluster:
        """One client per cluster, kept: the observer asks every half second."""
        if site not in self._clients:
            self._clients[site] = Cluster(kubeconfig, site, timeout=1.0)
        return self._clients[site]

    def _site_cluster(self, site: str) -> SiteCluster:
        clusters = self.sites()
        if site not in clusters:
            raise FaultRefused(f"site {site!r} runs no Kubernetes cluster; clusters run in "
                               f"{', '.join(sorted(clusters)) or 'no site'}")
        return clusters[site]

    def _busiest_node(self, api: Cluster) -> str | None:
        """The node that runs most of the site's ready trading pods now (ties: the first by name)."""
        counts: dict[str, int] = {}
        for p in api.pods(NAMESPACE, TRADING):
            if p.ready and p.node:
                counts[p.node] = counts.get(p.node, 0) + 1
        return max(sorted(counts), key=lambda n: counts[n]) if counts else None

    def node_loss(self, site: str, node: str | None = None) -> Actuator:
        """Unless named, the node that runs most of the site's ready trading pods now: the loss that hurts."""
        cluster = self._site_cluster(site)
        if node is None:
            node = self._busiest_node(self._api(site, cluster.kubeconfig))
        return self.hosting.node_loss(site, node)

    def _respread(self, site: str, fault: Actuator) -> Actuator:
        """`fault` whose restore also spreads the site's trading pods over its nodes again: pods evicted from a
        lost node were replaced on the others, and a node that comes back gets none by itself."""
        cluster = self._site_cluster(site)

        def restore(step: Callable[[str], None]) -> None:
            fault.restore(step)
            step(f"spreading {site}'s trading pods over its nodes again")
            with Cluster(cluster.kubeconfig, site) as api:
                rebalance(api, site)
        return replace(fault, restore=restore)

    def pod_delete(self, site: str) -> Actuator:
        """Every trading pod of the site deleted through the API; undone by waiting until their Deployments have
        every replica ready again."""
        cluster = self._site_cluster(site)

        def inject() -> None:
            with Cluster(cluster.kubeconfig, site) as api:
                if not api.delete_pods(NAMESPACE, TRADING):
                    raise SubstrateError(f"{site}: no trading pod to delete")

        def restore(step: Callable[[str], None]) -> None:
            step(f"waiting for {site}'s Deployments to have every replica ready")
            with Cluster(cluster.kubeconfig, site) as api:
                wait_settled(api, site)
        return Actuator(f"every trading pod of site {site}'s cluster deleted", inject, restore)

    def node_drain(self, site: str) -> Actuator:
        """The node with most of the site's trading pods cordoned and drained through the Eviction API (a budget
        that refuses is asked again each second for up to DRAIN_WAIT_S); undone by uncordoning it and moving
        pods back onto it until each service is spread again, one eviction at a time."""
        cluster = self._site_cluster(site)
        picked: list[str] = []

        def inject() -> None:
            with Cluster(cluster.kubeconfig, site) as api:
                node = self._busiest_node(api)
                if node is None:
                    raise SubstrateError(f"{site}: no node runs a ready trading pod")
                picked.append(node)
                api.cordon(node, True)
                drain(api, node)

        def restore(step: Callable[[str], None]) -> None:
            with Cluster(cluster.kubeconfig, site) as api:
                for node in picked:
                    step(f"uncordoning {node}")
                    api.cordon(node, False)
                step(f"spreading {site}'s trading pods over its nodes again")
                rebalance(api, site)
        return Actuator(f"the busiest node of site {site}'s cluster cordoned and drained", inject, restore)

    def actuator(self, fault: Fault) -> Actuator | None:
        match fault:
            case faults.NodeLoss(site=site):
                return self._respread(site, self.node_loss(site))
            case faults.PodDelete(site=site):
                return self.pod_delete(site)
            case faults.NodeDrain(site=site):
                return self.node_drain(site)
            case faults.ApiServerCut(site=site):
                self._site_cluster(site)
                return self._respread(site, self.hosting.api_server_cut(site))
        return None

    def check_fault(self, fault: Fault) -> bool:
        if not isinstance(fault, faults.ClusterFault):
            return False
        self._site_cluster(fault.site)
        return True

    def dry_run(self, fault: Fault) -> list[str] | None:
        match fault:
            case faults.PodDelete(site=site):
                return [f"{site} API: DELETE pods -n {NAMESPACE} -l {TRADING}",
                        f"{site} API: until every Deployment in {NAMESPACE} has its replicas ready"]
            case faults.NodeDrain(site=site):
                return [f"{site} API: PATCH node <busiest> spec.unschedulable=true",
                        f"{site} API: POST eviction for each of its pods not owned by a DaemonSet (again while "
                        f"a budget refuses, up to {DRAIN_WAIT_S:g} s)",
                        f"{site} API: PATCH node <busiest> spec.unschedulable=false",
                        f"{site} API: POST eviction of one pod at a time from the fuller node until spread"]
        return None

    def audit_facts(self) -> dict[str, Any]:
        return {"clustered": list(CLUSTERED), "cluster_namespace": NAMESPACE,
                "clusters": {site: str(c.kubeconfig) for site, c in sorted(self.sites().items())}}
