"""Pulumi dynamic provider that registers a real machine: SSH verified against its pinned host key, its facts
recorded, what drills need prepared (the `inet tradestack` nft table, a state directory) and, on an edge router,
every uplink interface checked. `read` (refresh) reports drift: a changed host key fails loudly, a removed table
or a missing interface marks the registration gone so the next `up` repairs or refuses it. `delete` removes
only what registration added. Providers live in an importable module: Pulumi pickles them by reference.
"""

from __future__ import annotations

import tempfile
import types
from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult

from ..adapters import ssh

NFT_TABLE = "tradestack"
INPUTS = ("name", "address", "port", "user", "become", "private_key", "host_key", "state_dir", "interfaces")


class RegistrationError(Exception):
    """A machine could not be registered (unreachable, wrong host key, missing interface)."""


def _run(props: dict[str, Any], argv: list[str], timeout: float = 30.0) -> ssh.CommandResult:
    with tempfile.TemporaryDirectory(prefix="tradestack-hostkey-") as tmp:
        known = Path(tmp) / "known_hosts"
        address = props["address"] if int(props["port"]) == 22 else f"[{props['address']}]:{props['port']}"
        known.write_text(f"{address} {props['host_key']}\n")
        options = ssh.SshOptions(Path(props["private_key"]).expanduser(), known, connect_timeout_s=10)
        full = (["sudo", "-n"] if props["become"] == "sudo" else []) + argv
        done = ssh.run(options, ssh.SshTarget(props["address"], props["user"], int(props["port"])), full,
                       timeout=timeout)
    if done.rc == 255:
        why = done.stderr.strip()
        if "Host key verification failed" in why or "REMOTE HOST IDENTIFICATION HAS CHANGED" in why:
            raise RegistrationError(f"{props['name']} ({props['address']}): its host key is not the pinned one "
                                    "in the hosts file (changed, or a different machine answers)")
        raise RegistrationError(f"{props['name']} ({props['address']}): SSH failed: {why[-300:]}")
    return done


def _facts(props: dict[str, Any]) -> dict[str, Any]:
    done = _run(props, ["sh", "-c", "uname -sr; hostname; python3 -c 'import sys; print(sys.version.split()[0])'"])
    lines = done.stdout.splitlines() + ["", "", ""]
    return {"kernel": lines[0], "hostname": lines[1], "python": lines[2]}


def _table_present(props: dict[str, Any]) -> bool:
    return _run(props, ["nft", "list", "table", "inet", NFT_TABLE]).rc == 0


def _dir_present(props: dict[str, Any]) -> bool:
    return _run(props, ["test", "-d", props["state_dir"]]).rc == 0


def _missing_interfaces(props: dict[str, Any]) -> list[str]:
    return [i for i in props.get("interfaces") or [] if _run(props, ["ip", "-o", "link", "show", "dev", i]).rc != 0]


class RegisteredHostProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=props["name"], outs={**props, **self._register(props, {})})

    def _register(self, props: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
        facts = _facts(props)
        missing = _missing_interfaces(props)
        if missing:
            raise RegistrationError(f"{props['name']}: no interface {', '.join(missing)} (the hosts file names it "
                                    "as an uplink)")
        added_table = bool(old.get("added_table"))
        if not _table_present(props):
            done = _run(props, ["nft", "add", "table", "inet", NFT_TABLE])
            if done.rc != 0:
                raise RegistrationError(f"{props['name']}: nft add table failed: {done.why()}")
            added_table = True
        added_dir = bool(old.get("added_dir"))
        if not _dir_present(props):
            done = _run(props, ["mkdir", "-p", "-m", "0755", props["state_dir"]])
            if done.rc != 0:
                raise RegistrationError(f"{props['name']}: cannot create {props['state_dir']}: {done.why()}")
            added_dir = True
        return {**facts, "added_table": added_table, "added_dir": added_dir}

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [k for k in INPUTS if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=[k for k in changed if k in ("name", "address")],
                          delete_before_replace=True)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs={**news, **self._register(news, olds)})

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """Drift: a host key that changed fails the refresh with the reason; a table, directory or interface
        that is gone marks the registration gone, so `up` registers the machine again (or says why not)."""
        if not props:
            return ReadResult(id_="", outs={})
        _facts(props)  # raises on a changed host key
        if not _table_present(props) or not _dir_present(props) or _missing_interfaces(props):
            return ReadResult(id_="", outs={})
        return ReadResult(id_=id_, outs=props)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        """Only what registration added: the table if it was not there before, the directory likewise."""
        try:
            if props.get("added_table"):
                _run(props, ["nft", "delete", "table", "inet", NFT_TABLE])
            if props.get("added_dir"):
                _run(props, ["rm", "-rf", "--", props["state_dir"]])
        except RegistrationError as exc:
            pulumi.log.warn(f"{props.get('name')}: not cleaned up: {exc}")


def _init(self: Resource, name: str, props: dict[str, Any], opts: pulumi.ResourceOptions | None = None) -> None:
    Resource.__init__(self, RegisteredHostProvider(), name, props, opts)


# type token: pulumi-python:dynamic/hosts:RegisteredHost
RegisteredHost = types.new_class("RegisteredHost", (Resource,), {"module": "hosts", "name": "RegisteredHost"},
                                 lambda ns: ns.update({"__init__": _init, "__module__": __name__}))
