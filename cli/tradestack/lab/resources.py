"""Pulumi dynamic providers for lab resources, backed by pyroute2, nftables and real daemons.

Each provider has real create, diff, update, delete and read: `read` reports what the kernel
actually has, so `pulumi refresh` sees drift (a namespace deleted by hand, a daemon killed) and
the next `up` repairs it. Identity fields (names) force a replacement; anything else is updated
in place. Providers must live in an importable module: Pulumi pickles them by reference.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import types
from abc import abstractmethod
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult

from . import cluster, daemons, machines, netlink

GONE = ReadResult(id_="", outs={})
# What an update asked for, kept among a resource's outputs: a refresh reads the kernel against it. The outputs
# alone will not do: one a refresh saw missing is None, which Pulumi drops from the state, so a second refresh
# before an `up` had no gateway to look for (KeyError: 'gateway').
WANTED = "wanted"


class _LabProvider(ResourceProvider):
    identity: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()

    @abstractmethod
    def apply(self, props: dict[str, Any]) -> dict[str, Any]:
        """Make the kernel match `props` (idempotent); return extra outputs."""

    @abstractmethod
    def observe(self, props: dict[str, Any]) -> dict[str, Any] | None:
        """What the kernel has now for these props, or None when the resource is gone."""

    @abstractmethod
    def remove(self, props: dict[str, Any]) -> None:
        """Delete it; a resource already gone is not an error."""

    def resource_id(self, props: dict[str, Any]) -> str:
        return "/".join(str(props.get(k)) for k in self.identity)

    def _wanted(self, props: dict[str, Any]) -> dict[str, Any]:
        return {k: props[k] for k in self.inputs if props.get(k) is not None}

    def create(self, props: dict[str, Any]) -> CreateResult:
        outs = {**props, **self.apply(props), WANTED: self._wanted(props)}
        return CreateResult(id_=self.resource_id(props), outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in self.inputs if olds.get(k) != news.get(k)]
        replaces = [k for k in changed if k in self.identity]
        return DiffResult(changes=bool(changed), replaces=replaces, delete_before_replace=True)

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs={**news, **self.apply(news), WANTED: self._wanted(news)})

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        self.remove(props)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """`props` are the outputs the state holds: the kernel is read against what was wanted (a state written
        before WANTED existed: against its outputs)."""
        seen = self.observe({**props, **(props.get(WANTED) or {})})
        if seen is None:
            return GONE
        return ReadResult(id_=id_, outs={**props, **seen})


class NamespaceProvider(_LabProvider):
    identity = ("name",)
    inputs = ("name", "forwarding", "loopback")

    def apply(self, props: dict[str, Any]) -> dict[str, Any]:
        netlink.create_namespace(props["name"], bool(props.get("forwarding")), list(props.get("loopback") or []))
        return {}

    def observe(self, props: dict[str, Any]) -> dict[str, Any] | None:
        if not netlink.ns_exists(props["name"]):
            return None
        state = netlink.link_state(props["name"], "lo")
        have = {a.split("/")[0] for a in (state or {}).get("addresses", [])}
        return {"loopback": [a for a in props.get("loopback") or [] if a in have]}

    def remove(self, props: dict[str, Any]) -> None:
        netlink.delete_namespace(props["name"])


class BridgeProvider(_LabProvider):
    identity = ("netns", "ifname")
    inputs = ("netns", "ifname", "address")

    def apply(self, props: dict[str, Any]) -> dict[str, Any]:
        netlink.create_bridge(props.get("netns"), props["ifname"], props.get("address"))
        return {}

    def observe(self, props: dict[str, Any]) -> dict[str, Any] | None:
        state = netlink.link_state(props.get("netns"), props["ifname"])
        if state is None:
            return None
        want = props.get("address")
        return {"address": want if not want or want in state["addresses"] else None}

    def remove(self, props: dict[str, Any]) -> None:
        netlink.delete_link(props.get("netns"), props["ifname"])


class VethProvider(_LabProvider):
    """A cable: a veth pair, an end in each namespace. `up` is wanted (always true): a machine's power switch
    darkens its LAN port, so a lab left with a port down (a drill's restore that never ran) is drift that the next
    `up` lights, before the routes that need it."""

    identity = ("a_netns", "a_ifname", "b_netns", "b_ifname")
    inputs = (*identity, "a_address", "b_address", "a_bridge", "b_bridge", "up")

    @staticmethod
    def _ends(props: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        return tuple({"netns": props.get(f"{s}_netns"), "ifname": props[f"{s}_ifname"],  # type: ignore[return-value]
                      "address": props.get(f"{s}_address"), "bridge": props.get(f"{s}_bridge")} for s in "ab")

    def apply(self, props: dict[str, Any]) -> dict[str, Any]:
        netlink.create_veth(*self._ends(props))
        return {}

    def observe(self, props: dict[str, Any]) -> dict[str, Any] | None:
        seen: dict[str, Any] = {}
        for end, side in zip(self._ends(props), "ab"):
            state = netlink.link_state(end["netns"], end["ifname"])
            if state is None:
                return None
            want = end["address"]
            seen[f"{side}_address"] = want if not want or want in state["addresses"] else None
            seen[f"{side}_bridge"] = state["master"]
            seen["up"] = seen.get("up", True) and state["up"]
        return seen

    def remove(self, props: dict[str, Any]) -> None:
        a, b = self._ends(props)
        netlink.delete_link(a["netns"], a["ifname"])
        netlink.delete_link(b["netns"], b["ifname"])


class DefaultRouteProvider(_LabProvider):
    identity = ("netns",)
    inputs = ("netns", "gateway")

    def apply(self, props: dict[str, Any]) -> dict[str, Any]:
        netlink.add_default_route(props["netns"], props["gateway"])
        return {}

    def observe(self, props: dict[str, Any]) -> dict[str, Any] | None:
        if not netlink.ns_exists(props["netns"]):
            return None
        out = netlink.run_in(props["netns"], ["ip", "-4", "route", "show", "default"], check=False).stdout
        want = props.get("gateway")  # none in a state a refresh wrote before WANTED: an `up` puts it back
        return {"gateway": want if want and f"via {want} " in out + " " else None}

    def remove(self, props: dict[str, Any]) -> None:
        if netlink.ns_exists(props["netns"]):
            netlink.run_in(props["netns"], ["ip", "route", "del", "default"], check=False)


class RouteProvider(_LabProvider):
    """A route to a prefix via a gateway (an edge routing its site's pod range to the site's Kubernetes node)."""

    identity = ("netns", "dst")
    inputs = ("netns", "dst", "gateway")

    def apply(self, props: dict[str, Any]) -> dict[str, Any]:
        netlink.set_route(props["netns"], props["dst"], props["gateway"])
        return {}

    def observe(self, props: dict[str, Any]) -> dict[str, Any] | None:
        via = netlink.route_via(props["netns"], props["dst"])
        return None if via is None else {"gateway": via}

    def remove(self, props: dict[str, Any]) -> None:
        netlink.delete_route(props["netns"], props["dst"])


class ClusterProvider(_LabProvider):
    """A site's Kubernetes cluster (lab/cluster.py). `components` lists what must run: `read` reports
    what does, so a refresh shows a stopped component as drift and the next `up` starts it again."""

    identity = ("name", "netns")
    inputs = ("name", "netns", "node", "node_ip", "api_addresses", "pod_cidr", "service_cidr", "directory",
              "workers", "components")

    def apply(self, props: dict[str, Any]) -> dict[str, Any]:
        spec = cluster.from_props(props)
        kubeconfig = cluster.start(spec, [])
        cluster.wait_ready(spec)
        return {"kubeconfig": kubeconfig.read_text(), "server": spec.server}

    def observe(self, props: dict[str, Any]) -> dict[str, Any] | None:
        spec = cluster.from_props(props)
        up = [c for c in spec.components if cluster.running(spec, c)]
        return None if not up or not netlink.ns_exists(spec.netns) else {"components": up}

    def remove(self, props: dict[str, Any]) -> None:
        spec = cluster.from_props(props)
        left = cluster.stop(spec)
        if left:
            raise netlink.LabError(f"cluster {spec.name} left behind: {', '.join(left)}")
        shutil.rmtree(spec.directory, ignore_errors=True)


NFT_TABLE = "tradestack"


def nft_ruleset(table: str) -> str:
    """An empty filter table with one chain per hook; drills insert their fault rules here."""
    return (f"table inet {table} {{\n"
            "  chain input { type filter hook input priority -10; policy accept; }\n"
            "  chain forward { type filter hook forward priority -10; policy accept; }\n"
            "  chain output { type filter hook output priority -10; policy accept; }\n"
            "}\n")


class NftTableProvider(_LabProvider):
    identity = ("netns", "table")
    inputs = ("netns", "table")

    def apply(self, props: dict[str, Any]) -> dict[str, Any]:
        netlink.run_in(props["netns"], ["nft", "-f", "-"], input=nft_ruleset(props["table"]))
        return {}

    def observe(self, props: dict[str, Any]) -> dict[str, Any] | None:
        if not netlink.ns_exists(props["netns"]):
            return None
        proc = netlink.run_in(props["netns"], ["nft", "list", "table", "inet", props["table"]], check=False)
        return {} if proc.returncode == 0 else None

    def remove(self, props: dict[str, Any]) -> None:
        if netlink.ns_exists(props["netns"]):
            netlink.run_in(props["netns"], ["nft", "delete", "table", "inet", props["table"]], check=False)


class DaemonProvider(_LabProvider):
    identity = ("netns", "kind")
    inputs = ("netns", "kind", "workdir", "config", "authorized_key")

    def apply(self, props: dict[str, Any]) -> dict[str, Any]:
        return daemons.start(props["kind"], props["netns"], props["workdir"], props["config"],
                             {"authorized_key": props.get("authorized_key") or ""})

    def observe(self, props: dict[str, Any]) -> dict[str, Any] | None:
        pid = daemons.running(props["kind"], props["netns"], props["workdir"])
        return None if pid is None else {"pid": pid}

    def remove(self, props: dict[str, Any]) -> None:
        daemons.stop(props["kind"], props["netns"], props["workdir"])


class MachineProvider(_LabProvider):
    """A host booted as a Debian machine (lab/machines.py) in its namespace: its disk an overlay of the base image
    under `state`, the stack's key authorised for root, apt going through the lab's package proxy, sshd's host key
    (made at its first boot) an output for the stack's pinned known_hosts. `running` is what is wanted (always true): `read` reports whether it is, so a
    refresh sees a machine powered off by hand and the next `up` boots it again, on the same disk. A new release,
    package set or mirror is a new disk (replaced); deleting it powers it off and removes its disk."""

    identity = ("name", "netns", "release", "packages", "mirror")
    inputs = ("name", "netns", "state", "release", "packages", "mirror", "authorized_key", "apt_proxy", "running")
    BOOT_S = 60.0

    def resource_id(self, props: dict[str, Any]) -> str:
        return str(props["name"])

    @staticmethod
    def machine(props: dict[str, Any]) -> machines.Machine:
        image = machines.BaseImage(props["release"], tuple(props["packages"]), props["mirror"])
        return machines.Machine(props["name"], props["netns"], Path(props["state"]), image)

    def apply(self, props: dict[str, Any]) -> dict[str, Any]:
        machine = self.machine(props)
        machines.build_image(machine.image)
        machine.mount()
        machine.authorize(props.get("authorized_key") or "")
        machine.use_apt_proxy(props.get("apt_proxy") or "")
        machine.boot(self.BOOT_S)
        return {"running": True, "host_key": machine.ssh_host_key(self.BOOT_S)}

    def observe(self, props: dict[str, Any]) -> dict[str, Any] | None:
        machine = self.machine(props)
        if not machine.state.is_dir():
            return None
        return {"running": machine.running()}

    def remove(self, props: dict[str, Any]) -> None:
        self.machine(props).remove()


class KeyPairProvider(_LabProvider):
    """The stack's ed25519 SSH key; the private half is a Pulumi secret (encrypted in state)."""

    identity = ("comment",)
    inputs = ("comment",)

    def apply(self, props: dict[str, Any]) -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as tmp:
            key = Path(tmp) / "id"
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", props["comment"], "-f",
                            str(key)], check=True, capture_output=True)
            return {"private_key": key.read_text(), "public_key": key.with_suffix(".pub").read_text().strip()}

    def observe(self, props: dict[str, Any]) -> dict[str, Any] | None:
        return {}  # lives only in the stack's state

    def remove(self, props: dict[str, Any]) -> None:
        return None

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = olds.get("comment") != news.get("comment")
        return DiffResult(changes=changed, replaces=["comment"] if changed else [])


def _resource(provider: type[_LabProvider], type_name: str) -> type[Resource]:
    def __init__(self: Resource, name: str, props: dict[str, Any],
                 opts: pulumi.ResourceOptions | None = None) -> None:
        Resource.__init__(self, provider(), name, props, opts)

    # type token: pulumi-python:dynamic/lab:<type_name>
    return types.new_class(type_name, (Resource,), {"module": "lab", "name": type_name},
                           lambda ns: ns.update({"__init__": __init__, "__module__": __name__}))


Namespace = _resource(NamespaceProvider, "Namespace")
Bridge = _resource(BridgeProvider, "Bridge")
Veth = _resource(VethProvider, "Veth")
DefaultRoute = _resource(DefaultRouteProvider, "DefaultRoute")
Route = _resource(RouteProvider, "Route")
Cluster = _resource(ClusterProvider, "Cluster")
NftTable = _resource(NftTableProvider, "NftTable")
Daemon = _resource(DaemonProvider, "Daemon")
Machine = _resource(MachineProvider, "Machine")
KeyPair = _resource(KeyPairProvider, "KeyPair")
