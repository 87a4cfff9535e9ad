"""The hosts substrate's pure half: hosts files checked against their topology (file:line on every problem), the
inventory and pinned host keys they give, and every fault as the exact commands it runs on each host."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
import yaml

from tradestack.drills import files
from tradestack.substrates import faults
from tradestack.hosts import plan
from tradestack.hosts.load import HostsFileError, load_hosts_file

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "infra" / "hosts" / "example.yaml"


@pytest.fixture(scope="module")
def estate():
    return load_hosts_file(EXAMPLE)


def _resolve(ref: str) -> str:
    return {"@database-leader": "sz1-orderdb-1", "@vip-holder:sz1": "sz1-gateway-1"}.get(ref, ref)


def test_the_example_realises_the_lab_topology(estate):
    assert estate.topology.name == "lab" and estate.private_key == Path("~/.ssh/tradestack_ed25519").expanduser()
    inv = plan.inventory(estate, "staging")["all"]
    assert inv["vars"] == {"ansible_user": "ops", "ansible_port": 22, "tradestack_stack": "staging",
                           "ansible_become": True, "ansible_become_method": "sudo"}
    assert sorted(inv["children"]["gateway"]["hosts"]) == ["hk1-gateway-1", "hk1-gateway-2", "sz1-gateway-1",
                                                           "sz1-gateway-2"]
    db = inv["hosts"]["sz1-orderdb-1"]
    assert {k: db[k] for k in ("service", "site", "site_role", "site_prefix")} == {
        "service": "orderdb", "site": "sz1", "site_role": "active", "site_prefix": "198.18.1.0/24"}
    assert sorted(inv["children"]["outside"]["hosts"]) == ["ats-gw", "clients-1", "exchange-gw"]
    assert not any(name.endswith("-edge") for name in inv["hosts"])  # nothing is deployed to edge routers
    known = plan.known_hosts(estate).splitlines()
    assert len(known) == 19 and all(line.split()[1] == "ssh-ed25519" for line in known)


def test_outputs_follow_the_labs_contract(estate):
    outs = plan.outputs(estate, "staging")
    assert outs["upstreams"] == {"exchange": "198.19.16.1", "overnight-ats": "198.19.17.1"}
    assert outs["clients"] == {"host": "clients-1", "address": "198.19.0.1"}
    ct = outs["fault_map"]["carrier:ct"]
    assert [(u["edge"], u["interface"]) for u in ct["uplinks"]] == [("sz1-edge", "eth1"), ("hk1-edge", "eth1")]
    power = outs["fault_map"]["power:hk-grid"]
    assert "hk1-orderdb-1" in power["hosts"] and {u["carrier"] for u in power["uplinks"]} == {"ct", "cm"}


def _commands(fault: faults.Fault, estate) -> tuple[list[str], list[str]]:
    planned = plan.fault_plan(fault, estate, "/var/lib/tradestack", _resolve)
    return [str(c) for c in planned.inject], [str(c) for c in planned.restore]


def test_a_carrier_outage_downs_each_sites_uplink_to_it_at_the_edge(estate):
    inject, restore = _commands(faults.LinkDown(kind="link-down", group="carrier:ct"), estate)
    assert inject == ["sz1-edge: ip link set dev eth1 down", "hk1-edge: ip link set dev eth1 down"]
    assert restore == ["sz1-edge: ip link set dev eth1 up", "hk1-edge: ip link set dev eth1 up"]


def test_a_gray_carrier_drops_in_nftables_on_the_carrier_interface(estate):
    planned = plan.fault_plan(faults.Blackhole(kind="blackhole", carrier="cm"), estate, "/x", _resolve)
    (inj,), (rest,) = [c for c in planned.inject if c.host == "hk1-edge"], [c for c in planned.restore
                                                                           if c.host == "hk1-edge"]
    assert inj.argv == ("nft", "-f", "-") and 'iifname "eth2" drop' in inj.stdin and "hook forward" in inj.stdin
    assert rest.stdin == "".join(f"delete chain inet tradestack drill_blackhole_cm_{h}\n"
                                 for h in ("input", "forward", "output"))
    assert {c.host for c in planned.inject} == {"hk1-edge", "wit-edge"}


def test_host_faults_act_on_that_host_only(estate):
    inject, restore = _commands(faults.HostCrash(kind="host-crash", host="@database-leader"), estate)
    assert inject[0].startswith("sz1-orderdb-1: python3 -c ") and inject[0].endswith(
        " 'tradestack-*.service' SIGKILL /sys/fs/cgroup")  # every process of every tradestack unit
    assert inject[1].startswith("sz1-orderdb-1: sh -c") and inject[1].endswith(
        " sh lan0 /var/lib/tradestack/sz1-orderdb-1/lan-routes")  # routes kept, then the port down
    assert "ip route replace" in restore[0]  # the port up with its routes (a reboot's network config)
    # only tradestack's units: Debian's own patroni/etcd/haproxy/keepalived units are masked on a deployed host
    assert restore[1] == "sz1-orderdb-1: systemctl restart 'tradestack-*.service'"
    planned = plan.fault_plan(faults.ProcessKill(kind="process-kill", host="sz1-router-1", program="haproxy"), estate,
                              "/var/lib/tradestack", _resolve)
    (kill,) = planned.inject
    assert kill.argv[:2] == ("python3", "-c") and kill.argv[3:] == ("tradestack-haproxy.service", "SIGKILL",
                                                                    "/sys/fs/cgroup")
    assert str(planned.restore[0]) == ("sz1-router-1: (until it succeeds, up to 30 s) systemctl is-active --quiet "
                                       "tradestack-haproxy.service")
    assert planned.hosts == ("sz1-router-1",) and not planned.booted


def test_a_freeze_on_a_systemd_host_stops_and_continues_its_units_processes(estate):
    inject, restore = _commands(faults.HostFreeze(kind="host-freeze", host="sz1-gateway-2"), estate)
    assert inject[0].startswith("sz1-gateway-2: python3 -c ") and inject[0].endswith(
        " 'tradestack-*.service' SIGSTOP /sys/fs/cgroup")
    assert restore[0].endswith(" 'tradestack-*.service' SIGCONT /sys/fs/cgroup")


def test_a_systemd_hosts_freeze_signals_every_process_in_its_units_control_groups(tmp_path):
    """Run as a host runs it: a `systemctl` that lists two active units (one with a child group, as a unit with
    sub-groups has), their groups' processes live `sleep`s; all are stopped, then continued; none outside them.
    The groups are in systemd's named hierarchy, as on a host with the hybrid layout (the lab's machines)."""
    import subprocess
    import time

    sleepers = [subprocess.Popen(["sleep", "60"]) for _ in range(4)]
    try:
        cgroups = tmp_path / "cgroup"
        (cgroups / "cpu").mkdir(parents=True)  # a v1 controller's: not where a unit's processes are listed
        for group, pids in (("system.slice/tradestack-a.service", sleepers[:1]),
                            ("system.slice/tradestack-b.service", sleepers[1:2]),
                            ("system.slice/tradestack-b.service/inner", sleepers[2:3])):
            (cgroups / "systemd" / group).mkdir(parents=True, exist_ok=True)
            (cgroups / "systemd" / group / "cgroup.procs").write_text("".join(f"{p.pid}\n" for p in pids))
        fake = tmp_path / "bin" / "systemctl"
        fake.parent.mkdir()
        fake.write_text('#!/bin/sh\nif [ "$1" = list-units ]; then\n'
                        '  printf "tradestack-a.service loaded active running a\\ntradestack-b.service loaded active '
                        'running b\\n"\nelse echo "/system.slice/$4"; fi\n')
        fake.chmod(0o755)
        env = {"PATH": f"{fake.parent}:/usr/bin:/bin"}

        def states() -> list[str]:
            time.sleep(0.2)
            return [open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()[0] for p in sleepers]

        for signal, expected in (("SIGSTOP", ["T", "T", "T", "S"]), ("SIGCONT", ["S", "S", "S", "S"])):
            done = subprocess.run(list(plan.units_signal(signal, cgroups=str(cgroups))), capture_output=True, text=True,
                                  env=env, timeout=30)
            assert done.returncode == 0 and done.stdout.strip() == "3", done.stderr
            assert states() == expected
        for group in ("tradestack-a.service", "tradestack-b.service/inner", "tradestack-b.service"):
            (cgroups / "systemd" / "system.slice" / group / "cgroup.procs").write_text("")
        empty = subprocess.run(list(plan.units_signal("SIGSTOP", cgroups=str(cgroups))), capture_output=True, text=True,
                               env=env, timeout=30)
        assert empty.returncode == 1 and "no process of an active tradestack-*.service unit" in empty.stderr
    finally:
        for p in sleepers:
            p.kill()
            p.wait()


def _with_power(estate, path: Path) -> object:
    document = yaml.safe_load(EXAMPLE.read_text())
    document["topology"] = str((EXAMPLE.parent / document["topology"]).resolve())
    document["power"] = {"off": ["ipmitool", "-H", "{host}-bmc.example", "chassis", "power", "off"],
                         "on": ["ipmitool", "-H", "{host}-bmc.example", "chassis", "power", "on"], "boot_s": 90}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return load_hosts_file(path)


def test_with_a_power_switch_a_crash_cuts_the_power_and_the_restore_boots_the_host(estate, tmp_path):
    powered = _with_power(estate, tmp_path / "hosts.yaml")
    planned = plan.fault_plan(faults.HostCrash(kind="host-crash", host="@database-leader"), powered, "/x", _resolve)
    assert [str(c) for c in planned.inject] == ["here, for sz1-orderdb-1: ipmitool -H sz1-orderdb-1-bmc.example "
                                                "chassis power off"]
    on, booted = planned.restore
    assert on.local and on.argv == ("ipmitool", "-H", "sz1-orderdb-1-bmc.example", "chassis", "power", "on")
    # then only waited for: the host boots what is enabled, nothing restarts or deploys it
    assert not booted.local and booted.wait_s == 90 and "systemctl is-system-running --wait" in booted.argv[2]
    assert planned.booted == ("sz1-orderdb-1",) and "its power cut" in planned.text
    site = plan.fault_plan(faults.PowerLoss(kind="power-loss", group="power:hk-grid"), powered, "/x", _resolve)
    offs = [c.host for c in site.inject if c.local]
    assert "hk1-orderdb-1" in offs and set(site.booted) == set(offs)
    assert any(c.host == "hk1-edge" and c.argv[-1] == "down" for c in site.inject)  # its uplinks too


def test_a_reboot_asks_the_hosts_init_and_the_restore_waits_for_a_new_boot_with_nobody_deploying(estate, tmp_path):
    """An orderly reboot is the host's own: its init stops everything and boots; the restore only waits for it, and
    knows it is a new boot because the mark left in /run (emptied by every boot) is gone."""
    planned = plan.fault_plan(faults.Reboot(kind="reboot", host="@database-leader"), estate, "/x", _resolve)
    (reboot,), (booted,) = planned.inject, planned.restore
    assert reboot.host == "sz1-orderdb-1" and not reboot.local
    assert reboot.argv == ("sh", "-c", ": > /run/tradestack-reboot-pending && systemctl --no-block reboot")
    assert booted.argv[2].startswith("[ ! -e /run/tradestack-reboot-pending ] && s=$(systemctl is-system-running")
    assert booted.wait_s == 180 and planned.booted == ("sz1-orderdb-1",)
    assert plan.fault_plan(faults.Reboot(kind="reboot", host="sz1-router-1"), _with_power(estate, tmp_path / "h.yaml"),
                           "/x", _resolve).restore[0].wait_s == 90  # the hosts file's boot_s


def test_a_reboot_is_refused_where_no_init_can_do_it_before_anything_runs(tmp_path):
    from tradestack.lab import actuators
    from tradestack.substrates.base import FaultRefused

    reboot = faults.Reboot(kind="reboot", host="sz1-orderdb-1")
    supervised = load_hosts_file(_broken(tmp_path, lambda d: d["traits"].update(supervisor="supervisord")))
    with pytest.raises(FaultRefused, match="only a host run by systemd reboots in order; .* supervisord"):
        plan.fault_plan(reboot, supervised, "/x", _resolve)
    with pytest.raises(FaultRefused, match="the lab's namespaces have no init to reboot"):
        actuators.check(object(), reboot)  # refused by kind: nothing of the lab is read


def test_a_power_switch_runs_here_and_a_host_that_did_not_switch_on_is_not_waited_for(tmp_path):
    """The power commands run on the operator's machine (a BMC is not the host); a host whose switch failed is
    reported with the command's own words, its wait skipped; another host's switch and wait go on."""
    from tradestack.adapters.commands import CommandResult
    from tradestack.hosts.plan import Command
    from tradestack.hosts.substrate import HostsActionError, HostsSubstrate

    asked: list[tuple[str, str]] = []

    def run(host, argv, *, input=None, timeout=30.0, env=None):
        asked.append((host, argv[0]))
        return CommandResult(tuple(argv), 0, "", "", 0.0)

    substrate = object.__new__(HostsSubstrate)
    substrate.run = run  # type: ignore[method-assign]
    switched = tmp_path / "switched"
    plan_ = [Command("a", ("sh", "-c", f"echo a >> {switched}"), local=True), Command("a", ("booted",), wait_s=5),
             Command("b", ("sh", "-c", "echo 'BMC b unreachable' >&2; exit 3"), local=True),
             Command("b", ("booted",), wait_s=5)]
    with pytest.raises(HostsActionError) as failed:
        substrate.execute(plan_)
    assert switched.read_text() == "a\n"  # run here, not over SSH
    assert asked == [("a", "booted")]  # b's wait skipped
    assert str(failed.value) == "here, for b: sh exited 3: BMC b unreachable"


def test_a_booted_hosts_units_are_timed_from_its_managers_start():
    from tradestack.adapters import systemd

    shown = ("5000000\nId=tradestack-patroni.service\nActiveEnterTimestampMonotonic=8200000\n\n"
             "Id=tradestack-etcd.service\nActiveEnterTimestampMonotonic=6000000\n\n"
             "Id=tradestack-haproxy.service\nActiveEnterTimestampMonotonic=0\n"  # never active since
             "Id=tradestack-old.service\nActiveEnterTimestampMonotonic=4000000\n")  # before this boot
    assert systemd.active_after_start(shown) == {"tradestack-patroni": 3.2, "tradestack-etcd": 1.0}
    assert systemd.active_after_start("") == {}


@pytest.mark.parametrize("power, message", [
    ({"off": ["ipmitool", "{bmc}"], "on": ["ipmitool"]}, "only {host} and {address}"),
    ({"off": [" "], "on": ["x"]}, "first word"),
    ({"off": ["x"]}, "on"),
])
def test_a_power_switch_that_cannot_run_is_refused_at_its_line(tmp_path, power, message):
    document = yaml.safe_load(EXAMPLE.read_text())
    document["topology"] = str((EXAMPLE.parent / document["topology"]).resolve())
    document["power"] = power
    path = tmp_path / "hosts.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    with pytest.raises(HostsFileError) as raised:
        load_hosts_file(path)
    assert message in str(raised.value) and "hosts.yaml:" in str(raised.value)


def test_a_partition_drops_between_the_two_sites_prefixes_at_both_edges(estate):
    planned = plan.fault_plan(faults.Partition(kind="partition", sites=["sz1", "hk1"]), estate, "/x", _resolve)
    assert [c.host for c in planned.inject] == ["sz1-edge", "hk1-edge"]
    assert "ip saddr 198.18.1.0/24 ip daddr 198.18.2.0/24 drop" in planned.inject[0].stdin


def test_a_venue_is_switched_from_the_clients_host(estate):
    inject, restore = _commands(faults.Upstream(kind="venue-mode", upstream="exchange", mode="down"), estate)
    argv = shlex.split(inject[0].split(": ", 1)[1])
    assert inject[0].startswith("clients-1: ") and argv[-1] == "http://198.19.16.1:9101/admin/fault"
    assert '"mode": "normal"' in restore[0]


def test_every_catalogue_drill_can_be_planned_on_real_hosts(estate):
    for name in files.catalogue():
        for fault in files.resolve(name).faults:
            if isinstance(fault, faults.LoadSpike):
                continue
            planned = plan.fault_plan(fault, estate, "/var/lib/tradestack", _resolve)
            assert planned.inject and planned.restore, name


def test_the_cluster_catalogue_is_refused_on_hosts_before_anything_runs(estate):
    from tradestack.substrates.base import FaultRefused

    for name in files.cluster_catalogue():
        for fault in files.resolve(name).faults:
            with pytest.raises(FaultRefused, match="the hosts substrate cannot apply"):
                plan.fault_plan(fault, estate, "/var/lib/tradestack", _resolve)


def _broken(tmp_path: Path, change) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    change(data)
    data["topology"] = str(ROOT / "infra" / "topologies" / "lab.yaml")
    path = tmp_path / "hosts.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("change, message", [
    (lambda d: d["hosts"][0].update(service="gatewya"), "service 'gatewya' is not in the topology"),
    (lambda d: d["hosts"].pop(0), "the topology places 2 gateway in sz1; the file has 1"),
    (lambda d: d["hosts"][0].update(lan_address="198.18.2.99"), "is not in site sz1's prefix 198.18.1.0/24"),
    (lambda d: d["hosts"][1].update(address=d["hosts"][0]["address"]), "address 198.19.200.13 is also"),
    (lambda d: d["hosts"][0].update(host_key="not-a-key"), "host_key"),
    (lambda d: d["sites"][0]["edge"]["uplinks"].pop("cu"), "no interface for site sz1's uplink to carrier 'cu'"),
    (lambda d: d["sites"][0]["edge"]["uplinks"].update(cm={"interface": "eth9"}), "site sz1 has no uplink to carrier 'cm'"),
    (lambda d: d["hosts"].pop(), "one loadgen host (where the clients run) is needed; the file has 0"),
    (lambda d: d.update(risk_groups={"power:nowhere": ["sz1-router-1"]}), "risk group 'power:nowhere' is not in the topology"),
    (lambda d: d["ssh"].update(colour="blue"), "ssh.colour"),
])
def test_a_hosts_file_that_does_not_realise_its_topology_says_where(tmp_path, change, message):
    path = _broken(tmp_path, change)
    with pytest.raises(HostsFileError) as caught:
        load_hosts_file(path)
    text = str(caught.value)
    assert message in text and f"{path}:" in text, text


def test_each_hosts_lan_interface_reaches_the_playbooks(estate):
    """The VIP goes on the interface the hosts file names (real hosts are rarely `lan0`, the lab's name)."""
    import jinja2

    hosts = plan.inventory(estate, "staging")["all"]["hosts"]
    assert hosts["sz1-gateway-1"]["lan_interface"] == "ens5" and hosts["sz1-gateway-2"]["lan_interface"] == "lan0"
    template = (ROOT / "playbooks" / "roles" / "keepalived" / "templates" / "keepalived.conf.j2").read_text()
    text = jinja2.Environment().from_string(template).render(
        **hosts["sz1-gateway-1"], tradestack_vips={"sz1": "198.18.1.5"})
    assert "interface ens5" in text and "198.18.1.5/24 dev ens5" in text and "lan0" not in text


def test_a_frozen_host_is_thawed_without_asking_its_frozen_supervisord(tmp_path):
    """The freeze stops supervisord too, so the thaw finds it by its pidfile (asking it would hang)."""
    import subprocess
    import time

    def state(pid: int) -> str:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]

    parent = subprocess.Popen(["sh", "-c", "sleep 60 & wait"])
    try:
        time.sleep(0.3)
        (tmp_path / "supervisord.pid").write_text(f"{parent.pid}\n")
        conf = tmp_path / "supervisord.conf"
        conf.write_text(f"[supervisord]\npidfile={tmp_path / 'supervisord.pid'}\n")
        stop = subprocess.run(list(plan.tree_signal(str(conf), "SIGSTOP")), capture_output=True, text=True,
                              timeout=10)
        assert stop.stdout.strip() == "2" and state(parent.pid) == "T"
        thaw = subprocess.run(list(plan.tree_signal(str(conf), "SIGCONT")), capture_output=True, text=True,
                              timeout=10)
        assert thaw.returncode == 0 and state(parent.pid) != "T"
    finally:
        parent.kill()
        parent.wait()


