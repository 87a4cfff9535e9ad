"""The README's lab examples (the `sudo` ones) run as shown, on the run's lab: the ones that change nothing are run
here literally, the stack named `lab` in the README being the run's own; every other one names the test that runs
that very command on the run's stacks. A new `sudo` example in the README fails here until it is placed."""

from __future__ import annotations

import importlib
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from unit.test_readme import examples  # tests/ is the root of both tiers' packages

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.integration, pytest.mark.heavy, pytest.mark.timeout(600)]

# Run here: they change nothing on a deployed stack.
HERE = (
    "tradestack stack preview --topology infra/topologies/lab.yaml",
    "tradestack stack up --topology infra/topologies/lab.yaml",
    "tradestack stack refresh",
    "tradestack status --stack lab",
    "tradestack drill run db-primary-crash --dry-run",
)

# The same command, run by another test on the run's stacks (module, test function).
ELSEWHERE = {
    "tradestack deploy --stack lab": ("test_deploy", "test_a_second_deploy_changes_nothing_and_keeps_the_planted_secret_out_of_output_and_artifacts"),
    "tradestack deploy --stack lab --check": ("test_deploy", "test_check_mode_on_a_deployed_stack_reports_exactly_a_stopped_program_and_nothing_else"),
    "tradestack stack destroy": ("test_k8s_substrate", "test_destroy_removes_the_workloads_the_clusters_and_the_hosts"),
    "tradestack stack up --stack k8s --substrate kubernetes --topology infra/topologies/lab.yaml": (
        "test_k8s_substrate", "test_deploy_applies_the_gateways_to_each_sites_cluster_and_clients_orders_reach_them"),
    "tradestack drill run my-drill.yaml": ("test_drills", "test_an_unmeetable_expectation_fails_with_a_clear_verdict_and_exit_1"),
    "tradestack drill run db-primary-crash --stack lab": (
        "test_machines", "test_every_catalogue_drill_passes_on_machines_at_peak_and_what_lost_power_boots_back"),
    "tradestack capacity verify --stack lab --write-measured measured.yaml": (
        "test_drills", "test_capacity_verify_drives_peak_x_headroom_with_every_site_up_and_the_active_site_cut_off"),
    "tradestack audit run --stack lab --out reports/audit": (
        "test_audit", "test_on_a_fresh_deploy_every_control_passes_but_drill_evidence_which_fails_listing_every_drill"),
    "tradestack evidence verify --stack lab --allowed-signers auditors.allowed": (
        "test_evidence", "test_an_auditor_checks_a_record_with_ssh_keygen_as_the_readme_shows"),
    "tradestack evidence report --stack lab --since 2026-10-01 --out reports/bcdr": (
        "test_evidence", "test_the_bcdr_report_of_the_session_has_every_section_and_record_in_its_pdf"),
}


def _lab_examples() -> list[str]:
    return [shlex.join(shlex.split(e, comments=True)[1:]) for e in examples() if e.startswith("sudo ")]


def test_every_lab_example_of_the_readme_is_run_here_or_by_a_named_test():
    lab = _lab_examples()
    assert len(lab) >= 10, lab
    assert sorted(set(lab) - set(HERE) - set(ELSEWHERE)) == []
    for module, test in ELSEWHERE.values():
        assert hasattr(importlib.import_module(f"integration.{module}"), test), (module, test)


@pytest.mark.parametrize("example", HERE)
def test_a_lab_example_of_the_readme_runs_as_shown_on_the_runs_lab(deployed, example):
    assert example in _lab_examples(), f"the README no longer shows {example!r}"
    stack = deployed["stack"].name
    argv = shlex.split(example)[1:]
    argv = [stack if a == "lab" and prev == "--stack" else a for prev, a in zip(["", *argv], argv)]
    if "--stack" not in argv:
        argv += ["--stack", stack]
    done = subprocess.run([sys.executable, "-m", "tradestack", *argv], capture_output=True, text=True, timeout=300,
                          cwd=ROOT)
    # as the exit codes table says a command ends: 0, or 1 for what it checked not holding (status after the lab's
    # own tests, which delete and repair namespaces, may find a host down), never 2, 3 or 4
    assert done.returncode in (0, 1), f"{example}: exit {done.returncode}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
    assert stack in done.stdout or stack in done.stderr or done.returncode == 0, done.stdout[-2000:]
    assert "Traceback" not in done.stderr and done.stdout.strip(), done.stderr[-2000:]
