"""The lab changes kernel network state: it needs root or CAP_NET_ADMIN (+ CAP_SYS_ADMIN for netns)."""

from __future__ import annotations

import os

from ..errors import EnvironmentProblem

CAP_NET_ADMIN, CAP_SYS_ADMIN = 12, 21


def effective_caps() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def require_net_admin() -> None:
    """Refuse early, before Pulumi starts, with one clear line."""
    if os.geteuid() == 0:
        return
    caps = effective_caps()
    if caps & (1 << CAP_NET_ADMIN) and caps & (1 << CAP_SYS_ADMIN):
        return
    raise EnvironmentProblem("the lab needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN) to create network "
                             "namespaces; run it with sudo")
