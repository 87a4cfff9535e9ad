"""ansible-runner wrapped once: a fresh private data dir per run, events to a callback, one result type.

Secrets travel in an extravars file that exists only while the run does; runner artifacts
(kept per run for audits) never contain them because every task that handles one has no_log.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TradestackError


class PlaybookError(TradestackError):
    """ansible-runner could not run the playbook at all (not: a task failed; that is a result)."""


@dataclass(frozen=True)
class PlaybookSpec:
    project_dir: Path           # the playbooks (read, never written)
    playbook: str               # e.g. site.yml
    inventory: Path
    run_dir: Path               # fresh per run: artifacts stay here
    extravars: dict[str, Any] = field(default_factory=dict)
    secret_vars: dict[str, Any] = field(default_factory=dict)
    limit: str | None = None
    tags: str | None = None
    check: bool = False
    forks: int = 20
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class TaskFailure:
    host: str
    task: str
    message: str
    unreachable: bool = False


@dataclass
class HostStats:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0


@dataclass
class PlaybookResult:
    status: str                 # successful | failed | canceled | timeout
    rc: int
    hosts: dict[str, HostStats]
    failures: list[TaskFailure]
    artifacts: Path

    @property
    def ok(self) -> bool:
        return self.status == "successful" and self.rc == 0 and not self.failures

    @property
    def changed(self) -> int:
        return sum(h.changed for h in self.hosts.values())


def run_playbook(spec: PlaybookSpec, on_event: Callable[[dict[str, Any]], None] = lambda e: None,
                 cancel: Callable[[], bool] = lambda: False) -> PlaybookResult:
    import ansible_runner

    spec.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    env_dir = spec.run_dir / "env"
    env_dir.mkdir(exist_ok=True, mode=0o700)
    secret_file = env_dir / "secrets.json"
    failures: list[TaskFailure] = []

    def handler(event: dict[str, Any]) -> bool:
        data = event.get("event_data") or {}
        if event.get("event") in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
            res = data.get("res") or {}
            message = res.get("msg") or res.get("stderr") or res.get("reason") or json.dumps(res)[:500]
            failures.append(TaskFailure(data.get("host", "?"), data.get("task", "?"), str(message).strip(),
                                        event.get("event") == "runner_on_unreachable"))
        try:
            on_event(event)
        except Exception:  # a broken progress display must never break a deploy
            pass
        return True  # returning True keeps the event in the artifacts

    cmdline = ["-e", f"@{secret_file}"]
    if spec.check:
        cmdline += ["--check", "--diff"]
    try:
        secret_file.write_text(json.dumps(spec.secret_vars))
        os.chmod(secret_file, 0o600)
        runner = ansible_runner.run(
            private_data_dir=str(spec.run_dir), project_dir=str(spec.project_dir), playbook=spec.playbook,
            inventory=str(spec.inventory), extravars=spec.extravars, limit=spec.limit, tags=spec.tags,
            forks=spec.forks, cmdline=" ".join(cmdline), envvars=spec.env, quiet=True,
            event_handler=handler, cancel_callback=cancel, suppress_env_files=True, json_mode=False)
    except (OSError, ValueError, RuntimeError) as exc:
        raise PlaybookError(f"could not run {spec.playbook}: {exc}") from None
    finally:
        secret_file.unlink(missing_ok=True)
        shutil.rmtree(env_dir, ignore_errors=True)
    stats = runner.stats or {}
    hosts: dict[str, HostStats] = {}
    for key, attr in (("ok", "ok"), ("changed", "changed"), ("failures", "failed"), ("dark", "unreachable"),
                      ("skipped", "skipped")):
        for host, count in (stats.get(key) or {}).items():
            setattr(hosts.setdefault(host, HostStats()), attr, count)
    return PlaybookResult(runner.status, runner.rc if runner.rc is not None else -1, hosts, failures,
                          Path(runner.config.artifact_dir))


def ssh_access_vars(private_key: Path, known_hosts: Path) -> dict[str, str]:
    """Inventory variables for reaching hosts over SSH: the key, pinned host keys (strict), shared connections,
    and a host that vanishes mid-run given up in seconds, not after TCP's retransmission timeout (a shared master
    connection would hang on it)."""
    return {"ansible_ssh_private_key_file": str(private_key),
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={known_hosts} -o StrictHostKeyChecking=yes "
                                       "-o IdentitiesOnly=yes -o ControlMaster=auto -o ControlPersist=60s "
                                       "-o ConnectTimeout=10 -o ServerAliveInterval=2 -o ServerAliveCountMax=3",
            "ansible_python_interpreter": "/usr/bin/python3"}
