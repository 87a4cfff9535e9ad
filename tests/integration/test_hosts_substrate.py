"""The `hosts` substrate on the lab's own machines, reached as remote machines are: a hosts file written for the
session's lab (management addresses, pinned host keys, the edge routers' uplinks), a hosts stack of the same
name in a state directory of its own, and every probe and fault over SSH, never through a namespace."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tradestack.adapters import ssh

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def estate(deployed, tmp_path_factory):
    """A hosts file for the deployed lab, a hosts stack registered from it, in a TRADESTACK_HOME of its own."""
    from tradestack.hosts.stack import HostsStack
    from tradestack.lab.hostsfile import hosts_file

    lab = deployed["stack"]
    work = tmp_path_factory.mktemp("hosts-substrate")
    key = work / "id_ed25519"
    shutil.copyfile(lab.access_files().private_key, key)
    key.chmod(0o600)
    path = work / "hosts.yaml"
    path.write_text(yaml.safe_dump(hosts_file(lab, key), sort_keys=False))
    home = work / "home"
    mp = pytest.MonkeyPatch()
    mp.setenv("TRADESTACK_HOME", str(home))
    stack = HostsStack(lab.name, path, host_settings=lab.host_settings)
    try:
        started = time.monotonic()
        result, files = stack.up()
        registered = time.monotonic() - started
        from tradestack.substrates import registry

        registry.record_kind(lab.name, "hosts")
        # the same database secrets as the lab's deploy: one deployment, seen through two stacks
        for name, value in lab.secrets(["dbSuperuserPassword", "dbReplicationPassword", "dbAppPassword"]).items():
            stack.set_secret(name, value)
        yield {"stack": stack, "lab": lab, "file": path, "home": home, "result": result, "files": files,
               "registered_s": registered}
    finally:
        try:
            stack.destroy()
        finally:
            mp.undo()


def _cli(estate, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRADESTACK_HOME": str(estate["home"])}
    return subprocess.run([sys.executable, "-m", "tradestack", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=ROOT)


def test_up_registers_every_machine_over_ssh_and_writes_pinned_access(estate):
    result, files = estate["result"], estate["files"]
    print(f"\nhosts stack up: {estate['registered_s']:.1f} s, {result.changes}")
    assert result.changes.get("create") == 18  # 14 hosts, 3 edge routers and the stack itself
    outs = estate["stack"].outputs()
    assert outs["clients"]["host"] == f"{estate['lab'].name}-clients"
    assert set(outs["fault_map"]) >= {"carrier:ct", "site:sz1", "power:hk-grid"}
    assert all(hostname for hostname in outs["facts"].values())
    assert files.known_hosts.read_text().count("ssh-ed25519") == 17
    assert (files.inventory.stat().st_mode & 0o777) == 0o600


def test_status_through_hosts_sees_the_stack_healthy(estate):
    done = _cli(estate, "status", "--stack", estate["lab"].name, "--json")
    view = json.loads(done.stdout)
    assert done.returncode == 0, (view.get("problems"), done.stderr[-2000:])
    assert view["database"]["leader"] and view["database"]["sync_standby"]
    assert all(up for site in view["sites"].values() for up in site["carriers"].values())


def test_a_deploy_through_hosts_finds_the_labs_deploy_already_done(estate):
    done = _cli(estate, "deploy", "--stack", estate["lab"].name, "--json")
    result = json.loads(done.stdout)
    assert done.returncode == 0 and result["ok"], (result.get("failures"), done.stderr[-2000:])
    assert result["changed"] == 0, result["hosts"]


def test_the_audit_through_hosts_passes_every_high_control(estate, tmp_path):
    done = _cli(estate, "audit", "run", "--stack", estate["lab"].name, "--out", str(tmp_path / "audit"), "--json")
    result = json.loads(done.stdout)
    red = {c["id"]: c["failed"] for c in result["controls"] if c["verdict"] != "pass"}
    assert done.returncode == 0 and result["ok"], red
    assert set(red) <= {"EVD-01"}, red  # evidence lives with the stack's own drill history


def test_a_dry_run_lists_every_command_per_host(estate):
    done = _cli(estate, "drill", "run", "carrier-outage", "--stack", estate["lab"].name, "--dry-run")
    assert done.returncode == 0, done.stderr
    lab = estate["lab"].name
    assert f"inject  {lab}-sz1-edge: ip link set dev c-ct down" in done.stdout
    assert f"restore {lab}-hk1-edge: ip link set dev c-ct up" in done.stdout
    assert "policy:" in done.stdout  # not a lab: the stack's own policy is shown


def test_a_drill_on_hosts_is_refused_unless_the_stack_allows_it(estate):
    done = _cli(estate, "drill", "run", "carrier-outage", "--stack", estate["lab"].name, "--yes")
    assert done.returncode == 1 and "does not allow drills" in done.stderr


def test_policy_settings_are_checked_before_they_are_written(estate):
    name = estate["lab"].name
    bad = _cli(estate, "stack", "config", "--stack", name, "tradestack:changeWindows", "weekends")
    assert bad.returncode == 2 and "is not like 'Sat,Sun 02:00-06:00 UTC'" in bad.stderr
    done = _cli(estate, "stack", "config", "--stack", name, "tradestack:allowDrills", "true", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["config"]["tradestack:allowDrills"] == "true"


# a host crash over SSH (carrier faults over SSH are the SIGINT test's, below); the catalogue's other drills run on
# the lab (test_drills.py), and through `hosts` they differ only in the commands `--dry-run` shows
@pytest.mark.parametrize("drill", ["db-primary-crash"])
def test_drills_run_through_ssh_with_nothing_lost(estate, drill):
    done = _cli(estate, "drill", "run", drill, "--stack", estate["lab"].name, "--yes", "--json")
    assert done.stdout.strip().startswith("{"), done.stderr[-3000:]
    result = json.loads(done.stdout)
    print(f"\n{drill} through hosts: {result['verdict']}; figures {json.dumps(result['figures'])}")
    restores = [s for s in result["journal"] if s["name"].startswith("restore")]
    assert restores and all(s["ok"] for s in restores), restores
    lost = next(c for c in result["checks"] if c["check"] == "acknowledged orders lost")
    assert lost["actual"] == 0
    untimed = [c for c in result["checks"] if not c["ok"] and c["check"] not in
               {"recovery time (s)", "client error rate"}]
    assert untimed == [], untimed


def test_a_fault_interrupted_with_sigint_is_restored_over_ssh(estate):
    env = {**os.environ, "TRADESTACK_HOME": str(estate["home"])}
    proc = subprocess.Popen([sys.executable, "-m", "tradestack", "drill", "run", "carrier-outage", "--stack",
                             estate["lab"].name, "--yes", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)
    lab = estate["lab"]
    edge = [e for e in yaml.safe_load(estate["file"].read_text())["sites"] if e["name"] == "sz1"][0]["edge"]
    options = ssh.SshOptions(estate["files"].private_key, estate["files"].known_hosts)
    target = ssh.SshTarget(edge["address"], "root")

    def uplink_down() -> bool:
        return " state DOWN " in ssh.run(options, target, ["ip", "-o", "link", "show", "dev", "c-ct"]).stdout

    deadline = time.monotonic() + 120
    while not uplink_down():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert not uplink_down()
    assert json.loads(out)["verdict"] == "interrupted"
    del lab


def test_refresh_reports_a_removed_table_and_up_repairs_it(estate):
    lab = estate["lab"].name
    host = next(h for h in yaml.safe_load(estate["file"].read_text())["hosts"] if h["service"] == "router")
    options = ssh.SshOptions(estate["files"].private_key, estate["files"].known_hosts)
    target = ssh.SshTarget(host["address"], "root")
    assert ssh.run(options, target, ["nft", "delete", "table", "inet", "tradestack"]).succeeded
    drift = estate["stack"].refresh()
    assert drift.changes.get("delete", 0) >= 1 or drift.changed, drift.changes
    repaired, _ = estate["stack"].up()
    assert repaired.changes.get("create", 0) >= 1, repaired.changes
    assert ssh.run(options, target, ["nft", "list", "table", "inet", "tradestack"]).succeeded
    del lab
