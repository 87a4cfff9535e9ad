"""Substrates by name, like testinfra's backends: a stack records which one it runs on, commands open it.

Each kind is imported only when a stack of that kind is opened (the lab pulls in Pulumi and netlink).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..hostsettings import HostSettings
from ..paths import state_dir
from .base import StackLifecycle, Substrate

# kind -> "module:class"; the class has `open(stack_name) -> Substrate` and
# `lifecycle(stack_name, topology, host_settings) -> StackLifecycle`, or, when it is `layered` (clusters on the
# hosts of another kind), `over(base: Substrate)` and `lifecycle_over(base: StackLifecycle)`
KINDS: dict[str, str] = {"lab": "tradestack.lab.substrate:LabSubstrate",
                         "hosts": "tradestack.hosts.substrate:HostsSubstrate",
                         "kubernetes": "tradestack.kubernetes.substrate:KubernetesClusters"}
DEFAULT_KIND = "lab"


def _record(stack: str) -> Path:
    return state_dir() / "stacks" / stack / "substrate"


def kind_of(stack: str) -> str:
    """The substrate a stack was brought up on (its record; stacks from before records existed are labs)."""
    path = _record(stack)
    kind = path.read_text().strip() if path.exists() else DEFAULT_KIND
    if kind not in KINDS:
        raise InputError(f"stack {stack!r} records substrate {kind!r}, which this version does not know; "
                         f"known: {', '.join(sorted(KINDS))}")
    return kind


def record_kind(stack: str, kind: str) -> None:
    """Remember which substrate a stack runs on (written when the stack is brought up)."""
    if kind not in KINDS:
        raise InputError(f"no substrate {kind!r}; known: {', '.join(sorted(KINDS))}")
    path = _record(stack)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(kind + "\n")


def _class(kind: str) -> Any:
    module, _, cls = KINDS[kind].partition(":")
    return getattr(importlib.import_module(module), cls)


def open_stack(stack: str) -> Substrate:
    """The deployed stack `stack`, on whichever substrate it runs."""
    return open_kind(stack, kind_of(stack))


def hosts_file(stack: str, private_key: Path) -> dict[str, Any]:
    """A hosts file describing stack `stack`'s machines (`stack hosts-file`): the lab writes its own from the stack
    as Pulumi has it, so a lab of booted machines, which is not deployed as a lab, can be adopted as an estate;
    any other substrate's machines already have one (its substrate says so)."""
    describe = getattr(lifecycle(stack), "hosts_file", None)
    return describe(private_key) if describe is not None else open_stack(stack).hosts_file(private_key)


def power(stack: str, host: str, action: str) -> str:
    """Switch a host of stack `stack` off or on, or say whether it is (`stack power`): a lab of machines has a
    switch per machine; an estate's hosts are switched by the commands its hosts file names (a drill runs them)."""
    switch = getattr(lifecycle(stack), "power", None)
    if switch is None:
        raise InputError(f"stack {stack!r} runs on {kind_of(stack)!r}, whose hosts tradestack cannot switch here: a "
                         "lab of machines has power switches; an estate's go in its hosts file (`power`)")
    return str(switch(host, action))


def lifecycle(stack: str, *, kind: str | None = None, source: Path | None = None,
              host_settings: HostSettings | None = None, machines: bool | None = None) -> StackLifecycle:
    """The stack as Pulumi manages it (to preview, bring up, refresh or destroy); `kind` for a new stack, whose
    `source` is what it is brought up from (the lab: a topology file; hosts: a hosts file). `machines`: a lab's
    hosts booted as Debian machines, or namespaces (None: as the stack has it)."""
    recorded = kind_of(stack) if _record(stack).exists() else None
    chosen = kind or recorded or DEFAULT_KIND
    if chosen not in KINDS:
        raise InputError(f"no substrate {chosen!r}; known: {', '.join(sorted(KINDS))}")
    if recorded is not None and kind is not None and kind != recorded:
        raise InputError(f"stack {stack!r} runs on substrate {recorded!r}, not {kind!r}")
    if machines is not None and chosen != DEFAULT_KIND:
        raise InputError(f"--machines and --namespaces are for lab stacks; stack {stack!r} runs on {chosen!r}")
    cls = _class(chosen)
    if getattr(cls, "layered", False):
        managed: StackLifecycle = cls.lifecycle_over(_class(hosts_kind(stack)).lifecycle(stack, source, host_settings,
                                                                                          clusters=True))
    elif machines is not None:
        managed = cls.lifecycle(stack, source, host_settings, machines=machines)
    else:
        managed = cls.lifecycle(stack, source, host_settings)
    return managed


def hosts_kind(stack: str) -> str:
    """The substrate whose hosts a layered one (kubernetes: clusters on hosts) runs on. Only the default's hosts
    carry clusters today (a hosts file does not declare them yet)."""
    return DEFAULT_KIND


def open_kind(stack: str, kind: str) -> Substrate:
    """The deployed stack `stack` opened as `kind` (a layered kind over its hosts' kind, opened first)."""
    cls = _class(kind)
    opened: Substrate = cls.over(open_kind(stack, hosts_kind(stack))) if getattr(cls, "layered", False) \
        else cls.open(stack)
    return opened
