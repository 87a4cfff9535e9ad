"""What the lab's Kubernetes clusters could leave machine-wide, judged per cluster: two clusters of one run (this
module's users, on different workers) add and remove their pods at the same time."""

from __future__ import annotations

import re
from pathlib import Path

from tradestack.adapters.commands import run

CACHED = re.compile(r"^(?P<network>.+)-(?P<sandbox>[0-9a-f]{64})-(?P<interface>[^-]+)$")


def pod_namespaces() -> set[str]:
    """The CRI's per-pod network namespaces in the machine-wide /run/netns (the lab's clusters keep theirs under
    each node's own state: none of theirs belongs here)."""
    return {n.split()[0] for n in run(["ip", "netns", "list"]).stdout.splitlines() if n.startswith("cni-")}


def not_others(cached: set[Path], ours: str) -> set[Path]:
    """The entries of libcni's result cache that no other cluster's network owns: libcni keeps one file per sandbox
    and network (`<network>-<sandbox>-<interface>`), the loopback's among them; a sandbox is another's when any of
    its entries names a network that neither starts with `ours` nor is the loopback."""
    others = {m["sandbox"] for p in cached if (m := CACHED.match(p.name))
              and not m["network"].startswith(ours) and m["network"] != "cni-loopback"}
    return {p for p in cached if not ((m := CACHED.match(p.name)) and m["sandbox"] in others)}
