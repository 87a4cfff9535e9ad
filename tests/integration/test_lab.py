"""The lab for real: Pulumi engine, namespaces, BGP over carriers, sshd, Ansible. Runs as root."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tradestack.lab import faults, netlink, probe, routing
from tradestack.lab.stack import LabStack
from tradestack.lab.substrate import LabSubstrate
from tradestack.polling import wait_for
from tradestack.substrates.faults import Blackhole, Partition

pytestmark = [pytest.mark.integration, pytest.mark.heavy]

PORT = 7001
TOPOLOGIES = Path(__file__).resolve().parents[2] / "infra" / "topologies"


@pytest.fixture(scope="module")
def hosts(lab):
    inv = yaml.safe_load(lab["files"].inventory.read_text())
    return inv["all"]["hosts"]


@pytest.fixture(scope="module")
def listeners(lab, hosts):
    """One TCP listener per site, on the site's first host."""
    chosen = {}
    for name, h in hosts.items():
        if h.get("site"):  # venues and clients are hosts too, outside every site
            chosen.setdefault(h["site"], (name, h["lan_address"]))
    procs = [probe.listen(ns, addr, PORT) for ns, addr in chosen.values()]
    yield chosen
    for p in procs:
        p.terminate()
        p.wait()


def wait_converged(hosts, listeners, limit=30.0):
    """BGP sessions take a few seconds to establish after `up`."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if all(probe.connect(next(iter(hosts)), addr, PORT, 0.5) for _, addr in listeners.values()):
            return True
        time.sleep(0.5)
    return False


def test_up_created_everything_and_second_preview_changes_nothing(lab):
    assert lab["up"].changes.get("create", 0) > 100
    again = lab["stack"].preview()
    assert not again.changed, again.changes


def test_every_host_reaches_every_other_site_and_clients_reach_every_prefix(lab, hosts, listeners):
    assert wait_converged(hosts, listeners)
    failures = [(name, site) for name, h in hosts.items() for site, (_, addr) in listeners.items()
                if site != h.get("site") and not probe.connect(name, addr, PORT)]
    assert failures == []
    clients = lab["outputs"]["clients"]["netns"]
    assert all(probe.connect(clients, addr, PORT) for _, addr in listeners.values())


def test_carrier_outage_reroutes_and_double_outage_isolates_hk1_and_wit(lab, hosts, listeners):
    assert wait_converged(hosts, listeners)
    fmap = lab["outputs"]["fault_map"]
    sz1_host = listeners["sz1"][0]
    hk1_addr, wit_addr = listeners["hk1"][1], listeners["wit"][1]
    try:
        faults.set_group(fmap, "carrier:ct", failed=True)
        took = probe.time_until(sz1_host, hk1_addr, PORT, limit=20)
        print(f"\nconvergence after carrier:ct failed: sz1 -> hk1 reachable again after {took:.2f}s")
        assert took is not None  # sz1 (cu) -> ix -> cm -> hk1
        faults.set_group(fmap, "carrier:cm", failed=True)
        gone = probe.time_until(sz1_host, hk1_addr, PORT, limit=20, reachable=False)
        assert gone is not None
        assert not probe.connect(sz1_host, wit_addr, PORT, 1)
        clients = lab["outputs"]["clients"]["netns"]
        assert probe.connect(clients, listeners["sz1"][1], PORT)  # sz1 still served over cu
    finally:
        faults.set_group(fmap, "carrier:cm", failed=False)
        faults.set_group(fmap, "carrier:ct", failed=False)
    back = probe.time_until(sz1_host, wit_addr, PORT, limit=30)
    print(f"restored: sz1 -> wit reachable again after {back:.2f}s")
    assert back is not None


def test_a_carrier_blackhole_and_a_site_partition_cut_what_they_name_and_their_inverses_restore_it(lab, hosts,
                                                                                                     listeners):
    """The lab's actuators for a gray carrier (nft drop in the carrier, links up) and a partition between two
    sites (nft at both edges), checked for their effect and their inverse; the drills that use them run at peak
    through the `hosts` substrate's actuators (test_hosts_substrate.py) and in `make bench`."""
    assert wait_converged(hosts, listeners)
    substrate = LabSubstrate(lab["stack"])
    sz1_host = listeners["sz1"][0]
    hk1_addr, wit_addr = listeners["hk1"][1], listeners["wit"][1]
    daemons = lab["stack"].daemons_dir
    step: list[str] = []

    blackhole = substrate.actuator(Blackhole(kind="blackhole", carrier="cu"))
    blackhole.inject()
    try:
        # BFD notices the silent carrier: every session over cu leaves Established, the links stay up
        assert wait_for(lambda: any("c-cu" in u for u in routing.unconverged(daemons)), 10, 0.25), \
            routing.unconverged(daemons)
        assert probe.time_until(sz1_host, hk1_addr, PORT, limit=20) is not None  # over ct
    finally:
        blackhole.restore(step.append)
    assert routing.unconverged(daemons) == []

    cut = substrate.actuator(Partition(kind="partition", sites=["sz1", "hk1"]))
    cut.inject()
    try:
        assert probe.time_until(sz1_host, hk1_addr, PORT, limit=10, reachable=False) is not None
        assert probe.connect(sz1_host, wit_addr, PORT, 1)  # both still reach the third site
        assert probe.connect(listeners["hk1"][0], wit_addr, PORT, 1)
    finally:
        cut.restore(step.append)
    assert probe.time_until(sz1_host, hk1_addr, PORT, limit=10) is not None


