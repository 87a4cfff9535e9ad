"""The drill file's schema (pydantic v2): what to break, under what load, and what must hold.

A drill speaks the topology's language: faults name risk groups (`carrier:ct`, `facility:cm-tko`,
`site:hk1`), hosts, services and upstreams; load is a fraction of the topology's peak.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

DrillName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*$", max_length=48)]
Seconds = Annotated[float, Field(ge=0, le=3600)]
Fraction = Annotated[float, Field(ge=0, le=1)]

# A host by name (`sz1-orderdb-1`, without the stack prefix) or picked when the drill runs:
#   @database-leader     the host whose Patroni leads now
#   @vip-holder:SITE     the gateway holding SITE's virtual IP now
HostRef = Annotated[str, StringConstraints(pattern=r"^(@database-leader|@vip-holder:[a-z][a-z0-9-]*|"
                                                   r"[a-z][a-z0-9-]*-[0-9]+)$")]

VenueMode = Literal["down", "hang", "slow", "reject-all", "cancel-all", "flap"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Fault(_Strict):
    at_s: Seconds = 0.0             # after the baseline window
    duration_s: Seconds = 15.0      # then the fault is undone (restore runs whatever happens)


class LinkDown(_Fault):
    """Every link a risk group carries goes down (a carrier, a facility's uplinks, a whole site)."""
    kind: Literal["link-down"]
    group: str


class Blackhole(_Fault):
    """A carrier keeps its links up but silently drops everything (a gray failure)."""
    kind: Literal["blackhole"]
    carrier: str


class Throttle(_Fault):
    """A carrier degraded, not dead: its links limited to `rate_kbit`."""
    kind: Literal["throttle"]
    carrier: str
    rate_kbit: Annotated[int, Field(ge=8, le=10_000_000)] = 64


class HostCrash(_Fault):
    """A host dies: every process in it killed, its LAN port down (a dead host answers no ARP)."""
    kind: Literal["host-crash"]
    host: HostRef


class PowerLoss(_Fault):
    """A risk group loses power: every host in it crashes and every link it carries goes down."""
    kind: Literal["power-loss"]
    group: str


class HostFreeze(_Fault):
    """Every process of a host stopped with SIGSTOP: alive to the kernel, silent to its peers."""
    kind: Literal["host-freeze"]
    host: HostRef


class ProcessKill(_Fault):
    """One supervised program of a host killed (its supervisor restarts it)."""
    kind: Literal["process-kill"]
    host: HostRef
    program: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*$")]


class Partition(_Fault):
    """Two sites stop reaching each other; both still reach the carriers and clients."""
    kind: Literal["partition"]
    sites: Annotated[list[str], Field(min_length=2, max_length=2)]


class Upstream(_Fault):
    """An upstream venue misbehaves (its simulator's fault mode)."""
    kind: Literal["venue-mode"]
    upstream: str
    mode: VenueMode
    latency_ms: Annotated[int, Field(ge=0, le=60_000)] = 0


class ClusterFault(_Fault):
    """A fault of a site's Kubernetes cluster: only a substrate with clusters applies it."""
    site: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*$")]


class NodeLoss(ClusterFault):
    """A site's Kubernetes node is lost: its kubelet dies and its network port goes down, while the cluster's
    control plane stays up (it marks the node NotReady and evicts its pods after their tolerationSeconds)."""
    kind: Literal["node-loss"]


class PodDelete(ClusterFault):
    """Every trading pod of a site's cluster deleted at once through the Kubernetes API (a bad rollout, an
    operator's slip); their Deployments replace them. Undoing it is waiting until they are all ready again."""
    kind: Literal["pod-delete"]


class NodeDrain(ClusterFault):
    """A node of a site's cluster cordoned and drained through the Eviction API, as for maintenance (the
    disruption budgets set the pace); uncordoned when the fault ends."""
    kind: Literal["node-drain"]


class ApiServerCut(ClusterFault):
    """A site cluster's API server cut off the network: the other nodes' kubelets and the operator lose it (its
    own node's control plane keeps it on loopback). The pods already running should keep serving."""
    kind: Literal["api-server-cut"]


class LoadSpike(_Fault):
    """Extra client load on top of the drill's: `multiplier` x the topology's peak."""
    kind: Literal["load-spike"]
    multiplier: Annotated[float, Field(gt=0, le=10)] = 3.0


Fault = Annotated[LinkDown | Blackhole | Throttle | HostCrash | PowerLoss | HostFreeze | ProcessKill | Partition | Upstream
                  | NodeLoss | PodDelete | NodeDrain | ApiServerCut | LoadSpike, Field(discriminator="kind")]


class Load(_Strict):
    """The drill's clients: a share of the topology's peak, both its order rate and its sessions (each session
    holds its connection and refreshes its balance screen every `refresh_s`, the topology's when not given)."""
    peak_fraction: Annotated[float, Field(gt=0, le=10)] = 1.0   # of the topology's peak orders/s and sessions
    sessions: Annotated[int, Field(ge=1, le=20_000)] | None = None   # default: peak sessions x peak_fraction
    refresh_s: Annotated[float, Field(gt=0, le=3600)] | None = None
    overnight_share: Fraction = 0.5                              # orders for the overnight venue
    limit_share: Fraction = 0.0


class Timing(_Strict):
    baseline_s: Seconds = 5.0     # load before any fault: the "before" figures
    recovery_s: Seconds = 20.0    # load after every fault is restored (however long that took): the "after" figures
    settle_s: Seconds = 60.0      # how long orders may still be routed before reconciling


class Expectations(_Strict):
    max_recovery_s: Annotated[float, Field(ge=0)] | None = None   # fault to sustained service (0: never noticed)
    max_acked_lost: Annotated[int, Field(ge=0)] = 0
    max_duplicates: Annotated[int, Field(ge=0)] = 0
    max_error_rate: Fraction | None = None                        # client-visible, over the whole drill
    wrong_balances: Annotated[int, Field(ge=0)] = 0
    every_order_accounted: bool = True   # no order left pending or ended without a reason


class Abort(_Strict):
    """Stop injecting and restore at once when clients suffer more than this for this long."""
    error_rate: Fraction = 1.0
    for_s: Annotated[float, Field(gt=0)] = 30.0


class Drill(_Strict):
    name: DrillName
    description: str
    faults: list[Fault] = Field(min_length=1)
    load: Load = Load()
    timing: Timing = Timing()
    expect: Expectations = Expectations()
    abort: Abort = Abort()

    @property
    def digest(self) -> str:
        """SHA-256 of the definition as parsed (faults, load, timing, expectations, abort; not the file's layout or
        comments): what a run is evidence of. A renamed or edited copy of a catalogue drill has another digest."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def fault_window_s(self) -> float:
        """From the first injection to the last restore."""
        return max(f.at_s + f.duration_s for f in self.faults)
