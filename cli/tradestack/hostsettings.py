"""The machine-wide names a deploy creates on every host, kept in the stack's configuration.

They are settings rather than constants so that a test run (or a second team on the same hosts) can
deploy under names nobody used before, prove the first run, and remove exactly what it created.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path, PurePosixPath

from .errors import InputError

NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")  # what useradd/groupadd accept portably


@dataclass(frozen=True)
class HostSettings:
    """Service user and group, the root of per-host state, the root of per-stack software."""

    service_user: str = "tradestack"
    service_group: str = "tradestack"
    state_root: str = "/var/lib/tradestack"
    software_root: str = "/opt/tradestack"

    def __post_init__(self) -> None:
        problems = [f"{f}: {getattr(self, f)!r} is not a valid user or group name"
                    for f in ("service_user", "service_group") if not NAME.match(getattr(self, f))]
        for f in ("state_root", "software_root"):
            path = PurePosixPath(getattr(self, f))
            if not path.is_absolute() or ".." in path.parts or len(path.parts) < 3:
                problems.append(f"{f}: {str(path)!r} must be an absolute path at least two levels deep")
        if problems:
            raise InputError("bad host settings: " + "; ".join(problems))

    # stack configuration keys, e.g. tradestack:serviceUser
    KEYS = {"service_user": "serviceUser", "service_group": "serviceGroup", "state_root": "stateRoot",
            "software_root": "softwareRoot"}

    @classmethod
    def from_config(cls, config: dict[str, str]) -> HostSettings:
        """Read from a stack's plain configuration; absent keys take the defaults."""
        given = {f: config[f"tradestack:{key}"] for f, key in cls.KEYS.items() if f"tradestack:{key}" in config}
        return cls(**given)

    def to_config(self) -> dict[str, str]:
        return {f"tradestack:{self.KEYS[f.name]}": getattr(self, f.name) for f in fields(self)}

    def playbook_vars(self) -> dict[str, str]:
        """What the playbooks call them (playbooks/group_vars/all.yml)."""
        return {"tradestack_user": self.service_user, "tradestack_group": self.service_group,
                "tradestack_root": self.state_root, "tradestack_software_root": self.software_root}

    def host_dir(self, host: str) -> Path:
        """Where one host keeps its state (tradestack_base in the playbooks)."""
        return Path(self.state_root) / host
