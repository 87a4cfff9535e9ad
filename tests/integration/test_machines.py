"""A booted Debian machine in a lab namespace (docs/lab.md, machines): the base image built once per package set
(cached like the Go builds; minutes cold), a machine booted from an overlay of it with systemd as init inside a
namespace made for this run, reached over a veth from this machine; its power lost (every process at once) and
back by booting, keeping its own disk; removed, leaving no mount, layer or process.

Beside the session lab: it touches none of its namespaces."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tradestack.lab import netlink
from tradestack.lab.machines import BaseImage, Machine, MachineError, build_image, debian_mirror
from tradestack.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.heavy, pytest.mark.timeout(900),
              pytest.mark.skipif(os.geteuid() != 0 and not os.environ.get("CI"), reason="needs root")]

# 198.18.0.0/15 only; a /30 of its own, far from the lab plan's addresses
OUTSIDE, INSIDE = "198.19.250.1", "198.19.250.2"


@pytest.fixture(scope="module")
def machine():
    image = BaseImage(mirror=debian_mirror())
    build_image(image)
    run = secrets.token_hex(3)
    netns, outside = f"tsm{run}", f"tsm{run}o"
    state = Path(tempfile.mkdtemp(prefix=f"tradestack-machine-{run}-"))
    m = Machine(f"machine-{run}", netns, state / "m", image)
    netlink.create_namespace(netns, forwarding=False, loopback=[])
    try:
        netlink.create_veth({"netns": None, "ifname": outside, "address": f"{OUTSIDE}/30"},
                            {"netns": netns, "ifname": "lan0", "address": f"{INSIDE}/30"})
        started = time.monotonic()
        m.boot(timeout=120)
        print(f"\nbooted to {m.state_of()} in {time.monotonic() - started:.1f} s")
        yield m
    finally:
        m.remove()
        netlink.delete_link(None, outside)
        netlink.delete_namespace(netns)
        shutil.rmtree(state, ignore_errors=True)


def _sshd_answers(address: str) -> bool:
    try:
        with socket.create_connection((address, 22), timeout=2) as s:
            return s.recv(64).startswith(b"SSH-2.0-OpenSSH")
    except OSError:
        return False


def test_a_machine_boots_with_systemd_as_init_and_its_sshd_answers_on_its_own_address(machine):
    assert machine.state_of() in ("running", "degraded")
    assert machine.run(["cat", "/proc/1/comm"]).stdout.strip() == "systemd"
    assert machine.run(["hostname"]).stdout.strip() == machine.name
    assert machine.run(["systemctl", "is-active", "ssh"]).stdout.strip() == "active"
    assert wait_for(lambda: _sshd_answers(INSIDE), 20, 0.5)


def test_its_disk_is_its_own_and_survives_a_power_loss(machine):
    machine.run(["sh", "-c", "echo kept > /var/tmp/mark && sync"])
    assert not (machine.image.root / "var" / "tmp" / "mark").exists()  # the base image is never written
    first = machine.init_pid()
    machine.power_off()
    assert not machine.running() and first is not None and not Path(f"/proc/{first}").exists()
    assert not _sshd_answers(INSIDE)
    machine.boot(timeout=120)  # power back: it boots, nothing re-creates it
    assert machine.run(["cat", "/var/tmp/mark"]).stdout.strip() == "kept"
    assert wait_for(lambda: _sshd_answers(INSIDE), 20, 0.5)


def test_removing_a_machine_leaves_no_mount_layer_or_process(machine, tmp_path):
    other = Machine(f"{machine.name}-b", machine.netns, tmp_path / "b", machine.image)
    other.mount()
    assert other.mounted()
    other.remove()
    assert not other.mounted() and not (tmp_path / "b").exists()
    mounts = Path("/proc/self/mounts").read_text()
    assert str(tmp_path / "b") not in mounts


def test_a_machine_that_does_not_boot_in_time_is_left_off_and_unmounted_with_its_disk(machine, tmp_path,
                                                                                    monkeypatch):
    """A boot that times out raised, and left the machine running and mounted: a failed `stack up` then left
    mounts that `stack destroy` did not know (seen when a second estate ran out of inotify instances)."""
    other = Machine(f"{machine.name}-c", machine.netns, tmp_path / "c", machine.image)
    monkeypatch.setattr(Machine, "state_of", lambda self: "starting" if self.init_pid() else None)
    try:
        with pytest.raises(MachineError, match=r"did not boot within 3 s \(systemd says 'starting'\)"):
            other.boot(timeout=3)
        assert not other.running() and not other.mounted()
        assert (other.state / "upper").is_dir()  # its disk is kept: a machine that boots again finds it
    finally:
        other.remove()


def _tradestack(*args: str, timeout: float = 900) -> tuple[int, dict]:
    import json

    done = subprocess.run([sys.executable, "-m", "tradestack", *args, "--json"], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ})
    assert done.stdout.strip().startswith("{"), (args, done.stdout[-2000:], done.stderr[-3000:])
    return done.returncode, json.loads(done.stdout)


@pytest.fixture(scope="module")
def estate(tmp_path_factory, lab_home):
    """The lab topology as booted machines, adopted as a `hosts` stack from the hosts file the lab writes (real-host
    traits: systemd, packages, sshd, chrony; the lab's power switch per machine), and deployed from nothing through
    it. Destroyed after, leaving nothing."""
    import yaml

    from tradestack.adapters import ssh
    from tradestack.lab.hostsfile import hosts_file
    from tradestack.lab.stack import LabStack, workdir

    run = secrets.token_hex(2)
    lab_name, hosts_name = f"tsm{run}", f"tsh{run}"
    work = tmp_path_factory.mktemp("machines")
    home = pytest.MonkeyPatch()  # the state dir every test of the run shares (set per test, and this is a module's)
    home.setenv("TRADESTACK_HOME", str(lab_home))
    stack = LabStack(lab_name, Path(__file__).resolve().parents[2] / "infra" / "topologies" / "lab.yaml",
                     machines=True)
    try:
        started = time.monotonic()
        made, files = stack.up()
        print(f"\nlab of machines up in {time.monotonic() - started:.1f} s: {made.changes}")
        key = work / "id_ed25519"
        shutil.copyfile(files.private_key, key)
        key.chmod(0o600)
        described = hosts_file(stack, key)
        path = work / "hosts.yaml"
        path.write_text(yaml.safe_dump(described, sort_keys=False))
        code, up = _tradestack("stack", "up", "--stack", hosts_name, "--hosts", str(path), "--yes")
        assert code == 0, up
        started = time.monotonic()
        code, first = _tradestack("deploy", "--stack", hosts_name, timeout=1200)
        print(f"\ndeploy onto {len(described['hosts'])} machines from nothing: {time.monotonic() - started:.0f} s")
        assert code == 0 and first["ok"], first["failures"]
        options = ssh.SshOptions(key, Path(up["files"]["known_hosts"]))
        addresses = {h["name"]: h["address"] for h in described["hosts"]}

        def on(host: str, script: str) -> Any:
            return ssh.run(options, ssh.SshTarget(addresses[host], "root"), ["sh", "-c", script], timeout=60)
        yield {"lab": stack, "name": hosts_name, "described": described, "on": on, "work": work, "made": made}
    finally:
        subprocess.run([sys.executable, "-m", "tradestack", "stack", "destroy", "--stack", hosts_name, "--yes"],
                       capture_output=True, timeout=300)
        stack.destroy()
        home.undo()
    assert stack.leftovers() == []
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert f"--machine={lab_name}-" not in processes and str(workdir(lab_name, lab_home)) not in processes  # the proxy


def test_a_deploy_onto_machines_runs_the_real_host_branch_and_a_second_one_changes_nothing(estate):
    """The deploy installed each role's packages through the lab's proxy, runs every program as a systemd unit with
    Debian's own units masked, hardened sshd, made the service user on each machine and runs chrony against the
    lab's time server without the right to set the clock; a second deploy changes nothing and `status` sees every
    program running."""
    from tradestack.lab.stack import workdir

    stack, lab_name, described = estate["lab"], estate["lab"].name, estate["described"]
    assert described["traits"] == {"time_servers": [stack.outputs()["time_server"]]}  # a real host's otherwise
    assert described["power"]["off"][1:] == ["-m", "tradestack.lab.switch", "--lab",
                                             str(workdir(lab_name, stack.home)), "{host}", "off"]
    started = time.monotonic()
    code, second = _tradestack("deploy", "--stack", estate["name"])
    print(f"deploy with nothing to change: {time.monotonic() - started:.0f} s")
    assert code == 0 and second["changed"] == 0, {h: s for h, s in second["hosts"].items() if s["changed"]}
    code, status = _tradestack("status", "--stack", estate["name"])
    assert code == 0 and status["ok"], status["problems"]
    programs = {h: info["programs"] for site in status["sites"].values() for h, info in site["hosts"].items()}
    assert programs[f"{lab_name}-sz1-orderdb-1"] == {"patroni": "running"}
    assert programs[f"{lab_name}-sz1-gateway-1"] == {"haproxy": "running", "keepalived": "running",
                                                     "tradestack-gateway": "running"}
    replaced = {f"{lab_name}-sz1-orderdb-1": ["postgresql.service"],  # Debian's own units: never started
                f"{lab_name}-hk1-gateway-2": ["haproxy.service", "keepalived.service"],
                f"{lab_name}-wit-consensus-1": ["etcd.service"]}
    for host, units in replaced.items():
        script = ("systemctl is-system-running; systemctl --failed --no-legend --plain | wc -l; "
                  f"for u in {' '.join(units)}; do systemctl is-enabled $u; done; "
                  "sshd -T | grep -E '^(passwordauthentication|permitrootlogin) '; id -un tradestack; "
                  "chronyc -n tracking | grep -E '^(Reference ID|Leap status)'")
        seen = estate["on"](host, script).stdout
        lines = seen.splitlines()
        assert lines[:2] == ["running", "0"], (host, seen)
        assert lines[2:2 + len(units)] == ["masked"] * len(units), (host, seen)
        assert "passwordauthentication no" in lines and "permitrootlogin without-password" in lines, seen
        assert "tradestack" in lines, seen  # the service user, made on this machine
        assert f"({stack.outputs()['time_server']})" in seen and "Leap status     : Normal" in seen, seen


@pytest.fixture(scope="module")
def drilling(estate):
    code, _ = _tradestack("stack", "config", "--stack", estate["name"], "tradestack:allowDrills", "true")
    assert code == 0
    return estate


# the power loss of the leader's site is site-power-loss's fault aimed by the leader (test_drills.py runs it on
# the lab): on machines it would add a site's boots (minutes) and prove no other actuator
NOT_ON_MACHINES = {"leader-site-power-loss"}


def _machines_drills() -> list[str]:
    from tradestack.drills import files

    return sorted(set({**files.catalogue(), **files.systemd_catalogue()}) - NOT_ON_MACHINES)


# drills whose restore boots machines, and how they went down as the journal's inject says it
BOOTS = {"db-primary-crash": "its power cut", "gateway-host-crash": "its power cut",
         "db-leader-reboot": "orderly shutdown by its init", "site-power-loss": "power lost in"}
# of those, the ones whose machine led the database: it rejoins as the synchronous standby by itself
LEADERS = ("db-primary-crash", "db-leader-reboot")


@pytest.mark.peak
@pytest.mark.parametrize("drill", _machines_drills())
def test_every_catalogue_drill_passes_on_machines_at_peak_and_what_lost_power_boots_back(drilling, drill):
    """Each catalogue drill outside the Kubernetes folder (and the systemd folder's reboot) through `hosts` on the
    machines, at the topology's peak, in the integration tier's short windows: nothing acknowledged is lost and
    every untimed check passes. A machine that lost power (or rebooted) is switched on and boots with nobody
    deploying: the restore reports each unit's time from power on to active, and a database machine that led
    rejoins as the synchronous standby by itself."""
    import re

    from .conftest import TIMED, journal_times, with_short_windows

    stack = drilling["name"]
    code, result = _tradestack("drill", "run", str(with_short_windows(drill, drilling["work"] / "drills")),
                               "--stack", stack, "--yes", timeout=900)
    assert "verdict" in result, result  # refused: say why
    print(f"\n{drill} on machines: {result['verdict']}; figures {result['figures']}\n"
          f"journal: {journal_times(result)}")
    assert code == (0 if result["verdict"] == "pass" else 1)
    lost = next(c for c in result["checks"] if c["check"] == "acknowledged orders lost")
    assert lost["actual"] == 0 and result["figures"]["orders"] > 0
    untimed = [c for c in result["checks"] if not c["ok"] and c["check"] not in TIMED]
    assert untimed == [], untimed
    restores = [s for s in result["journal"] if s["name"].startswith("restore")]
    assert restores and all(s["ok"] for s in restores), restores
    if drill in BOOTS:
        inject = next(s for s in result["journal"] if s["name"].startswith("inject"))
        assert BOOTS[drill] in inject["detail"], inject
        one = re.search(r"host (\S+) (crashes|reboots)", inject["detail"])
        down = one.group(1) if one else r"\S+"
        assert re.search(rf"{down} booted, units active after power on: .*tradestack-\S+ \d+(\.\d+)? s",
                         restores[0]["detail"]), restores[0]
        after = next(s for s in result["journal"] if s["name"] == "steady state after the drill")
        print(f"power back to steady: {after['ended'] - restores[0]['started']:.1f} s; {restores[0]['detail']}")
        if drill in LEADERS:
            code, status = _tradestack("status", "--stack", stack)
            assert down in status["database"]["sync_standby"], status["database"]  # nobody deployed since


def test_breaking_one_thing_per_machine_turns_exactly_its_control_red(estate):
    """The real-host controls, each broken on its own machine: chrony stopped (OPS-01 reads each machine's time
    service), password login allowed by a drop-in before the deploy's (SEC-01 asks the machine's sshd -T), a
    trading unit made to run as root (SEC-02 asks systemd); everything else passes, and EVD-01 fails as on any
    stack without counting drill evidence."""
    lab, on = estate["lab"].name, estate["on"]
    clock, sshd, root = f"{lab}-wit-consensus-1", f"{lab}-sz1-gateway-2", f"{lab}-hk1-gateway-2"
    unit = "tradestack-tradestack-gateway.service"
    dropin = f"/etc/systemd/system/{unit}.d/zz-root.conf"
    broken = {clock: "systemctl stop chrony",
              sshd: "echo 'PasswordAuthentication yes' > /etc/ssh/sshd_config.d/00-broken.conf",
              root: f"mkdir -p {dropin.rsplit('/', 1)[0]} && printf '[Service]\\nUser=root\\n' > {dropin} && "
                    f"systemctl daemon-reload && systemctl restart {unit}"}
    mended = {clock: "systemctl start chrony", sshd: "rm -f /etc/ssh/sshd_config.d/00-broken.conf",
              root: f"rm -f {dropin} && systemctl daemon-reload && systemctl restart {unit}"}
    try:
        for host, script in broken.items():
            done = on(host, script)
            assert done.rc == 0, (host, script, done.stderr)
        code, result = _tradestack("audit", "run", "--stack", estate["name"], "--out", str(estate["work"] / "audit"),
                                   timeout=900)
    finally:
        for host, script in mended.items():
            on(host, script)
    red = {c["id"]: c["failed"] for c in result["controls"] if c["verdict"] == "fail"}
    assert code == 1 and set(red) == {"OPS-01", "SEC-01", "SEC-02", "EVD-01"}, red
    assert len(red["OPS-01"]) == 1 and red["OPS-01"][0].startswith(f"{clock}: chronyc tracking failed"), red["OPS-01"]
    assert red["SEC-01"] == [f"{sshd}: PasswordAuthentication is not 'no'"], red["SEC-01"]
    assert red["SEC-02"] == [f"{root}: {unit} has no User= other than root: tradestack-gateway would run as root"], \
        red["SEC-02"]


def test_a_machine_powered_off_by_hand_is_drift_that_refresh_shows_and_up_boots_with_its_services(estate):
    """The lab of machines is Pulumi resources: `up` created every one (what its progress counts to); a machine
    powered off by hand is drift that `refresh` shows, and `up` boots it again (an update, never a new disk): its
    disk and host key kept, its units started by its own init, so `status` sees every program running again with
    nobody deploying."""
    from tradestack.lab.stack import workdir

    stack = estate["lab"]
    assert estate["made"].changes == {"create": stack.expected_resources()}, estate["made"].changes
    victim = f"{stack.name}-hk1-gateway-2"
    assert estate["on"](victim, "echo kept > /var/tmp/mark && sync").rc == 0
    off = Machine(victim, victim, workdir(stack.name, stack.home) / victim / "machine",
                  BaseImage(mirror=debian_mirror()))
    assert off.running()
    off.power_off()
    # and one switched off as a drill does (its LAN port dark too) whose restore never ran: `up` failed adding
    # its default route ("Network is unreachable") until the dark port was drift of its own (make test, stop 43)
    dark = f"{stack.name}-hk1-router-1"
    code, switched = _tradestack("stack", "power", dark, "off", "--stack", stack.name)
    assert code == 0 and switched["power"] == "off", switched
    drift = stack.refresh()
    assert drift.changes.get("update", 0) >= 3, drift.changes  # two machines, a cable
    again_drift = stack.refresh()  # a second refresh before any `up` reads the same
    assert again_drift.changes == drift.changes, again_drift.changes
    repaired, _ = stack.up()
    assert repaired.changes.get("update", 0) >= 3 and not repaired.changes.get("create"), repaired.changes
    assert off.running()
    code, switched = _tradestack("stack", "power", dark, "status", "--stack", stack.name)
    assert code == 0 and switched["power"] == "on", switched
    again = estate["on"](victim, "cat /var/tmp/mark")  # same disk, same host key (SSH pins it)
    assert again.stdout.strip() == "kept", again.stderr
    problems: list = []

    def serving() -> bool:
        code, status = _tradestack("status", "--stack", estate["name"])
        problems[:] = status.get("problems", [])
        return code == 0 and status["ok"]
    assert wait_for(serving, 90, 3), problems