def test_ansible_reaches_every_host_over_ssh_with_pinned_keys(lab, hosts):
    proc = subprocess.run(["ansible", "all", "-i", str(lab["files"].inventory), "-m", "ping", "-o",
                           "--forks", "10"], capture_output=True, text=True, timeout=300, check=False,
                          env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
                               "ANSIBLE_HOST_KEY_CHECKING": "True", "HOME": "/root"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert proc.stdout.count("SUCCESS") == len(hosts)


def test_a_command_over_ssh_skips_this_machines_shell_start_up(lab, hosts):
    """A lab host shares this machine's /root: a command sshd starts there must not run this machine's root's
    ~/.bashrc (a developer's pyenv init: 0.1 s of CPU per command). bash reads it only at the first shell level;
    the lab's sshd starts it at the second."""
    from tradestack.adapters import ssh

    files = lab["files"]
    options = ssh.SshOptions(files.private_key, files.known_hosts)
    name, host = next(iter(hosts.items()))
    done = ssh.run(options, ssh.SshTarget(host["ansible_host"], "root"), ["printenv", "SHLVL"], timeout=30)
    assert done.rc == 0, done.stderr
    # sshd sets 1, so the login shell counts itself 2 (and reads no ~/.bashrc), then hands 1 back to the command it
    # runs in its place; without it, bash counts 1, reads ~/.bashrc and hands 0 on
    assert done.stdout.strip() == "1", (name, done.stdout)


def test_deleted_namespace_is_drift_that_up_repairs(lab, hosts, listeners):
    stack: LabStack = lab["stack"]
    victim = f"{stack.name}-hk1-gateway-2"
    netlink.delete_namespace(victim)
    drift = stack.refresh()
    assert drift.changed and drift.changes.get("delete", 0) + drift.changes.get("update", 0) > 0, drift.changes
    repaired, _ = stack.up()
    assert repaired.changes.get("create", 0) >= 3, repaired.changes  # namespace, links, sshd ...
    assert netlink.ns_exists(victim)
    assert probe.time_until(victim, listeners["sz1"][1], PORT, limit=30) is not None


def test_a_crashed_host_comes_back_with_only_its_own_resources_repaired(deployed, lab, hosts, listeners):
    """What a drill's restore does after a host crash: its LAN port up, only that host's resources of the stack
    read and applied again (its sshd, the routes the kernel dropped with the port), its supervisor started."""
    from tradestack.lab import actuators, daemons

    stack: LabStack = lab["stack"]
    chosen = {name for name, _ in listeners.values()}
    victim = next(n for n, h in hosts.items() if h.get("site") == "sz1" and n not in chosen
                  and h.get("service") == "gateway")
    bystander = next(n for n, h in hosts.items() if h.get("site") == "hk1" and n not in chosen)
    work = stack.daemons_dir
    untouched = daemons.running("sshd", bystander, str(work / bystander))
    actuators.crash(victim)  # every process killed, the LAN port down
    assert daemons.running("sshd", victim, str(work / victim)) is None
    actuators.revive_many(LabSubstrate(stack), [victim])
    assert daemons.running("sshd", victim, str(work / victim)) is not None
    assert daemons.running("sshd", bystander, str(work / bystander)) == untouched
    assert probe.time_until(victim, listeners["hk1"][1], PORT, limit=30) is not None  # its routes are back
    assert not stack.preview().changed  # the state agrees with the lab again
    with pytest.raises(netlink.LabError, match="no resources"):
        stack.repair([f"{stack.name}-no-such-host"])


def test_second_stack_side_by_side_and_destroy_leaves_nothing(lab, hosts, listeners, tmp_path):
    small = tmp_path / "small.yaml"
    small.write_text(yaml.safe_dump({
        "name": "small", "peak": {"orders_per_second": 10}, "headroom": 1.0, "carriers": [{"name": "ct"}],
        "sites": [{"name": "sz1", "role": "active", "uplinks": [{"carrier": "ct"}]}],
        "services": [{"name": "gateway", "kind": "stateless", "placement": {"sz1": 1}}]}))
    first = lab["stack"].name
    name = first[:7] + ("b" if first[-1] != "b" else "c")  # a second run-unique name, never the first's
    other = LabStack(name, small)
    try:
        other.up()
        assert set(netlink.list_namespaces(f"{name}-")) >= {f"{name}-sz1-gateway-1", f"{name}-carrier-ct"}
        assert probe.connect(listeners["sz1"][0], listeners["hk1"][1], PORT)  # first stack unaffected
    finally:
        other.destroy()
    assert other.leftovers() == []
    assert not Path(f"/sys/class/net/{name}-mgmt").exists()
    assert name not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert probe.connect(listeners["sz1"][0], listeners["hk1"][1], PORT)
    print(json.dumps({"first_stack_namespaces": len(netlink.list_namespaces(f"{lab['stack'].name}-"))}))
