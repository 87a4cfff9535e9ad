"""A lab stack of the benchmarks' own: run-unique names (stack, service user, state roots), removed after."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tradestack.hostsettings import HostSettings
from tradestack.lab.stack import LabStack
from tradestack.substrates import registry

TOPOLOGIES = Path(__file__).resolve().parents[2] / "infra" / "topologies"


def remove_created(settings: HostSettings) -> None:
    """What the deploy created under this run's own names: its user, group and roots (argv, no shell)."""
    subprocess.run(["userdel", settings.service_user], check=False, capture_output=True)
    subprocess.run(["groupdel", settings.service_group], check=False, capture_output=True)
    for root in (settings.state_root, settings.software_root):
        shutil.rmtree(root, ignore_errors=True)
        parent = Path(root).parent   # the benchmarks' own parent, once no other run is left in it
        if parent.name == "tradestack-bench" and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()


@contextmanager
def fresh_stack(prefix: str, topology: str = "lab.yaml", kind: str = "lab") -> Iterator[Any]:
    """A stack not yet up (the caller brings it up), under names no earlier run used; destroyed after. `kind`:
    its substrate (kubernetes: the lab's hosts with a cluster per site)."""
    run = secrets.token_hex(3)
    settings = HostSettings(f"tb{run}", f"tb{run}g", f"/var/lib/tradestack-bench/{run}",
                            f"/opt/tradestack-bench/{run}")
    with tempfile.TemporaryDirectory() as home:
        previous = os.environ.get("TRADESTACK_HOME")
        os.environ["TRADESTACK_HOME"] = home
        name = f"{prefix}{run}"
        stack = (LabStack(name, TOPOLOGIES / topology, host_settings=settings) if kind == "lab"
                 else registry.lifecycle(name, kind=kind, source=TOPOLOGIES / topology, host_settings=settings))
        try:
            yield stack
        finally:
            stack.destroy()
            remove_created(settings)
            if previous is None:
                os.environ.pop("TRADESTACK_HOME", None)
            else:
                os.environ["TRADESTACK_HOME"] = previous


@contextmanager
def deployed_stack(prefix: str, topology: str = "lab.yaml", kind: str = "lab") -> Iterator[str]:
    """`fresh_stack`, brought up and deployed; yields its name."""
    from tradestack.deploy import run as deploy_run

    with fresh_stack(prefix, topology, kind) as stack:
        stack.up()
        registry.record_kind(stack.name, kind)
        deployed = deploy_run.apply(deploy_run.plan(stack.name))
        if not deployed.ok:
            raise SystemExit(f"deploy failed: {[vars(f) for f in deployed.failures]}")
        yield stack.name
