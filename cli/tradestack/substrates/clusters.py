"""Per-site Kubernetes clusters: a capability a stack may offer on top of its hosts.

Two halves, so that neither substrate knows the other:
- `ClusterHosting`: what a substrate whose machines run the clusters provides (the lab boots a cluster per site in
  its namespaces): where each site's API server is, how an image reaches a site's nodes, and the faults only the
  machines can cause (a node lost, the API server cut off).
- `Clusters`: what runs in them and how the rest of tradestack sees it (the kubernetes kind: the stateless
  services as Deployments). The registry opens the hosts' substrate and attaches its `Clusters` (`stack.clusters`);
  deploy, status, drills, capacity and audit ask `stack.clusters` when it is there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .. import health
from .faults import Fault

if TYPE_CHECKING:
    from .base import Actuator


@dataclass(frozen=True)
class SiteCluster:
    """One site's Kubernetes cluster, as the substrate that runs it reaches it."""

    site: str
    kubeconfig: Path             # admin access to its API server
    nodes: tuple[str, ...]       # its nodes' addresses on the site LAN: where the site's load balancers reach NodePorts
    pod_cidr: str                # the range its pods' traffic comes from (routed, not masqueraded)


@runtime_checkable
class ClusterHosting(Protocol):
    """A substrate whose machines run a Kubernetes cluster per site."""

    def site_clusters(self) -> dict[str, SiteCluster]:
        """Each site's cluster (empty: the stack was brought up without them)."""
        ...

    def load_images(self, site: str, archives: Sequence[Path]) -> None:
        """Make locally built image archives available to `site`'s cluster (its nodes never pull)."""
        ...

    def node_loss(self, site: str, node: str | None = None) -> Actuator:
        """A node of `site`'s cluster lost (kubelet dead, network port silent; the substrate's pick unless named)."""
        ...

    def api_server_cut(self, site: str) -> Actuator:
        """`site`'s cluster API server cut off the network (its nodes and the operator lose it)."""
        ...


class Clusters(ABC):
    """The services a stack runs in its site clusters rather than on hosts, and everything tradestack does there."""

    services: tuple[str, ...]        # the services that run in the clusters

    @abstractmethod
    def sites(self) -> dict[str, SiteCluster]:
        """Each site's cluster."""

    @abstractmethod
    def deploy_vars(self) -> dict[str, Any]:
        """Playbook variables a deploy adds (which services the hosts leave to the clusters, their backends)."""

    @abstractmethod
    def apply_workloads(self, public: Mapping[str, Any], secret: Mapping[str, Any],
                        on_step: Callable[[str], None] = lambda s: None) -> dict[str, Any] | None:
        """After the playbooks: apply the workloads from the same deploy variables."""

    @abstractmethod
    def view(self) -> dict[str, dict[str, Any]]:
        """Per site: `nodes` (name -> Ready), `services` (name -> replicas, ready, disruptions_allowed,
        cpu_request_m), `expected` (the services it should run) and `error` (its API did not answer)."""

    @abstractmethod
    def signals(self) -> dict[str, int]:
        """Counters sampled during drills (per site: nodes Ready, trading pods ready, evicted)."""

    @abstractmethod
    def actuator(self, fault: Fault) -> Actuator | None:
        """A cluster fault resolved now with its inverse; None: not a fault of the clusters."""

    @abstractmethod
    def check_fault(self, fault: Fault) -> bool:
        """Fail if a cluster fault names what the stack does not have; False: not a fault of the clusters."""

    def dry_run(self, fault: Fault) -> list[str] | None:
        """The API calls a cluster fault makes; None: not one whose calls can be listed here."""
        return None

    def audit_facts(self) -> dict[str, Any]:
        """What the audit's Kubernetes controls need (the clusters, their namespace, the clustered services)."""
        return {}

    def problems(self) -> list[str]:
        """What keeps the workloads from their steady state (empty: steady)."""
        return health.cluster_problems(self.view())
