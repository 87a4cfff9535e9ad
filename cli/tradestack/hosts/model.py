"""The hosts file's schema (pydantic v2): an estate of real machines reached over SSH, and how it realises a
topology (which host runs which service in which site, which edge router interface faces which carrier).

Example (`infra/hosts/example.yaml`):

    topology: ../topologies/lab.yaml
    ssh: {user: ops, private_key: ~/.ssh/tradestack_ed25519, become: sudo}
    sites:
      - name: sz1
        prefix: 198.18.1.0/24
        edge:
          name: sz1-edge
          address: 10.0.0.2
          host_key: "ssh-ed25519 AAAA..."
          uplinks:
            ct: {interface: eth1, bgp_protocol: ct_primary}
    hosts:
      - {name: sz1-gateway-1, service: gateway, site: sz1, address: 10.0.0.11, lan_address: 198.18.1.11,
         host_key: "ssh-ed25519 AAAA..."}
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]*$", max_length=63)]
HostKey = Annotated[str, StringConstraints(pattern=r"^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) "
                                                   r"[A-Za-z0-9+/=]+$")]
Interface = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:@-]{1,15}$")]


# how long a host is given to boot when the hosts file says nothing (its power switch's boot_s, a reboot)
BOOT_S = 180

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _ip(value: str) -> str:
    ipaddress.ip_address(value)
    return value


class Ssh(_Strict):
    """How tradestack logs in to every host: one user and key; `become: sudo` runs privileged commands with
    `sudo -n` (the user needs passwordless sudo for them); `none` when the user is root."""
    user: Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")]
    private_key: str                       # relative to the hosts file, or absolute; ~ is expanded
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    become: Literal["none", "sudo"] = "none"


class Traits(_Strict):
    """What the playbooks must know about these machines (a real machine's defaults)."""
    shared_filesystem: bool = False
    supervisor: Literal["systemd", "supervisord"] = "systemd"
    install_packages: bool = True
    manage_sshd: bool = True
    time_sync: bool = True
    time_servers: list[str] = []         # NTP servers for chrony (none: Debian's pool)

    @field_validator("time_servers")
    @classmethod
    def _servers(cls, v: list[str]) -> list[str]:
        for server in v:
            if not re.fullmatch(r"[A-Za-z0-9.:-]{1,253}", server):
                raise ValueError(f"not a host name or address: {server!r}")
        return v


class Power(_Strict):
    """How to switch a host's power from the operator's machine, as its BMC offers it (IPMI's `chassis power
    off|on`, Redfish, a PDU outlet): each an argv run here, with `{host}` and `{address}` standing for the host's
    name and management address. With it, a drill's host crash or power loss cuts the power and its restore
    switches it on and waits up to `boot_s` for the host to finish booting (nobody deploys: what is enabled starts).
    Without it they kill the host's tradestack units and start them again."""
    off: list[str] = Field(min_length=1)
    on: list[str] = Field(min_length=1)
    boot_s: Annotated[int, Field(ge=5, le=1800)] = BOOT_S

    @field_validator("off", "on")
    @classmethod
    def _argv(cls, v: list[str]) -> list[str]:
        if not v[0].strip():
            raise ValueError("the command's first word (the program) is empty")
        for word in v:
            for field in re.findall(r"{([^}]*)}", word):
                if field not in ("host", "address"):
                    raise ValueError(f"{{{field}}} in {word!r}: only {{host}} and {{address}} are filled in")
        return v

    def argv(self, which: Literal["off", "on"], host: str, address: str) -> tuple[str, ...]:
        return tuple(w.replace("{host}", host).replace("{address}", address) for w in getattr(self, which))


class Uplink(_Strict):
    """The edge router's side of one carrier: its interface, and its BGP protocol (BIRD) when there is one."""
    interface: Interface
    bgp_protocol: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None


class Machine(_Strict):
    """Anything tradestack logs in to: its name, management address (SSH) and pinned host key."""
    name: Name
    address: str
    host_key: HostKey

    @field_validator("address")
    @classmethod
    def _address(cls, v: str) -> str:
        return _ip(v)


class Edge(Machine):
    uplinks: dict[Name, Uplink] = Field(min_length=1)   # carrier -> its uplink
    birdc: str = "birdc"                                # how to ask BIRD, e.g. `birdc -s /run/bird/bird.ctl`


class Site(_Strict):
    name: Name
    prefix: str                     # the site LAN; its VIP is .5 of it
    edge: Edge

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        ipaddress.ip_network(v)
        return v


class Host(Machine):
    service: Name                   # a topology service, or `venue` / `loadgen` outside every site
    site: Name | None = None
    lan_address: str
    lan_interface: Interface = "lan0"
    upstream: Name | None = None    # a venue's upstream
    sshd_config: str = "/etc/ssh/sshd_config"   # what the audit asks `sshd -T -f` about

    @field_validator("lan_address")
    @classmethod
    def _lan(cls, v: str) -> str:
        return _ip(v)


class HostsFile(_Strict):
    topology: str                   # the topology file this estate realises, relative to the hosts file
    ssh: Ssh
    traits: Traits = Traits()
    sites: list[Site] = Field(min_length=1)
    hosts: list[Host] = Field(min_length=1)
    power: Power | None = None      # how to switch a host's power (none: a crash kills its services instead)
    # risk group -> hosts that go down with it (a power feed, a room) beyond those the topology ties to sites
    risk_groups: dict[str, list[Name]] = {}
