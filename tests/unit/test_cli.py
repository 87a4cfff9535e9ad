"""The CLI edge: exit codes, JSON documents, readable errors, help with examples."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradestack.cli.app import app
from tradestack.exitcodes import ExitCode

pytestmark = pytest.mark.unit

runner = CliRunner()
TOPOLOGIES = Path(__file__).resolve().parents[2] / "infra" / "topologies"
LAB = str(TOPOLOGIES / "lab.yaml")


def run(*args: str):
    return runner.invoke(app, list(args))


def test_validate_ok():
    r = run("topology", "validate", LAB)
    assert r.exit_code == 0, r.output
    assert "valid" in r.output and "16 risk groups" in r.output


def test_validate_json():
    r = run("topology", "validate", LAB, "--json")
    doc = json.loads(r.stdout)
    assert doc == {"ok": True, "file": LAB, "name": "lab", "sites": 3, "carriers": 3, "upstreams": 2,
                   "services": 5, "risk_groups": 16}


def test_show_renders_sites_services_and_groups():
    r = run("topology", "show", LAB)
    assert r.exit_code == 0
    for text in ("sz1 (active)", "uplink via cm", "consensus", "facility:cm-tko", "Risk groups (16)"):
        assert text in r.output


def test_show_json_includes_implicit_groups():
    doc = json.loads(run("topology", "show", LAB, "--json").stdout)
    assert doc["risk_groups"]["carrier:ct"]["uplinks"] == [["sz1", "ct"], ["hk1", "ct"]]
    assert doc["services"][0]["name"] == "gateway"


def test_capacity_depth1_passes_exit_0():
    r = run("capacity", "check", LAB)
    assert r.exit_code == ExitCode.OK, r.output
    assert "PASS" in r.output and "Single points of failure: none" in r.output


def test_capacity_depth2_fails_exit_1_and_names_the_pair():
    r = run("capacity", "check", LAB, "--depth", "2", "--max-rows", "100")
    assert r.exit_code == ExitCode.FAILED
    lines = r.output.splitlines()
    row = next(i for i, line in enumerate(lines) if "carrier:cm +" in line)
    cell = " ".join(lines[row:row + 4])  # the scenario's cell, folded over its next lines (layout-independent)
    assert "carrier:ct" in lines[row + 1] and "sites down: hk1, wit" in cell
    assert "FAIL: 23 of 137 scenarios" in r.output


def test_capacity_json_lists_every_scenario():
    r = run("capacity", "check", LAB, "--depth", "2", "--json")
    assert r.exit_code == 1
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and doc["spofs"] == [] and len(doc["scenarios"]) == 137
    failed = {tuple(s["failed"]): s for s in doc["scenarios"]}
    assert failed[()]["ok"] is True
    assert failed[("carrier:cm", "carrier:ct")]["sites_down"] == ["hk1", "wit"]


def test_capacity_explicit_scenario():
    r = run("capacity", "check", LAB, "--fail", "carrier:ct,carrier:cm", "--json", "--failing-only")
    doc = json.loads(r.stdout)
    assert r.exit_code == 1 and [s["failed"] for s in doc["scenarios"]] == [["carrier:cm", "carrier:ct"]]


def test_unknown_group_in_fail_is_bad_input():
    r = run("capacity", "check", LAB, "--fail", "carrier:nope")
    assert r.exit_code == ExitCode.BAD_INPUT
    assert "unknown risk group(s): carrier:nope" in r.stderr


def test_bad_file_exit_2_with_file_and_line_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    text = Path(LAB).read_text()
    line = next(n for n, s in enumerate(text.splitlines(), 1) if "carrier: cu" in s)  # its first use, in sz1
    bad.write_text(text.replace("carrier: cu", "carrier: cx"))
    r = run("capacity", "check", str(bad))
    assert r.exit_code == ExitCode.BAD_INPUT
    assert f"{bad}:{line}:18: sites[0].uplinks[1].carrier: carrier 'cx' is not defined" in r.stderr
    assert "Traceback" not in r.output + r.stderr


def test_errors_as_json_when_json_asked(tmp_path):
    r = run("capacity", "check", str(tmp_path / "missing.yaml"), "--json")
    assert r.exit_code == 2
    assert json.loads(r.stdout) == {"ok": False, "exit_code": 2,
                                    "errors": [f"{tmp_path / 'missing.yaml'}: file not found"]}


def test_depth_out_of_range_is_usage_error():
    assert run("capacity", "check", LAB, "--depth", "3").exit_code == 2


def test_help_has_examples_and_exit_codes():
    r = run("capacity", "check", "--help")
    assert "tradestack capacity check infra/topologies/lab.yaml --depth 2" in r.output
    assert "Exit codes" in run("--help").output


def test_internal_error_goes_to_debug_log(monkeypatch, tmp_path):
    monkeypatch.setenv("TRADESTACK_HOME", str(tmp_path))

    def boom(*_a, **_k):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr("tradestack.cli.capacity.check_capacity", boom)
    r = run("capacity", "check", LAB)
    assert r.exit_code == ExitCode.INTERNAL
    assert "internal error: RuntimeError: simulated bug" in r.stderr
    logs = list((tmp_path / "logs").glob("debug-*.log"))
    assert len(logs) == 1 and "Traceback" in logs[0].read_text()


@pytest.mark.parametrize("raised, code, error", [
    (None, ExitCode.FAILED, None),
    ("usage", ExitCode.BAD_INPUT, "No such option: --nope"),
    ("environment", ExitCode.ENVIRONMENT, "the lab needs root"),
    ("bug", ExitCode.INTERNAL, "internal error: KeyError: 'acked_missing'"),
    ("interrupt", ExitCode.INTERRUPTED, "interrupted"),
])
def test_json_asked_prints_a_json_document_on_stdout_for_every_exit_code(monkeypatch, tmp_path, raised, code, error):
    """A pipeline reads stdout: whatever happens, --json gives it one document with the exit code."""
    from tradestack.errors import EnvironmentProblem

    monkeypatch.setenv("TRADESTACK_HOME", str(tmp_path))
    boom = {"environment": EnvironmentProblem("the lab needs root"), "bug": KeyError("acked_missing"),
            "interrupt": KeyboardInterrupt()}.get(raised or "")
    if boom is not None:
        def check(*_a, **_k):
            raise boom
        monkeypatch.setattr("tradestack.cli.capacity.check_capacity", check)
    args = ["capacity", "check", LAB, "--json"] + (["--depth", "2"] if raised is None else [])
    r = run(*args, *(["--nope"] if raised == "usage" else []))
    assert r.exit_code == code, r.output
    doc = json.loads(r.stdout)
    assert doc["ok"] is False
    if error is not None:
        assert doc["exit_code"] == code and error in doc["errors"][0], doc
    else:  # a check that failed is the command's own report, not an error
        assert any(not s["ok"] for s in doc["scenarios"]), doc


def test_console_script_runs_as_a_real_process():
    exe = shutil.which("tradestack", path=str(Path(sys.executable).parent))
    assert exe, "console script `tradestack` not installed next to this Python"
    proc = subprocess.run([exe, "capacity", "check", LAB, "--json"], capture_output=True, text=True,
                          check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["ok"] is True


# -- refstack -------------------------------------------------------------------------------------
def test_refstack_serve_with_a_bad_config_names_the_file_and_line(tmp_path):
    config = tmp_path / "gateway.yaml"
    config.write_text("dsn: host=127.0.0.1\nport: 99999\nadmission:\n  max_in_flight: 0\n")
    r = run("refstack", "serve", "gateway", "--config", str(config))
    assert r.exit_code == ExitCode.BAD_INPUT
    assert f"{config}:2:7: port:" in r.output and f"{config}:4:18: admission.max_in_flight:" in r.output


def test_refstack_load_refuses_an_endpoint_that_is_not_http():
    r = run("refstack", "load", "--endpoint", "ftp://127.0.0.1:21", "--duration", "1")
    assert r.exit_code == ExitCode.BAD_INPUT and "not an http(s) URL: ftp://127.0.0.1:21" in r.output


def test_refstack_reconcile_without_a_ledger_is_bad_input_with_json(tmp_path):
    r = run("refstack", "reconcile", "--ledger", str(tmp_path / "none.sqlite"), "--dsn", "host=127.0.0.1",
            "--json")
    assert r.exit_code == ExitCode.BAD_INPUT
    assert json.loads(r.stdout) == {"ok": False, "exit_code": 2,
                                    "errors": [f"{tmp_path / 'none.sqlite'}: no such ledger "
                                               "(`tradestack refstack load --ledger` writes one)"]}


@pytest.mark.parametrize("command", ["run", "load", "reconcile", "serve", "migrate"])
def test_refstack_help_has_an_example(command):
    r = run("refstack", command, "--help")
    assert r.exit_code == 0 and "Example:" in r.output


@pytest.mark.parametrize("command", [["deploy"], ["status"]])
def test_deploy_and_status_help_explain_with_an_example(command):
    r = run(*command, "--help")
    assert r.exit_code == 0 and "Example:" in r.output and "--stack" in r.output


def test_stack_secret_takes_only_deploy_secrets_and_only_from_stdin():
    r = run("stack", "secret", "awsKey", "--stack", "nowhere")
    assert r.exit_code == ExitCode.BAD_INPUT and "'awsKey' is not a deploy secret" in r.output
    r = runner.invoke(app, ["stack", "secret", "dbAppPassword", "--stack", "nowhere"], input="")
    assert r.exit_code == ExitCode.BAD_INPUT and "standard input held no value for dbAppPassword" in r.output
    r = run("stack", "secret", "--help")
    assert r.exit_code == 0 and "Example:" in r.output and "standard input" in r.output


@pytest.mark.parametrize("args, message", [
    (("capacity", "check", "--live"), "give --stack NAME"),
    (("capacity", "check"), "give a topology file (or --live --stack NAME)"),
    (("capacity", "check", LAB, "--stack", "prod"), "--stack is for --live"),
])
def test_capacity_live_needs_a_stack_and_says_so(args, message):
    r = run(*args)
    assert r.exit_code == ExitCode.BAD_INPUT and message in r.output, r.output


def test_capacity_live_on_a_stack_without_clusters_says_there_is_nothing_to_read(monkeypatch):
    from tradestack.substrates import registry

    class NoClusters:
        topology = None
        clusters = None

    monkeypatch.setattr(registry, "open_stack", lambda name: NoClusters())
    r = run("capacity", "check", "--live", "--stack", "staging")
    assert r.exit_code == ExitCode.BAD_INPUT and "runs no Kubernetes clusters" in r.output, r.output


def test_stack_secret_show_prints_the_value_the_stack_holds_for_a_hand_over(monkeypatch):
    from tradestack.substrates import registry

    class Held:
        def secrets(self, names):
            return {n: f"value-of-{n}" for n in names}

    monkeypatch.setattr(registry, "open_stack", lambda name: Held())
    r = run("stack", "secret", "dbAppPassword", "--stack", "lab", "--show")
    assert r.exit_code == 0 and r.stdout == "value-of-dbAppPassword", r.output
    r = run("stack", "secret", "dbRootPassword", "--stack", "lab", "--show")
    assert r.exit_code == ExitCode.BAD_INPUT and "is not a deploy secret" in r.output, r.output


def test_a_hosts_file_is_written_only_for_a_stack_whose_machines_have_none(tmp_path, monkeypatch):
    from tradestack.substrates import registry

    from .memory_substrate import MemorySubstrate

    monkeypatch.setattr(registry, "open_stack", lambda name: MemorySubstrate(tmp_path))
    monkeypatch.setattr(registry, "lifecycle", lambda name: object())  # not the lab's: it writes no hosts file
    r = run("stack", "hosts-file", "--stack", "mem", "--key", str(tmp_path / "key"), "--out", str(tmp_path / "h.yaml"))
    assert r.exit_code == ExitCode.BAD_INPUT and "already described by a hosts file" in r.output, r.output
    assert not (tmp_path / "h.yaml").exists()


def test_machines_is_a_lab_stacks_setting_and_refused_for_any_other_substrate(tmp_path):
    from tradestack.lab.stack import LabStack
    from tradestack.substrates import registry

    lab = registry.lifecycle("mx", machines=True)
    assert isinstance(lab, LabStack) and lab.boots_machines()
    assert registry.lifecycle("mx", machines=False).boots_machines() is False
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text("topology: x\n")
    r = run("stack", "up", "--stack", "hx", "--hosts", str(hosts), "--machines", "--yes")
    assert r.exit_code == ExitCode.BAD_INPUT and "--machines and --namespaces are for lab stacks" in r.output, r.output
    assert "--machines" in run("stack", "up", "--help").output


def test_power_is_said_plainly_for_a_word_it_does_not_know_a_stack_that_does_not_exist_and_a_hosts_stack(tmp_path):
    r = run("stack", "power", "lab-sz1-orderdb-1", "reboot", "--stack", "px", "--json")
    assert r.exit_code == ExitCode.BAD_INPUT and "say off, on or status" in r.output, r.output
    r = run("stack", "power", "lab-sz1-orderdb-1", "off", "--stack", "px", "--json")
    assert r.exit_code == ExitCode.BAD_INPUT and "no stack 'px'" in r.output, r.output
    from tradestack.substrates import registry

    registry.record_kind("hx", "hosts")
    r = run("stack", "power", "hx-sz1-orderdb-1", "off", "--stack", "hx")
    assert r.exit_code == ExitCode.BAD_INPUT and "an estate's go in its hosts file" in r.output, r.output
    assert "Example:" in run("stack", "power", "--help").output


def test_commands_that_draw_nothing_do_not_load_matplotlib():
    """Importing matplotlib costs about 0.6 s of CPU; only a drill report's plot needs it, not every command
    (planning, listing, refusing a drill, status, audit) that imports the drills' modules."""
    script = ("import sys, tradestack.cli.app, tradestack.drills.report, tradestack.drills.engine; "
              "print('matplotlib' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_a_hosts_file_of_a_lab_stack_whose_up_failed_says_so_not_a_traceback(tmp_path):
    """A lab `up` that failed part way (its machines did not boot) left a stack without outputs: `stack
    hosts-file` crashed on KeyError: 'known_hosts' (exit 4)."""
    from tradestack.errors import InputError
    from tradestack.lab.hostsfile import hosts_file

    class Half:
        name = "half"

        def outputs(self):
            return {"management": "198.19.0.1"}

    with pytest.raises(InputError, match=r"lab stack 'half' is not up \(no known_hosts, edges, site_prefixes in its "
                                         r"outputs\): run `tradestack stack up --stack half` until it succeeds"):
        hosts_file(Half(), tmp_path / "key")  # type: ignore[arg-type]
