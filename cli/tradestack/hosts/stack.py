"""A hosts stack: the hosts program on the local Pulumi backend, plus the access files it produces."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ..adapters.ansible import ssh_access_vars
from ..adapters.pulumi import ManagedStack, OpResult, StackSpec, ensure_private
from ..errors import InputError
from ..hostsettings import HostSettings
from ..paths import state_dir
from ..substrates.base import AccessFiles
from .load import load_hosts_file
from .program import program

PROJECT = "tradestack-hosts"


def access_dir(stack: str, home: Path | None = None) -> Path:
    return (home or state_dir()) / "stacks" / stack


class HostsStack(ManagedStack):
    """The hosts stack of one name. `hosts_file` is only needed to create the stack or change it."""

    disposable = False  # real machines: confirm changes, drill only as the stack's policy allows

    def __init__(self, name: str, hosts_file: Path | None = None, host_settings: HostSettings | None = None):
        self.name = name
        self.home = state_dir()  # pinned: every path of this stack stays under one state dir
        config: dict[str, str] = {}
        if hosts_file is not None:
            load_hosts_file(hosts_file)  # fail on bad input before Pulumi starts
            config["tradestack:hostsFile"] = str(Path(hosts_file).resolve())
        if host_settings is not None:
            config |= host_settings.to_config()
        self.hosts_file = hosts_file
        self._spec = StackSpec(PROJECT, name, program, config)

    def expected_resources(self) -> int | None:
        if self.hosts_file is None:
            return None
        estate = load_hosts_file(self.hosts_file)
        return len(estate.spec.hosts) + len(estate.spec.sites) + 1  # and the stack itself

    def _needs_file(self) -> None:
        if self.hosts_file is None and not self._pulumi.exists():
            raise InputError(f"stack {self.name!r} does not exist yet: give --hosts FILE")

    def preview(self, on_event: Callable[[Any], None] | None = None) -> OpResult:
        self._needs_file()
        return self._pulumi.preview(on_event)

    def up(self, on_event: Callable[[Any], None] | None = None) -> tuple[OpResult, AccessFiles]:
        self._needs_file()
        result = self._pulumi.up(on_event)
        return result, self.write_access_files()

    def refresh(self, on_event: Callable[[Any], None] | None = None) -> OpResult:
        return self._pulumi.refresh(on_event)

    def destroy(self, on_event: Callable[[Any], None] | None = None) -> OpResult:
        result = self._pulumi.destroy(on_event)
        shutil.rmtree(access_dir(self.name, self.home), ignore_errors=True)
        return result

    def leftovers(self) -> list[str]:
        return []  # nothing of a hosts stack lives on this machine but its state and access files

    def hosts_file_path(self) -> Path:
        return Path(self.hosts_file) if self.hosts_file is not None else Path(self._pulumi.config()["tradestack:hostsFile"])

    def access_files(self) -> AccessFiles:
        d = access_dir(self.name, self.home)
        files = AccessFiles(d / "inventory.yml", load_hosts_file(self.hosts_file_path()).private_key, d / "known_hosts")
        if not (files.inventory.exists() and files.known_hosts.exists()):
            return self.write_access_files()
        return files

    def write_access_files(self) -> AccessFiles:
        """The inventory and pinned known_hosts, mode 0600; the key stays where the hosts file says."""
        outs = self._pulumi.outputs()
        d = access_dir(self.name, self.home)
        key = load_hosts_file(self.hosts_file_path()).private_key
        known = ensure_private(d / "known_hosts", outs["known_hosts"])
        inventory = yaml.safe_load(outs["inventory"])
        inventory["all"]["vars"].update(ssh_access_vars(key, known))
        inv = ensure_private(d / "inventory.yml", yaml.safe_dump(inventory, sort_keys=False))
        return AccessFiles(inv, key, known)
