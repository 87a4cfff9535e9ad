"""One deploy: gather what the playbooks need, run them, keep the artifacts (plan, then apply)."""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..adapters.ansible import PlaybookResult, PlaybookSpec, run_playbook
from ..paths import state_dir
from ..substrates import open_stack
from ..builds import wheelhouse
from . import variables

ROOT = Path(__file__).resolve().parents[3]
PLAYBOOKS = ROOT / "playbooks"
MONITORING_RULES = ROOT / "infra" / "monitoring" / "rules"
CONNECT_TIMEOUT_S = 30


@dataclass(frozen=True)
class DeployPlan:
    stack: str
    spec: PlaybookSpec

    def describe(self) -> dict[str, Any]:
        """What will run, without secrets."""
        s = self.spec
        return {"stack": self.stack, "playbook": str(s.project_dir / s.playbook), "inventory": str(s.inventory),
                "limit": s.limit, "tags": s.tags, "check": s.check, "artifacts": str(s.run_dir),
                "vars": s.extravars}


def ansible_env() -> dict[str, str]:
    """Ansible from this interpreter's environment, host keys checked, no colour or retry files."""
    return {"PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_NOCOLOR": "1", "ANSIBLE_DEPRECATION_WARNINGS": "False",
            "ANSIBLE_PIPELINING": "True", "ANSIBLE_RETRY_FILES_ENABLED": "False",
            # connecting includes starting the host's Python (mitogen): a host busy with a drill's load or a
            # neighbour's package installs took over Ansible's 10 s to answer, and was called unreachable
            "ANSIBLE_TIMEOUT": str(CONNECT_TIMEOUT_S), **_mitogen()}


def _mitogen() -> dict[str, str]:
    """Mitogen's strategy: one persistent Python per host over SSH instead of one per task."""
    import ansible_mitogen

    return {"ANSIBLE_STRATEGY_PLUGINS": str(Path(ansible_mitogen.__file__).parent / "plugins" / "strategy"),
            "ANSIBLE_STRATEGY": "mitogen_linear"}


def runs_dir(stack: str) -> Path:
    return state_dir() / "stacks" / stack / "deploys"


def plan(stack_name: str, *, limit: str | None = None, tags: str | None = None, check: bool = False,
         playbook: str = "site.yml", on_step: Callable[[str], None] = lambda s: None) -> DeployPlan:
    """Read the stack, its topology and secrets; build the wheelhouse; decide the playbook run."""
    on_step("reading the stack")
    stack = open_stack(stack_name)
    secrets = stack.secrets(list(variables.SECRET_NAMES))
    files = stack.access_files()
    on_step("building the wheelhouse")
    wheels = wheelhouse.build(ROOT)
    chosen = variables.build(stack.topology, stack.outputs, secrets, traits=stack.traits,
                             wheelhouse=str(wheels.directory), wheel=wheels.wheel, wheel_sha256=wheels.sha256,
                             settings=stack.settings)
    extra = stack.clusters.deploy_vars() if stack.clusters else {}  # services the clusters run, not the hosts
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    spec = PlaybookSpec(project_dir=PLAYBOOKS, playbook=playbook, inventory=files.inventory,
                        run_dir=runs_dir(stack_name) / stamp, extravars={"tradestack_stack": stack_name,
                                                                         **chosen.public, **extra,
                                                                         "tradestack_monitoring_rules": rules()},
                        secret_vars=chosen.secret, limit=limit, tags=tags, check=check, env=ansible_env())
    return DeployPlan(stack_name, spec)


def rules() -> list[str]:
    """The repository's Prometheus rule files, which the monitoring hosts load."""
    return sorted(str(p) for p in MONITORING_RULES.glob("*.yml"))


@dataclass
class DeployResult(PlaybookResult):
    """The playbook run, and what the substrate applied beside it (None: nothing, or not this time)."""

    workloads: dict[str, Any] | None = None


def apply(deploy: DeployPlan, on_event: Callable[[dict[str, Any]], None] = lambda e: None,
          cancel: Callable[[], bool] = lambda: False, on_step: Callable[[str], None] = lambda s: None
          ) -> DeployResult:
    """Run the playbooks; then, if they succeeded on every host (no --limit, --tags or --check), let the substrate
    apply what runs outside the hosts (a cluster substrate's workloads) from the same variables."""
    played = run_playbook(deploy.spec, on_event, cancel)
    result = DeployResult(**vars(played))
    spec = deploy.spec
    if result.ok and not (spec.check or spec.limit or spec.tags):
        clusters = open_stack(deploy.stack).clusters
        if clusters is not None:
            result.workloads = clusters.apply_workloads(spec.extravars, spec.secret_vars, on_step)
    return result