def test_a_fault_plan_runs_every_hosts_commands_at_once_and_each_hosts_in_order():
    """A power loss takes a site's hosts down together: each host's first command waits here until every
    host's has started (a barrier, broken if they ran one after another), and each host's own commands keep
    their order; failures come back host by host (in the order the plan names the hosts), after every command
    was tried."""
    import threading

    from tradestack.adapters.commands import CommandResult
    from tradestack.hosts.plan import Command
    from tradestack.hosts.substrate import HostsActionError, HostsSubstrate

    together = threading.Barrier(3, timeout=5)
    ran: dict[str, list[str]] = {"a": [], "b": [], "c": []}

    def run(host, argv, *, input=None, timeout=30.0, env=None):
        if not ran[host]:
            together.wait()
        ran[host].append(argv[0])
        return CommandResult(tuple(argv), 1 if argv[0] == "fail" else 0, "", "boom" if argv[0] == "fail" else "", 0.0)

    substrate = object.__new__(HostsSubstrate)
    substrate.run = run  # type: ignore[method-assign]
    plan = [Command("a", ("kill",)), Command("b", ("kill",)), Command("c", ("fail",)), Command("a", ("down",)),
            Command("b", ("fail",)), Command("c", ("down",))]
    with pytest.raises(HostsActionError) as failed:
        substrate.execute(plan)
    assert ran == {"a": ["kill", "down"], "b": ["kill", "fail"], "c": ["fail", "down"]}
    assert [m.split(":")[0] for m in str(failed.value).split("; ")] == ["b", "c"]


