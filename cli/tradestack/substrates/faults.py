"""The faults a substrate applies: the vocabulary drills are written in (pydantic v2, the drill file's `faults:`).

A fault speaks the topology's language: it names risk groups (`carrier:ct`, `facility:cm-tko`, `site:hk1`),
hosts, services and upstreams. Each says in words what it does (`describe`); each substrate resolves the ones it
can into an `Actuator` (base.py) and refuses the others before anything is touched. A new kind of fault is a class
here and a case in the substrates that apply it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Seconds = Annotated[float, Field(ge=0, le=3600)]


class Strict(BaseModel):
    """A file's schema: unknown keys, wrong types and edits after parsing are errors."""
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# A host by name (`sz1-orderdb-1`, without the stack prefix) or picked when the drill runs:
#   @database-leader     the host whose Patroni leads now
#   @vip-holder:SITE     the gateway holding SITE's virtual IP now
HostRef = Annotated[str, StringConstraints(pattern=r"^(@database-leader|@vip-holder:[a-z][a-z0-9-]*|"
                                                   r"[a-z][a-z0-9-]*-[0-9]+)$")]

VenueMode = Literal["down", "hang", "slow", "reject-all", "cancel-all", "flap"]


class _Fault(Strict):
    at_s: Seconds = 0.0             # after the baseline window
    duration_s: Seconds = 15.0      # then the fault is undone (restore runs whatever happens)
    # every kind says what it does in words, `describe()` (no stack needed): what a plan and `--dry-run` print


class LinkDown(_Fault):
    """Every link a risk group carries goes down (a carrier, a facility's uplinks, a whole site)."""
    kind: Literal["link-down"]
    group: str

    def describe(self) -> str:
        return f"every link of risk group {self.group} down"


class Blackhole(_Fault):
    """A carrier keeps its links up but silently drops everything (a gray failure)."""
    kind: Literal["blackhole"]
    carrier: str

    def describe(self) -> str:
        return f"carrier {self.carrier} silently drops all traffic (links stay up)"


class Throttle(_Fault):
    """A carrier degraded, not dead: its links limited to `rate_kbit`."""
    kind: Literal["throttle"]
    carrier: str
    rate_kbit: Annotated[int, Field(ge=8, le=10_000_000)] = 64

    def describe(self) -> str:
        return f"carrier {self.carrier} throttled to {self.rate_kbit} kbit/s"


class HostCrash(_Fault):
    """A host dies: every process in it killed, its LAN port down (a dead host answers no ARP)."""
    kind: Literal["host-crash"]
    host: HostRef

    def describe(self) -> str:
        return f"host {self.host} crashes (every process killed, LAN port down)"


# The power feed of whichever site holds the database leader when the fault is injected (a PowerLoss group).
LEADER_SITE = "@database-leader-site"


class PowerLoss(_Fault):
    """A risk group loses power: every host in it crashes and every link it carries goes down. The group may be
    LEADER_SITE: the power feed of the site whose host leads the database at that moment."""
    kind: Literal["power-loss"]
    group: str

    def describe(self) -> str:
        if self.group == LEADER_SITE:
            return "power lost in the site that leads the database (its power feed): its hosts crash, its links go down"
        return f"power lost in {self.group}: its hosts crash, its links go down"


class Reboot(_Fault):
    """A host restarted in order (a kernel update, an operator's `reboot`): its init stops every service, then it
    boots and starts what is enabled, and nobody deploys. Hosts run by systemd only."""
    kind: Literal["reboot"]
    host: HostRef

    def describe(self) -> str:
        return f"host {self.host} reboots (orderly shutdown, then boot)"


class HostFreeze(_Fault):
    """Every process of a host stopped with SIGSTOP: alive to the kernel, silent to its peers."""
    kind: Literal["host-freeze"]
    host: HostRef

    def describe(self) -> str:
        return f"host {self.host} frozen (SIGSTOP to every process)"


class ProcessKill(_Fault):
    """One supervised program of a host killed (its supervisor restarts it)."""
    kind: Literal["process-kill"]
    host: HostRef
    program: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*$")]

    def describe(self) -> str:
        return f"program {self.program} on host {self.host} killed"


class Partition(_Fault):
    """Two sites stop reaching each other; both still reach the carriers and clients."""
    kind: Literal["partition"]
    sites: Annotated[list[str], Field(min_length=2, max_length=2)]

    def describe(self) -> str:
        return f"sites {self.sites[0]} and {self.sites[1]} partitioned from each other"


class Upstream(_Fault):
    """An upstream venue misbehaves (its simulator's fault mode)."""
    kind: Literal["venue-mode"]
    upstream: str
    mode: VenueMode
    latency_ms: Annotated[int, Field(ge=0, le=60_000)] = 0

    def describe(self) -> str:
        return f"upstream {self.upstream} switched to mode {self.mode}"


class ClusterFault(_Fault):
    """A fault of a site's Kubernetes cluster: only a substrate with clusters applies it."""
    site: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*$")]


class NodeLoss(ClusterFault):
    """A site's Kubernetes node is lost: its kubelet dies and its network port goes down, while the cluster's
    control plane stays up (it marks the node NotReady and evicts its pods after their tolerationSeconds)."""
    kind: Literal["node-loss"]

    def describe(self) -> str:
        return f"site {self.site}'s Kubernetes node lost (kubelet killed, network port down; control plane up)"


class PodDelete(ClusterFault):
    """Every trading pod of a site's cluster deleted at once through the Kubernetes API (a bad rollout, an
    operator's slip); their Deployments replace them. Undoing it is waiting until they are all ready again."""
    kind: Literal["pod-delete"]

    def describe(self) -> str:
        return f"every trading pod of site {self.site}'s Kubernetes cluster deleted"


class NodeDrain(ClusterFault):
    """A node of a site's cluster cordoned and drained through the Eviction API, as for maintenance (the
    disruption budgets set the pace); uncordoned when the fault ends."""
    kind: Literal["node-drain"]

    def describe(self) -> str:
        return f"a node of site {self.site}'s Kubernetes cluster cordoned and drained"


class ApiServerCut(ClusterFault):
    """A site cluster's API server cut off the network: the other nodes' kubelets and the operator lose it (its
    own node's control plane keeps it on loopback). The pods already running should keep serving."""
    kind: Literal["api-server-cut"]

    def describe(self) -> str:
        return f"site {self.site}'s Kubernetes API server cut off the network"


class LoadSpike(_Fault):
    """Extra client load on top of the drill's: `multiplier` x the topology's peak."""
    kind: Literal["load-spike"]
    multiplier: Annotated[float, Field(gt=0, le=10)] = 3.0

    def describe(self) -> str:
        return f"load spike: {self.multiplier:g} x peak on top of the drill's load"


Fault = Annotated[LinkDown | Blackhole | Throttle | HostCrash | PowerLoss | Reboot | HostFreeze | ProcessKill
                  | Partition | Upstream | NodeLoss | PodDelete | NodeDrain | ApiServerCut | LoadSpike,
                  Field(discriminator="kind")]
