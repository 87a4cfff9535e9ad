"""`audit run`: the controls as testinfra tests against a deployed stack, then the reports.

pytest runs in-process with our plugin (`pytest.main([...], plugins=[...])`), in parallel across
hosts with pytest-xdist; its JUnit XML is one of the reports, the plugin's records feed the others.
"""

from __future__ import annotations

import configparser
import contextlib
import datetime as dt
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .. import __version__
from ..adapters import ssh
from ..topology.requests import requests
from ..drills import files as drill_files
from ..drills.engine import load_shape, planned_rate
from ..drills import history as drill_history
from ..errors import InputError, TradestackError
from ..substrates import Substrate, open_stack
from ..topology.riskgroups import uplink_groups
from . import catalogue
from .report import write_reports


class AuditError(TradestackError):
    """The audit could not run (not: a control failed; that is a result)."""


@dataclass
class AuditResult:
    ok: bool                       # no control at or above the exit policy's severity failed
    controls: list[dict[str, Any]]
    records: list[dict[str, Any]]
    artifacts: dict[str, Path]
    summary: dict[str, Any]


def context(stack: Substrate, selected: list[str], results_file: Path, max_age_days: float) -> dict[str, Any]:
    """What the checks need to know, from the stack and its topology (no secrets)."""
    files = stack.access_files()
    settings = stack.settings
    topology = stack.topology
    facts = stack.audit_facts()
    hosts = {h.name: {"service": h.service, "site": h.site, "lan_address": h.lan_address,
                      "lan_interface": h.lan_interface,
                      "sshd_config": facts["sshd_config"].get(h.name, "/etc/ssh/sshd_config")}
             for h in stack.hosts.values()}
    uplinks = {site.name: [{"carrier": u.carrier,
                            "facilities": [g for g in uplink_groups(site, i) if not g.startswith("carrier:")],
                            **facts["uplink_probes"].get(site.name, {}).get(u.carrier, {})}
                           for i, u in enumerate(site.uplinks)] for site in topology.sites}

    history_file = drill_history.drills_dir(stack.name) / "history.sqlite"
    return {"stack": stack.name, "inventory_file": str(files.inventory), "hosts": hosts,
            "topology": str(stack.topology_file), "site_roles": {s.name: s.role for s in topology.sites},
            "uplinks": uplinks, "vips": stack.vips,
            "placement": {s.name: dict(s.placement) for s in topology.services},
            "state_base": settings.state_root, "service_user": settings.service_user,
            # how the hosts run their programs (SEC-02 asks supervisord or systemd)
            "supervisor": stack.traits.supervisor,
            # whether the hosts keep their own time with a time service (OPS-01 reads it) or share a clock
            "time_sync": stack.traits.time_sync,
            # what each catalogue drill's evidence must be: its definition's digest and its load at the declared peak
            # (stacks whose services run in clusters must also have the Kubernetes drills, stacks of systemd hosts
            # the reboot)
            "catalogue_drills": wanted_drills(topology, clustered=bool(facts.get("clustered")),
                                              systemd=stack.traits.supervisor == "systemd"),
            # services that run in the site clusters (not on hosts), the clusters and what they are held to
            "clustered": list(facts.get("clustered", [])), "clusters": dict(facts.get("clusters", {})),
            "cluster_namespace": facts.get("cluster_namespace"),
            "cpu_requests_m": {svc: requests(topology, svc).cpu_m for svc in facts.get("clustered", [])},
            "drill_history": str(history_file) if history_file.exists() else None,
            "evidence_max_age_days": max_age_days, "controls": selected, "results_file": str(results_file)}


@contextlib.contextmanager
def shared_connections(tmp: Path) -> Iterator[None]:
    """testinfra's environment for the run: `ansible-inventory` from beside this interpreter (testinfra reads the
    inventory with it), and one SSH master connection per host shared by every command of every worker. Without
    it each command is a new SSH login (0.35 s here against 0.1 s; the lab's audit 42 s against 29 s). testinfra
    takes the control path only from an Ansible configuration file, so the run gets one: the user's own
    (ANSIBLE_CONFIG) with the control path set. Every master is closed when the run ends."""
    control_dir = tmp / "ssh"
    control_dir.mkdir(mode=0o700)
    config = configparser.ConfigParser(interpolation=None)
    if os.environ.get("ANSIBLE_CONFIG"):
        config.read(os.environ["ANSIBLE_CONFIG"])
    for section, key, value in (("ssh_connection", "control_path", "%(directory)s/%%C"),
                                ("persistent_connection", "control_path_dir", str(control_dir))):
        if not config.has_section(section):
            config.add_section(section)
        config.set(section, key, value)
    config_file = tmp / "ansible.cfg"
    with config_file.open("w") as out:
        config.write(out)
    saved = {k: os.environ.get(k) for k in ("PATH", "ANSIBLE_CONFIG")}
    os.environ["PATH"] = f"{Path(sys.executable).parent}:{saved['PATH'] or '/usr/bin:/bin'}"
    os.environ["ANSIBLE_CONFIG"] = str(config_file)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        ssh.close_masters(control_dir)