def test_a_crash_kills_the_hosts_programs_that_left_the_supervisors_tree_and_spares_the_command_itself(tmp_path):
    """Patroni's postmaster is adopted by init when its launcher exits: a crash that signalled the supervisor's
    tree alone left the old primary serving. Processes naming the host's state directory go too; the command's own
    shell (which names it as an argument) does not."""
    import subprocess
    import time

    home = tmp_path / "lab-sz1-orderdb-1"
    (home / "pgdata").mkdir(parents=True)
    supervisor = subprocess.Popen(["sleep", "60"])
    # an orphan of the host: `sh -c 'sleep & '` exits at once, and init adopts the sleep, which names the directory
    subprocess.run(["bash", "-c", f"(exec -a 'postgres -D {home}/pgdata' sleep 60) & echo $! > {tmp_path}/orphan"],
                   check=True)
    other = subprocess.Popen(["bash", "-c", f"exec -a 'postgres -D {tmp_path}/another-host/pgdata' sleep 60"])
    orphan = int((tmp_path / "orphan").read_text())
    try:
        (tmp_path / "supervisord.pid").write_text(f"{supervisor.pid}\n")
        conf = tmp_path / "supervisord.conf"
        conf.write_text(f"[supervisord]\npidfile={tmp_path / 'supervisord.pid'}\n")
        argv = list(plan.tree_signal(str(conf), "SIGKILL", str(home)))
        # run as over SSH: a shell that stays, its own arguments naming the directory
        done = subprocess.run(["sh", "-c", '"$@"; :', "sh", *argv], capture_output=True, text=True, timeout=10)
        assert done.returncode == 0 and done.stdout.strip() == "2", (done.stdout, done.stderr)
        supervisor.wait(timeout=5)
        time.sleep(0.2)
        assert not Path(f"/proc/{orphan}").exists() or "Z" in open(f"/proc/{orphan}/stat").read().split()[2]
        assert other.poll() is None  # another host's program is not this host's
    finally:
        for p in (supervisor, other):
            p.kill()
        subprocess.run(["kill", "-9", str(orphan)], capture_output=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a network namespace)")
