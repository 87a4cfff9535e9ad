"""The Kubernetes API through the official Python client, wrapped once: one cluster per kubeconfig.

Errors from the client (unreachable API server, refused credentials, unknown objects) become `KubeError`
with the cluster's name, so callers never see urllib3 or ApiException.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import urllib3
from kubernetes import client, config, utils
from kubernetes.client.exceptions import ApiException

from ..errors import TradestackError

T = TypeVar("T")


class KubeError(TradestackError):
    """The Kubernetes API did not answer, or refused."""


@dataclass(frozen=True)
class NodeView:
    name: str
    ready: bool
    addresses: tuple[str, ...]
    unschedulable: bool


@dataclass(frozen=True)
class PodView:
    namespace: str
    name: str
    node: str | None
    phase: str
    ready: bool
    ip: str | None
    labels: dict[str, str]
    terminating: bool = False     # marked for deletion (evicted, deleted) and not gone yet
    created: float = 0.0          # epoch seconds


@dataclass(frozen=True)
class DeploymentView:
    namespace: str
    name: str
    replicas: int          # wanted
    ready: int
    cpu_request_m: int | None   # per replica (the first container's); None: none set
    labels: dict[str, str]


def millicores(quantity: str | None) -> int | None:
    """A CPU quantity ("140m", "0.5", "2") in millicores."""
    if not quantity:
        return None
    return int(quantity[:-1]) if quantity.endswith("m") else int(round(float(quantity) * 1000))


class Cluster:
    """One cluster's API, from a kubeconfig file (its current context)."""

    def __init__(self, kubeconfig: Path, name: str | None = None, timeout: float = 5.0):
        self.name = name or kubeconfig.stem
        self.timeout = timeout
        try:
            settings = client.Configuration()
            config.load_kube_config(config_file=str(kubeconfig), client_configuration=settings)
        except (OSError, config.ConfigException) as exc:
            raise KubeError(f"{self.name}: cannot read kubeconfig {kubeconfig}: {exc}") from exc
        # one retry (a kept-alive connection the server closed), not urllib3's three: an API server that does not
        # answer costs a caller twice its timeout
        settings.retries = 1
        self._api = client.ApiClient(settings)
        self.core = client.CoreV1Api(self._api)
        self.apps = client.AppsV1Api(self._api)
        self.policy = client.PolicyV1Api(self._api)

    def close(self) -> None:
        self._api.close()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            # (connect, read): the client honours a lone timeout only when it is an int and silently waits for
            # ever on a float, e.g. on an API server cut off mid-drill
            return fn(*args, _request_timeout=(self.timeout, self.timeout), **kwargs)
        except ApiException as exc:
            raise KubeError(f"{self.name}: {what}: {exc.status} {exc.reason}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError(f"{self.name}: {what}: API server unreachable ({exc.__class__.__name__})") from exc

    def nodes(self) -> list[NodeView]:
        items = self._call("list nodes", self.core.list_node).items
        return [NodeView(n.metadata.name,
                         any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or []),
                         tuple(a.address for a in n.status.addresses or []), bool(n.spec.unschedulable))
                for n in items]

    def pods(self, namespace: str, selector: str = "") -> list[PodView]:
        items = self._call("list pods", self.core.list_namespaced_pod, namespace, label_selector=selector).items
        return [PodView(p.metadata.namespace, p.metadata.name, p.spec.node_name, p.status.phase or "",
                        any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or []),
                        p.status.pod_ip, dict(p.metadata.labels or {}), p.metadata.deletion_timestamp is not None,
                        p.metadata.creation_timestamp.timestamp() if p.metadata.creation_timestamp else 0.0)
                for p in items]

    def deployments(self, namespace: str) -> list[DeploymentView]:
        items = self._call("list deployments", self.apps.list_namespaced_deployment, namespace).items
        views = []
        for d in items:
            containers = d.spec.template.spec.containers or []
            requests = (containers[0].resources.requests or {}) if containers and containers[0].resources else {}
            views.append(DeploymentView(d.metadata.namespace, d.metadata.name, int(d.spec.replicas or 0),
                                        int(d.status.ready_replicas or 0), millicores(requests.get("cpu")),
                                        dict(d.metadata.labels or {})))
        return views

    def disruptions_allowed(self, namespace: str) -> dict[str, int]:
        """Each PodDisruptionBudget's name -> how many of its pods may be evicted now."""
        items = self._call("list disruption budgets", self.policy.list_namespaced_pod_disruption_budget,
                           namespace).items
        return {b.metadata.name: int(b.status.disruptions_allowed or 0) if b.status else 0 for b in items}

    def delete_pods(self, namespace: str, selector: str) -> list[str]:
        """Delete every pod `selector` picks (their own grace period applies); the names deleted."""
        names = [p.name for p in self.pods(namespace, selector) if not p.terminating]
        for name in names:
            self._call(f"delete pod {name}", self.core.delete_namespaced_pod, name, namespace)
        return names

    def cordon(self, node: str, on: bool = True) -> None:
        """Mark a node unschedulable (or schedulable again)."""
        self._call(f"{'cordon' if on else 'uncordon'} node {node}", self.core.patch_node, node,
                   {"spec": {"unschedulable": on}})

    def pods_on(self, node: str) -> list[tuple[str, str, str | None]]:
        """Every pod bound to `node`, in any namespace: (namespace, name, kind of its owner)."""
        items = self._call("list pods", self.core.list_pod_for_all_namespaces,
                           field_selector=f"spec.nodeName={node}").items
        return [(p.metadata.namespace, p.metadata.name,
                 p.metadata.owner_references[0].kind if p.metadata.owner_references else None)
                for p in items if p.metadata.deletion_timestamp is None]

    def evict(self, namespace: str, name: str) -> bool:
        """Ask the Eviction API to evict a pod: False when a disruption budget refuses it now (429)."""
        body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=namespace))
        try:
            self._call(f"evict pod {name}", self.core.create_namespaced_pod_eviction, name, namespace, body)
        except KubeError as exc:
            status = exc.__cause__.status if isinstance(exc.__cause__, ApiException) else None
            if status == 429:
                return False
            if status != 404:   # 404: gone already
                raise
        return True

    def create(self, manifest: dict[str, Any]) -> None:
        """Create one object from a manifest, of any kind the client knows."""
        namespace = manifest.get("metadata", {}).get("namespace", "default")
        what = f"create {manifest.get('kind')} {manifest.get('metadata', {}).get('name')}"
        try:
            utils.create_from_dict(self._api, manifest, namespace=namespace, _request_timeout=self.timeout)
        except utils.FailToCreateError as exc:
            raise KubeError(f"{self.name}: {what}: "
                            + "; ".join(f"{e.status} {e.reason}" for e in exc.api_exceptions)) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeError(f"{self.name}: {what}: API server unreachable ({exc.__class__.__name__})") from exc

    def service_ip(self, namespace: str, name: str) -> str:
        return str(self._call("read service", self.core.read_namespaced_service, name, namespace).spec.cluster_ip)
