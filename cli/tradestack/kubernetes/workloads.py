"""What each site's cluster runs, decided from the topology without touching a cluster: plain manifests.

A topology's stateless services run in the clusters (the database tier stays on Patroni hosts; see README).
Per site and service:
- a Deployment with one replica per instance the topology places there;
- a readiness probe on the service's own /readyz;
- CPU requested from its declared capacity at the CPU per order measured here (`bench_cpu.py`);
- non-root, read-only, no privilege;
- pods leave a lost node in `eviction_s` seconds, where Kubernetes' default is 300 s.

Beside each Deployment:
- a NodePort Service: the site's load balancers reach the node;
- a PodDisruptionBudget allowing one replica down.

A priority class keeps the trading services scheduled ahead of anything else on the node.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..topology.requests import requests
from .. import ports
from ..topology.model import Topology

NAMESPACE = "tradestack"
PRIORITY_CLASS = "tradestack-trading"
PORTS = {"gateway": ports.ORDERS, "router": ports.ROUTER}
NODE_PORTS = {"gateway": ports.GATEWAY_NODE_PORT}   # fixed: the sites' load balancers are configured with it
DEFAULT_EVICTION_S = 300     # Kubernetes' own tolerationSeconds for not-ready and unreachable nodes
EVICTION_S = 5               # ours: a lost site's pods are replaced in seconds, not minutes
PRESTOP_S = 5                # a stopping pod serves this long while kube-proxies drop it (grace period 15 s)


CLUSTERED = ("gateway",)


def clustered_services(topology: Topology, site: str) -> list[str]:
    """The services `site`'s cluster runs: the client-facing gateways the topology places there. Routers stay on
    hosts beside the database: they hold the venue sessions, which venues pin to known source addresses."""
    return [s.name for s in topology.services if s.name in CLUSTERED and s.placement.get(site)]


def site_manifests(topology: Topology, site: str, image: str, configs: dict[str, str],
                   eviction_s: int = EVICTION_S, await_ready: bool = True) -> list[dict[str, Any]]:
    """Every object of `site`'s cluster, in apply order. `configs`: service -> its configuration file's text
    (kept in a Secret: it holds the database password). `await_ready`: an apply waits until every Deployment's
    replicas are ready (False: only created, for a cluster whose services cannot be ready yet)."""
    services = clustered_services(topology, site)
    missing = [s for s in services if s not in configs]
    if missing:
        raise ValueError(f"no configuration for {', '.join(missing)}")
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": NAMESPACE, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
        {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": PRIORITY_CLASS},
         "value": 1_000_000, "globalDefault": False,
         "description": "the broker's trading services: scheduled before anything else on the node"},
    ]
    for service in services:
        replicas = next(s for s in topology.services if s.name == service).placement[site]
        objects += _service_objects(topology, site, service, replicas, image, configs[service], eviction_s)
    for o in objects:
        annotations = o["metadata"].setdefault("annotations", {})
        # the stack owns these objects: an apply takes back fields changed by hand (kubectl, a client's patch),
        # where server-side apply would otherwise stop at the other field manager
        annotations["pulumi.com/patchForce"] = "true"
        if not await_ready:
            annotations["pulumi.com/skipAwait"] = "true"
    return objects


def _service_objects(topology: Topology, site: str, service: str, replicas: int, image: str, config: str,
                     eviction_s: int) -> list[dict[str, Any]]:
    labels = {"app.kubernetes.io/name": service, "app.kubernetes.io/part-of": "tradestack",
              "tradestack.io/site": site}
    port = PORTS[service]
    want = requests(topology, service)
    meta = {"name": service, "namespace": NAMESPACE, "labels": labels}
    container = {
        "name": service, "image": image, "imagePullPolicy": "Never",  # loaded into each node's runtime
        "args": [service, "--config", f"/etc/tradestack/{service}.json", "--instance", "$(POD_NAME)"],
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "ports": [{"name": "http", "containerPort": port}],
        # out of rotation within 3 s of not being ready, but never for one slow answer: on a busy node a probe's
        # default 1 s timeout failed a serving replica and made it flap in and out of its load balancer
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": port}, "periodSeconds": 1, "timeoutSeconds": 2,
                           "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 5, "timeoutSeconds": 3,
                          "failureThreshold": 6},
        # a pod told to stop keeps serving for a few seconds while every node's kube-proxy takes it out of
        # rotation (without it, orders sent in that gap met a closed port: a rebalance after a node's return
        # cost clients a dozen errors)
        "lifecycle": {"preStop": {"sleep": {"seconds": PRESTOP_S}}},
        "resources": {"requests": {"cpu": f"{want.cpu_m}m", "memory": f"{want.memory_mi}Mi"},
                      "limits": {"memory": f"{want.memory_mi * 2}Mi"}},
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534,
                            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumeMounts": [{"name": "config", "mountPath": "/etc/tradestack", "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}],
    }
    tolerations = [{"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": eviction_s}
                   for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable")]
    pod = {
        "metadata": {"labels": labels},
        "spec": {
            "priorityClassName": PRIORITY_CLASS, "automountServiceAccountToken": False,
            "enableServiceLinks": False, "terminationGracePeriodSeconds": 15,
            "tolerations": tolerations,
            # never two replicas on one node while another can take one (a soft spread put both on one node, which
            # then took the site's gateways with it); a lost node (tainted) does not count, so its replacements
            # go to the nodes left
            "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                           "whenUnsatisfiable": "DoNotSchedule", "nodeTaintsPolicy": "Honor",
                                           "labelSelector": {"matchLabels": labels}}],
            "containers": [container],
            "volumes": [{"name": "config", "secret": {"secretName": f"{service}-config"}},
                        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}],
        },
    }
    return [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {**meta, "name": f"{service}-config"},
         "type": "Opaque", "stringData": {f"{service}.json": config}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
         "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                  "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                  "template": pod}},
        {"apiVersion": "v1", "kind": "Service", "metadata": meta,
         "spec": {"type": "NodePort", "externalTrafficPolicy": "Local", "selector": labels,
                  "ports": [{"name": "http", "port": port, "targetPort": port,
                             **({"nodePort": NODE_PORTS[service]} if service in NODE_PORTS else {})}]}},
        {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta,
         "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}}},
    ]


def service_configs(topology: Topology, site: str, public: Mapping[str, Any], secret: Mapping[str, Any],
                    db_proxies: Sequence[str]) -> dict[str, str]:
    """Each clustered service's configuration file in `site`, from the deploy's variables (the playbooks write the
    same for hosts). `db_proxies`: the site load balancers' addresses, whose HAProxy passes pods' database
    connections to the Patroni leader (libpq tries them in order)."""
    if not db_proxies:
        raise ValueError(f"site {site} has no load balancer to reach the database through")
    dsn = (f"host={','.join(db_proxies)} port={','.join([str(ports.DB_PROXY)] * len(db_proxies))} "
           f"user=tradestack password={secret['tradestack_db_password']} dbname=tradestack connect_timeout=2")
    configs: dict[str, str] = {}
    for service in clustered_services(topology, site):
        if service == "gateway":
            configs[service] = json.dumps({"instance": f"{site}-gateway", "host": "0.0.0.0", "port": PORTS[service],
                                           "dsn": dsn, "admission": dict(public["tradestack_admission"])})
        else:
            raise ValueError(f"no cluster configuration for service {service!r}")
    return configs