def test_a_process_of_another_network_namespace_naming_the_directory_is_not_the_hosts(tmp_path):
    """Where hosts share a kernel (the lab's), the controller's `ssh` names the host's directory in its command
    line too: only processes of the host's own network namespace count."""
    import subprocess
    import uuid

    ns = f"tsut{uuid.uuid4().hex[:6]}"
    home = tmp_path / "lab-sz1-orderdb-1"
    home.mkdir()
    subprocess.run(["ip", "netns", "add", ns], check=True)
    supervisor = subprocess.Popen(["ip", "netns", "exec", ns, "sleep", "60"])
    outsider = subprocess.Popen(["bash", "-c", f"exec -a 'ssh root@host python3 -c ... {home}' sleep 60"])
    try:
        (tmp_path / "supervisord.pid").write_text(f"{supervisor.pid}\n")
        conf = tmp_path / "supervisord.conf"
        conf.write_text(f"[supervisord]\npidfile={tmp_path / 'supervisord.pid'}\n")
        done = subprocess.run(["ip", "netns", "exec", ns, *plan.tree_signal(str(conf), "SIGKILL", str(home))],
                              capture_output=True, text=True, timeout=10)
        assert done.returncode == 0, done.stderr
        assert outsider.poll() is None  # the controller's process, in another namespace, lives on
    finally:
        for p in (supervisor, outsider):
            p.kill()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_a_host_that_lost_power_costs_the_drills_observer_less_than_its_gap():
    """The observer asks whether hosts are up and which addresses the gateways hold every sample; a powered-off
    host answers nothing, so each question must give up before a sample takes longer than the gap the watch
    check allows (make test: with 5 s per question, site-power-loss through hosts covered 86 % of the drill)."""
    import time

    from tradestack.adapters.commands import CommandResult
    from tradestack.drills import figures
    from tradestack.hosts.substrate import HostsSubstrate
    from tradestack.substrates.inventory import Host

    def run(host, argv, *, input=None, timeout=30.0, env=None):
        if host.startswith("hk1"):  # the site that lost power: nothing answers until ssh gives up
            time.sleep(timeout)
            return CommandResult(tuple(argv), 255, "", "timed out", timeout)
        return CommandResult(tuple(argv), 0, "2: lan0    inet 198.18.1.5/24 scope global lan0\n", "", 0.01)

    substrate = object.__new__(HostsSubstrate)
    substrate.run = run  # type: ignore[method-assign]
    substrate.hosts = {n: Host(n, "gateway", n[:3], a) for n, a in (("sz1-gateway-1", "198.18.1.10"),
                                                                     ("hk1-gateway-1", "198.18.2.10"))}
    substrate.vips = {"sz1": "198.18.1.5", "hk1": "198.18.2.5"}
    substrate._lan = {n: "lan0" for n in substrate.hosts}
    started = time.monotonic()
    holders = substrate.vip_holders()
    asked = time.monotonic()
    alive = substrate.live("hk1-gateway-1")
    took = [asked - started, time.monotonic() - asked]
    assert holders == {"sz1": "sz1-gateway-1", "hk1": None} and alive is False
    # the observer asks these at once, and then a live router over HTTP (0.5 s): each must leave it that second
    assert max(took) <= figures.WATCH_GAP_S - 1, took


