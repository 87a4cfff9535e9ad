"""The `hosts` substrate on the lab's own machines, reached as remote machines are: a hosts file written for the
session's lab (management addresses, pinned host keys, the edge routers' uplinks), a hosts stack of the same
name, and every probe and fault over SSH, never through a namespace.

Everything here runs as an SRE would on a controller: an unprivileged account made for this run (removed after)
that holds a copy of the SSH key and nothing else of the lab's. It cannot read the lab's state or enter a
namespace. Its tools are a readable copy of the checkout run by a shared install of the project's dependencies
(operators.shared_tools), and the build caches keyed by version (wheelhouse and Pulumi), linked into its own; the
estate fixtures then follow docs/adopting-an-estate.md's steps 2 to 4 through the CLI (operators.py)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tradestack.adapters import ssh
from tradestack.lab.substrate import LabSubstrate

from .conftest import TIMED, driven_at_the_requirement, journal_times, with_short_windows
from .operators import Operator, operator_account, shared_tools

pytestmark = [pytest.mark.integration, pytest.mark.heavy, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def operator(deployed):
    """The unprivileged operator of docs/adopting-an-estate.md, with a readable copy of this checkout run by a
    shared install of the tools (operators.shared_tools) instead of step 1's install, which
    test_adopting_an_estate.py follows as written beside the session lab. (Not the deployed hosts' environment:
    it holds only what the services need.)"""
    venv = shared_tools()
    with operator_account("checkout", owned=False) as (user, home, checkout):
        env = {"HOME": str(home), "USER": user, "LANG": "C.UTF-8", "PYTHONPATH": str(checkout / "cli"),
               "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
               "XDG_CACHE_HOME": str(home / ".cache"), "TRADESTACK_HOME": str(home / ".tradestack")}
        yield Operator(user, home, checkout, venv / "bin" / "python3", env)


@pytest.fixture(scope="module")
def estate(deployed, operator):
    """docs/adopting-an-estate.md, steps 2 to 4, through the CLI: the lab writes a hosts file of its machines into
    the operator's home (root), the operator registers them under the lab's name and host settings, and takes over
    the database secrets the lab's deploy used, printed by root and read from standard input (one deployment, seen
    through two stacks)."""
    lab = deployed["stack"]
    work = operator.home / "estate"
    work.mkdir()
    key = work / "id_ed25519"
    shutil.copyfile(lab.access_files().private_key, key)
    path = work / "hosts.yaml"
    wrote = subprocess.run([sys.executable, "-m", "tradestack", "stack", "hosts-file", "--stack", lab.name, "--key",
                            str(key), "--out", str(path), "--json"], capture_output=True, text=True, timeout=120)
    assert wrote.returncode == 0 and json.loads(wrote.stdout)["hosts"] >= 10, wrote.stdout + wrote.stderr[-2000:]
    document = yaml.safe_load(path.read_text())  # its topology, as the operator's copy of the checkout has it
    document["topology"] = str(operator.checkout / Path(document["topology"]).relative_to(ROOT))
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    subprocess.run(["chown", "-R", f"{operator.user}:{operator.user}", str(work)], check=True)
    key.chmod(0o600)
    settings = lab.host_settings
    up = operator.cli("stack", "up", "--stack", lab.name, "--substrate", "hosts", "--hosts", str(path),
                      "--service-user", settings.service_user, "--service-group", settings.service_group,
                      "--state-root", settings.state_root, "--software-root", settings.software_root, "--yes",
                      "--json")
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        # the database secrets the lab's deploy used, printed by root and handed over on standard input
        for name in ("dbSuperuserPassword", "dbReplicationPassword", "dbAppPassword"):
            shown = subprocess.run([sys.executable, "-m", "tradestack", "stack", "secret", name, "--stack", lab.name,
                                    "--show"], capture_output=True, text=True, timeout=60)
            assert shown.returncode == 0 and shown.stdout, shown.stderr[-2000:]
            done = operator.cli("stack", "secret", name, "--stack", lab.name, input=shown.stdout)
            assert done.returncode == 0, done.stderr
        files = json.loads(up.stdout)["files"]
        yield {"lab": lab, "file": path, "up": json.loads(up.stdout), "operator": operator,
               "key": Path(files["private_key"]), "known_hosts": Path(files["known_hosts"])}
    finally:
        operator.cli("stack", "destroy", "--stack", lab.name, "--yes", "--json")


def _cli(estate, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return estate["operator"].cli(*args, timeout=timeout)


def _ssh(estate) -> ssh.SshOptions:
    return ssh.SshOptions(estate["key"], estate["known_hosts"])


def test_the_operator_holds_the_key_and_nothing_else_of_the_labs(estate, deployed):
    operator, lab = estate["operator"], deployed["stack"]
    assert operator.run(["id", "-u"]).stdout.strip() != "0"
    assert operator.run(["cat", str(lab.access_files().private_key)]).returncode != 0
    assert operator.run(["ip", "netns", "exec", f"{lab.name}-clients", "true"]).returncode != 0
    assert operator.run(["test", "-r", str(estate["key"])]).returncode == 0


def test_up_registers_every_machine_over_ssh_and_writes_pinned_access(estate):
    up = estate["up"]
    print(f"\nhosts stack up as {estate['operator'].user}: {up['changes']}")
    assert up["changes"].get("create") == 20  # 16 hosts, 3 edge routers and the stack itself
    outs = up["outputs"]
    assert outs["clients"]["host"] == f"{estate['lab'].name}-clients"
    assert set(outs["fault_map"]) >= {"carrier:ct", "site:sz1", "power:hk-grid"}
    assert all(hostname for hostname in outs["facts"].values())
    assert estate["known_hosts"].read_text().count("ssh-ed25519") == 19
    inventory = Path(up["files"]["inventory"])
    assert (inventory.stat().st_mode & 0o777) == 0o600 and inventory.owner() == estate["operator"].user


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
    assert result["changed"] == 0, _changed_tasks(Path(result["artifacts"]))


def _changed_tasks(artifacts: Path) -> list[str]:
    """Each task a deploy reported changed, with its host, from ansible-runner's events (what a failure says)."""
    found = []
    for path in sorted(artifacts.rglob("job_events/*.json")):
        event = json.loads(path.read_text())
        data = event.get("event_data") or {}
        if event.get("event") == "runner_on_ok" and (data.get("res") or {}).get("changed"):
            found.append(f"{data.get('host')}: {data.get('task')}")
    return found