def wanted_drills(topology: Any, *, clustered: bool, systemd: bool) -> list[dict[str, Any]]:
    """Each catalogue drill as the stack must have tested it (audit.evidence.Wanted's fields)."""
    paths = {**drill_files.catalogue(), **(drill_files.cluster_catalogue() if clustered else {}),
             **(drill_files.systemd_catalogue() if systemd else {})}
    out = []
    for name, path in sorted(paths.items()):
        drill = drill_files.load_drill(path)
        out.append({"drill": name, "digest": drill.digest, "rate": planned_rate(drill, topology),
                    "sessions": load_shape(drill.load, topology)[0]})
    return out


def run(stack_name: str, out_dir: Path, *, controls: list[str] | None = None, workers: int = 4,
        max_age_days: float = 30.0, fail_on: str = "high",
        on_step: Callable[[str], None] = lambda s: None) -> AuditResult:
    all_controls = catalogue.controls()
    chosen = catalogue.select(all_controls, controls)  # unknown ids are refused before the stack is opened
    stack = open_stack(stack_name)
    # controls of clusters apply to a stack whose services run in clusters, whether or not its clusters can be found
    # (a cluster it declares and cannot read fails them, never drops them)
    if stack.clusters is None:
        chosen = [c for c in chosen if c.applies_to != "clusters"]
        if not chosen:
            raise InputError(f"stack {stack_name!r} runs no Kubernetes clusters: the controls asked for apply only "
                             "to stacks that do")
    out_dir.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.timezone.utc)
    with tempfile.TemporaryDirectory(prefix="tradestack-audit-") as tmp:
        results_file = Path(tmp) / "records.json"
        ctx_file = Path(tmp) / "context.json"
        ctx = context(stack, [c.id for c in chosen], results_file, max_age_days)
        ctx_file.write_text(json.dumps(ctx))
        junit = out_dir / "junit.xml"
        args = [str(catalogue.CHECKS), "-p", "tradestack.audit.plugin", "--audit-context", str(ctx_file),
                f"--junitxml={junit}", "-o", "junit_family=xunit2", "-o", "junit_suite_name=tradestack-audit",
                "-q", "--no-header", "--tb=no", "-rN", "-p", "no:cacheprovider", "-o", "addopts=", "--rootdir", str(catalogue.CHECKS),
                "-c", os.devnull]
        if workers > 1:
            args += ["-n", str(workers)]
        on_step(f"running {len(chosen)} controls on {len(ctx['hosts'])} hosts ({workers} in parallel)")
        with shared_connections(Path(tmp)), contextlib.redirect_stdout(sys.stderr):  # stdout is for --json
            code = pytest.main(args)
        if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) or not results_file.exists():
            raise AuditError(f"the audit could not run (pytest exit {int(code)}); see the output above")
        records = json.loads(results_file.read_text())
    summary = {"stack": stack_name, "topology": ctx["topology"], "tool": f"tradestack {__version__}",
               "started": started.isoformat(), "ended": dt.datetime.now(dt.timezone.utc).isoformat(),
               "hosts": sorted(ctx["hosts"])}
    per_control = verdicts(chosen, records)
    ok = passes(per_control, fail_on)
    summary |= {"headline": headline(per_control), "fail_on": fail_on}
    on_step("writing reports")
    artifacts = write_reports(out_dir, summary, per_control, records, ok)
    return AuditResult(ok, per_control, records, artifacts, summary)


def passes(per_control: list[dict[str, Any]], fail_on: str = "high") -> bool:
    """The exit policy: no control of severity `fail_on` or above failed (high: only high ones count; low: any)."""
    counted = catalogue.SEVERITIES[:catalogue.SEVERITIES.index(fail_on) + 1]
    return all(c["verdict"] == "pass" for c in per_control if c["severity"] in counted)


def failing(per_control: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The failing controls, most severe first (then by id)."""
    return sorted((c for c in per_control if c["verdict"] != "pass"),
                  key=lambda c: (catalogue.SEVERITIES.index(c["severity"]), c["id"]))


def headline(per_control: list[dict[str, Any]]) -> str:
    """PASS only when every control passed; otherwise FAIL naming each failing control and its severity, whatever
    the exit policy (an auditor reads the title before the exit code)."""
    bad = failing(per_control)
    return "PASS" if not bad else "FAIL: " + ", ".join(f"{c['id']} ({c['severity']})" for c in bad)


def verdicts(chosen: list[catalogue.Control], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per control: pass (every target judged and passed), else fail: a failed target, a target not judged
    (skipped), or no target at all ("nothing to judge")."""
    out = []
    for c in chosen:
        mine = [r for r in records if r["control"] == c.id]
        outcomes = {r["outcome"] for r in mine}
        failed = [f"{r['target']}: {r['reason']}" for r in mine if r["outcome"] == "failed"]
        if not mine:
            failed.append("nothing to judge: the control found no target on this stack")
        skipped = [f"{r['target']}: not judged: {r['reason']}" for r in mine if r["outcome"] == "skipped"]
        verdict = "pass" if mine and outcomes == {"passed"} else "fail"
        out.append({**c.model_dump(), "verdict": verdict, "targets": len(mine), "failed": failed + skipped,
                    "skipped": skipped})
    return out