def test_a_systemd_hosts_programs_are_named_as_on_supervisord_hosts():
    """Unit tradestack-<program>.service runs <program>: what the probes ask (`haproxy` running on a router, where
    the database is read from) must be found by its program name on either kind of host; Debian's own units (masked
    on a deployed host) are not asked about."""
    from tradestack.adapters.commands import CommandResult
    from tradestack.hosts.substrate import HostsSubstrate
    from tradestack.substrates.base import HostTraits

    asked = []
    listing = ("tradestack-haproxy.service loaded active running tradestack haproxy\n"
               "tradestack-tradestack-router.service loaded active running tradestack router\n"
               "tradestack-etcd.service loaded failed failed tradestack etcd\n")

    def run(host, argv, *, input=None, timeout=30.0, env=None):
        asked.append(list(argv))
        return CommandResult(tuple(argv), 0, listing, "", 0.01)

    substrate = object.__new__(HostsSubstrate)
    substrate.run = run  # type: ignore[method-assign]
    substrate.traits = HostTraits(supervisor="systemd")
    assert substrate.programs("sz1-router-1") == {"haproxy": "running", "tradestack-router": "running",
                                                  "etcd": "failed"}
    assert asked == [["systemctl", "list-units", "--type=service", "--all", "--no-legend", "--plain",
                      "tradestack-*.service"]]