def test_the_audit_through_hosts_passes_every_high_control(estate):
    out = estate["operator"].home / "audit"
    done = _cli(estate, "audit", "run", "--stack", estate["lab"].name, "--out", str(out), "--json")
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




# The whole catalogue runs at peak through `hosts` on booted machines with real-host traits (test_machines.py);
# here, as the unprivileged operator on hosts supervised by supervisord, the freeze: its thaw finds a stopped
# supervisord by its pidfile (the branch of the hosts plan only such an estate takes).
ON_SUPERVISORD = ["gray-host-freeze"]


@pytest.mark.parametrize("drill", ON_SUPERVISORD)
@pytest.mark.peak
def test_a_catalogue_drill_runs_through_ssh_at_peak_with_nothing_lost(estate, drill):
    """Faults on the hosts over SSH, the clients on their host, their ledger fetched back: at the topology's full
    peak, as the operator. The catalogue drill's faults, load and expectations as the catalogue has them, in
    shorter windows around them (conftest's BEFORE_AFTER_S)."""
    path = with_short_windows(drill, estate["operator"].home / "drills")
    subprocess.run(["chown", "-R", f"{estate['operator'].user}:", str(path.parent)], check=True)
    done = _cli(estate, "drill", "run", str(path), "--stack", estate["lab"].name, "--yes", "--json")
    assert done.stdout.strip().startswith("{"), done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert "verdict" in result, (done.stdout[-2000:], done.stderr[-2000:])  # refused: say why
    print(f"\n{drill} through hosts: {result['verdict']}; figures {json.dumps(result['figures'])}\n"
          f"journal: {journal_times(result)}\nfirst progress lines (the time before the journal): "
          + " | ".join(line.strip() for line in done.stderr.splitlines()[:4])[:1500])
    assert done.returncode == (0 if result["verdict"] == "pass" else 1)
    assert result["figures"]["orders"] > 0
    restores = [s for s in result["journal"] if s["name"].startswith("restore")]
    assert restores and all(s["ok"] for s in restores), restores
    lost = next(c for c in result["checks"] if c["check"] == "acknowledged orders lost")
    assert lost["actual"] == 0
    untimed = [c for c in result["checks"] if not c["ok"] and c["check"] not in TIMED]
    assert untimed == [], untimed
    report = Path(result["reports"]["html"])
    assert report.is_relative_to(estate["operator"].home) and report.exists()


