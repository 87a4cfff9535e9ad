"""What each site's cluster runs of the trading services now, through the Kubernetes API."""

from __future__ import annotations

from pathlib import Path

from ..adapters.kube import Cluster
from ..capacity.live import Observed
from .workloads import NAMESPACE


def observe(kubeconfigs: dict[str, Path]) -> list[Observed]:
    """Ready replicas and CPU requests of every tradestack Deployment, per site (KubeError if a cluster does not
    answer: a site whose API is down is not counted as serving)."""
    observed = []
    for site, kubeconfig in sorted(kubeconfigs.items()):
        with Cluster(kubeconfig, site) as api:
            for d in api.deployments(NAMESPACE):
                if d.labels.get("app.kubernetes.io/part-of") == "tradestack":
                    observed.append(Observed(site, d.name, d.ready, d.cpu_request_m))
    return observed