@pytest.mark.parametrize("ref, names, found", [
    ("sz1-gateway-2", ["sz1-gateway-1", "sz1-gateway-2"], "sz1-gateway-2"),             # a real estate's names
    ("sz1-gateway-2", ["st-sz1-gateway-2", "st-hk1-gateway-2"], "st-sz1-gateway-2"),     # the stack's prefix
    # a lab of machines adopted under another stack name: its hosts carry the lab's prefix, and one ends so
    ("sz1-gateway-2", ["lab-sz1-gateway-2", "lab-hk1-gateway-2"], "lab-sz1-gateway-2"),
    ("gateway-2", ["lab-sz1-gateway-2", "lab-hk1-gateway-2"], None),                    # two end so: ambiguous
    ("sz1-gateway-9", ["lab-sz1-gateway-2"], None),
])
def test_a_drills_short_host_name_means_one_host_or_none(ref, names, found):
    from tradestack.substrates.inventory import host_named

    assert host_named(ref, names, "st") == found


def test_the_leader_sites_power_loss_cuts_the_feed_of_whichever_site_leads_when_it_is_injected(estate):
    """`@database-leader-site` is picked at injection: with the leader in sz1 it is sz1's feed (its hosts crash,
    its uplinks go dark), with the leader in hk1 it is hk1's; never both, never the witness."""
    fault = faults.PowerLoss(kind="power-loss", group=faults.LEADER_SITE)
    in_sz1 = plan.fault_plan(fault, estate, "/x", _resolve)
    in_hk1 = plan.fault_plan(fault, estate, "/x", lambda ref: "hk1-orderdb-1" if ref == "@database-leader" else ref)
    crashed_sz1 = {c.host for c in in_sz1.inject if c.host.endswith(("-1", "-2")) and "ip" != c.argv[0]}
    crashed_hk1 = {c.host for c in in_hk1.inject if c.host.endswith(("-1", "-2")) and "ip" != c.argv[0]}
    assert crashed_sz1 and all(h.startswith("sz1-") for h in crashed_sz1), crashed_sz1
    assert crashed_hk1 and all(h.startswith("hk1-") for h in crashed_hk1), crashed_hk1
    assert "sz1-orderdb-1" in crashed_sz1 and "hk1-orderdb-1" in crashed_hk1