@pytest.mark.peak
def test_a_fault_interrupted_with_sigint_is_restored_over_ssh(estate):
    proc = estate["operator"].popen("drill", "run", "carrier-outage", "--stack", estate["lab"].name, "--yes",
                                    "--json")
    edge = [e for e in yaml.safe_load(estate["file"].read_text())["sites"] if e["name"] == "sz1"][0]["edge"]
    target = ssh.SshTarget(edge["address"], "root")

    def uplink_down() -> bool:
        return " state DOWN " in ssh.run(_ssh(estate), target, ["ip", "-o", "link", "show", "dev", "c-ct"]).stdout

    deadline = time.monotonic() + 120
    while not uplink_down():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-2000:]
    assert not uplink_down()
    assert json.loads(out)["verdict"] == "interrupted"


def test_refresh_reports_a_removed_table_and_up_repairs_it(estate):
    lab = estate["lab"].name
    host = next(h for h in yaml.safe_load(estate["file"].read_text())["hosts"] if h["service"] == "router")
    target = ssh.SshTarget(host["address"], "root")
    assert ssh.run(_ssh(estate), target, ["nft", "delete", "table", "inet", "tradestack"]).succeeded
    done = _cli(estate, "stack", "refresh", "--stack", lab, "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    drift = json.loads(done.stdout)
    assert drift["changes"].get("delete", 0) >= 1 or drift["changed"], drift
    done = _cli(estate, "stack", "up", "--stack", lab, "--hosts", str(estate["file"]), "--yes", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["changes"].get("create", 0) >= 1, done.stdout
    assert ssh.run(_ssh(estate), target, ["nft", "list", "table", "inet", "tradestack"]).succeeded


@pytest.mark.peak
def test_capacity_verify_through_ssh_cuts_a_site_at_its_edge_and_restores_it(estate):
    """The full requirement (peak x headroom, orders and sessions) with hk1 cut off at its edge routers over SSH
    (the site test_drills.py does not cut on the lab; every site's cut runs in `make bench`); as on the lab,
    whether this machine carried it today is a printed figure, and so is whether the stack was steady again after
    the restore. Last before destroy, so that a stack left unsteady spoils no other test."""
    lab = estate["lab"]
    refused = _cli(estate, "capacity", "verify", "--stack", lab.name, "--only", "hk1", "--json")  # not a lab
    assert refused.returncode == 1 and "confirm with --yes" in refused.stdout, refused.stdout + refused.stderr[-2000:]
    done = _cli(estate, "capacity", "verify", "--stack", lab.name, "--duration", "10", "--warmup", "5",
                "--only", "hk1", "--yes", "--json")
    assert done.stdout.strip().startswith("{"), done.stderr[-3000:]
    result = json.loads(done.stdout)
    print(f"\nmeasured through hosts: {json.dumps(result['scenarios'])}\nprogress: {done.stderr[-3000:]}")
    topology = LabSubstrate(lab).topology
    driven_at_the_requirement(result, topology, cut=["hk1"], all_up=False)
    assert done.returncode == (0 if result["ok"] else 1)
    sites = yaml.safe_load(estate["file"].read_text())["sites"]
    for site in sites:  # every edge uplink up again
        target = ssh.SshTarget(site["edge"]["address"], "root")
        for interface in (u["interface"] for u in site["edge"]["uplinks"].values()):
            state = ssh.run(_ssh(estate), target, ["ip", "-o", "link", "show", "dev", interface]).stdout
            assert " state DOWN " not in state, (site["name"], interface)


def test_destroy_removes_only_what_tradestack_added(estate):
    """Last: the hosts stack goes, with the nft table and state directory it prepared; the machines, their
    sshd and the deployed stack stay (the lab's own, destroyed with the session)."""
    lab = estate["lab"]
    host = next(h for h in yaml.safe_load(estate["file"].read_text())["hosts"] if h["service"] == "router")
    target = ssh.SshTarget(host["address"], "root")
    done = _cli(estate, "stack", "destroy", "--stack", lab.name, "--yes", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["changes"].get("delete") == 20 and result["leftovers"] == [], result
    # the hosts stack's own known_hosts went with it: look with the lab's access
    files = lab.access_files()
    labs = ssh.SshOptions(files.private_key, files.known_hosts)
    assert not ssh.run(labs, target, ["nft", "list", "table", "inet", "tradestack"]).succeeded
    assert ssh.run(labs, target, ["true"]).succeeded
    assert LabSubstrate(lab).probe.database_leader() is not None
