"""The lab's booted machines, their pure half: which mirror an image is built from, what its cache key covers, and
the exact commands that build, mount and boot a machine (tests/integration/test_machines.py boots one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradestack.errors import EnvironmentProblem
from tradestack.lab.machines import BaseImage, Machine, debian_mirror, debootstrap_argv

pytestmark = pytest.mark.unit


def test_the_mirror_is_the_first_debian_archive_apt_knows_and_never_the_security_one(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "a.sources").write_text(
        "Types: deb\nURIs: http://security.debian.org/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example.net/debian\nSuites: bookworm\n")
    assert debian_mirror(tmp_path) == "http://mirror.example.net/debian"
    (tmp_path / "sources.list.d" / "a.sources").unlink()
    (tmp_path / "sources.list").write_text("# old style\ndeb [arch=amd64] http://old.example.net/debian bookworm main\n")
    assert debian_mirror(tmp_path) == "http://old.example.net/debian"


def test_no_mirror_is_a_problem_of_this_machine_not_a_traceback(tmp_path):
    with pytest.raises(EnvironmentProblem, match="no Debian mirror"):
        debian_mirror(tmp_path)


def test_an_image_is_cached_under_a_key_of_its_release_mirror_and_packages():
    base = BaseImage(mirror="http://m/debian")
    assert BaseImage(mirror="http://m/debian").key == base.key
    assert BaseImage(mirror="http://m/debian", packages=tuple(reversed(base.packages))).key == base.key  # a set
    others = [BaseImage(mirror="http://other/debian"), BaseImage(release="trixie", mirror="http://m/debian"),
              BaseImage(mirror="http://m/debian", packages=(*base.packages, "chrony"))]
    assert len({base.key, *(o.key for o in others)}) == 4
    assert base.directory.name == f"debian-bookworm-{base.key}" and base.root == base.directory / "root"


def test_debootstrap_builds_a_minimal_root_with_the_packages_from_the_mirror():
    argv = debootstrap_argv(BaseImage(mirror="http://m/debian", packages=("systemd", "dbus")), Path("/t/root"))
    assert argv == ["debootstrap", "--variant=minbase", "--include=dbus,systemd", "bookworm", "/t/root",
                    "http://m/debian"]


def test_a_machine_boots_with_systemd_in_its_hosts_namespace_with_only_the_network_capabilities(tmp_path):
    image = BaseImage(mirror="http://m/debian")
    machine = Machine("sz1-orderdb-1", "it1-sz1-orderdb-1", tmp_path / "m", image)
    argv = machine.nspawn_argv()
    assert argv[0] == "systemd-nspawn" and "--boot" in argv and "--register=no" in argv and "--keep-unit" in argv
    assert argv[argv.index("-D") + 1] == str(tmp_path / "m" / "root")
    assert "--network-namespace-path=/run/netns/it1-sz1-orderdb-1" in argv
    assert "--capability=CAP_NET_ADMIN,CAP_NET_RAW" in argv and not any("SYS_TIME" in a for a in argv)
    assert "--hostname=sz1-orderdb-1" in argv
    assert machine.overlay_options() == (f"lowerdir={image.root},upperdir={tmp_path / 'm' / 'upper'},"
                                         f"workdir={tmp_path / 'm' / 'work'}")


def test_a_machine_that_was_never_booted_is_not_running_and_removing_it_leaves_nothing(tmp_path):
    machine = Machine("x", "ns-x", tmp_path / "m", BaseImage(mirror="http://m/debian"))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "supply.pid").write_text("1\n")  # pid 1 of this machine is not a machine's power supply
    assert not machine.running() and machine.state_of() is None
    machine.remove()
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("exits, runs", [((133, 133, 0), 3), ((133, 1), 2), ((0,), 1)])
def test_a_machine_that_asks_for_a_reboot_is_started_again_and_any_other_end_is_final(tmp_path, exits, runs):
    """nspawn exits 133 for a reboot; the power supply runs it again then, and only then."""
    import subprocess

    from tradestack.lab.machines import POWER_SUPPLY

    count = tmp_path / "count"
    count.write_text("0")
    script = (f'n=$(cat {count}); echo $((n+1)) > {count}; set -- {" ".join(map(str, exits))}; '
              'shift "$n"; exit "$1"')
    done = subprocess.run(["sh", "-c", POWER_SUPPLY, "power-supply", "sh", "-c", script], timeout=10)
    assert int(count.read_text()) == runs and done.returncode == 0


def _props(tmp_path: Path, **extra) -> dict:
    return {"name": "lab-sz1-orderdb-1", "netns": "lab-sz1-orderdb-1", "state": str(tmp_path / "m"),
            "release": "bookworm", "packages": ["systemd", "openssh-server"], "mirror": "http://m/debian",
            "authorized_key": "ssh-ed25519 AAAA lab", "running": True, **extra}


def test_a_machine_powered_off_by_hand_is_drift_that_up_boots_on_the_same_disk(tmp_path):
    """Its disk is there, its init is not: refresh reads it as not running; the wanted state differs in `running`
    only, which is an update (a boot), never a replacement (a new disk)."""
    from tradestack.lab.resources import MachineProvider

    provider = MachineProvider()
    (tmp_path / "m" / "upper").mkdir(parents=True)
    seen = provider.read("lab-sz1-orderdb-1", _props(tmp_path, host_key=["ssh-ed25519", "AAAA"]))
    assert seen.id == "lab-sz1-orderdb-1" and seen.outs["running"] is False
    assert seen.outs["host_key"] == ["ssh-ed25519", "AAAA"]  # kept from the state
    diff = provider.diff(seen.id, seen.outs, _props(tmp_path))
    assert diff.changes and diff.replaces == []


def test_a_machine_whose_disk_is_gone_is_gone_and_a_new_package_set_is_a_new_disk(tmp_path):
    from tradestack.lab.resources import GONE, MachineProvider

    provider = MachineProvider()
    assert provider.read("lab-sz1-orderdb-1", _props(tmp_path)) == GONE
    diff = provider.diff("lab-sz1-orderdb-1", _props(tmp_path), _props(tmp_path, packages=["systemd", "chrony"]))
    assert diff.replaces == ["packages"] and diff.delete_before_replace


def test_the_stacks_key_may_log_in_as_root_and_nobody_else_may_read_it(tmp_path):
    machine = Machine("x", "ns-x", tmp_path / "m", BaseImage(mirror="http://m/debian"))
    machine.authorize("ssh-ed25519 AAAA lab\n")
    keys = tmp_path / "m" / "root" / "root" / ".ssh" / "authorized_keys"
    assert keys.read_text() == "ssh-ed25519 AAAA lab\n"
    assert keys.stat().st_mode & 0o777 == 0o600 and keys.parent.stat().st_mode & 0o777 == 0o700


def test_mounts_left_under_a_stacks_directory_are_found(tmp_path):
    from tradestack.lab.machines import mounts_under

    info = tmp_path / "mountinfo"
    info.write_text("22 1 0:21 / / rw - ext4 /dev/vda rw\n"
                    f"90 22 0:50 / {tmp_path}/lab/a-sz1-gw-1/machine/root rw - overlay overlay rw\n"
                    f"91 22 0:51 / {tmp_path}/lab/with\\040space rw - overlay overlay rw\n"
                    f"92 22 0:52 / {tmp_path}/labx/other rw - overlay overlay rw\n")
    assert mounts_under(tmp_path / "lab", info) == [f"{tmp_path}/lab/a-sz1-gw-1/machine/root",
                                                    f"{tmp_path}/lab/with space"]


def test_a_lab_of_machines_with_clusters_and_drills_on_machines_are_refused_with_the_reason():
    """Not built yet (issue 32): said before anything is created or touched, never a half-working stack."""
    from types import SimpleNamespace

    from tradestack.errors import InputError
    from tradestack.lab.stack import LabStack
    from tradestack.lab.substrate import LabSubstrate

    topology = Path(__file__).resolve().parents[2] / "infra" / "topologies" / "lab.yaml"
    with pytest.raises(InputError, match="machines with Kubernetes clusters is not supported yet"):
        LabStack("tsmx", topology, clusters=True, machines=True)
    booted = SimpleNamespace(name="tsmx", config=lambda: {"tradestack:machines": "true"})
    with pytest.raises(InputError, match="boots its hosts as machines, which are deployed as real hosts"):
        LabSubstrate(booted)  # type: ignore[arg-type]


def test_a_machine_installs_through_the_labs_proxy_with_this_hosts_date_checks(tmp_path, monkeypatch):
    from tradestack.lab import machines

    monkeypatch.setattr(machines, "_apt_config", lambda option: {"Acquire::Check-Valid-Until": "false"}.get(option, ""))
    machine = Machine("x", "ns-x", tmp_path / "m", BaseImage(mirror="http://m/debian"))
    machine.use_apt_proxy("http://198.18.0.1:3142")
    conf = tmp_path / "m" / "root" / "etc" / "apt" / "apt.conf.d" / "01tradestack-proxy"
    assert conf.read_text() == ('Acquire::http::Proxy "http://198.18.0.1:3142";\n'
                                'Acquire::Check-Valid-Until "false";\n')
    machine.use_apt_proxy("")
    assert not conf.exists()


def test_the_package_proxy_listens_only_on_the_labs_management_address_and_keeps_everything_in_its_directory(
        tmp_path):
    from tradestack.lab.daemons import apt_proxy_config

    settings = dict(line.split(": ", 1) for line in apt_proxy_config("198.18.4.1", tmp_path).splitlines()
                    if ": " in line)
    assert settings["BindAddress"] == "198.18.4.1" and settings["Port"] == "3142"
    for key in ("CacheDir", "LogDir", "PidFile", "SocketPath"):
        assert settings[key].startswith(str(tmp_path)), key
    assert not any(line.startswith("Remap-") for line in apt_proxy_config("198.18.4.1", tmp_path).splitlines())


def test_the_time_server_serves_the_management_network_alone_from_this_hosts_clock_without_setting_it(tmp_path):
    from tradestack.lab.daemons import time_server_config

    lines = time_server_config("198.18.4.1", "198.18.4.0/24", tmp_path).splitlines()
    assert {"bindaddress 198.18.4.1", "allow 198.18.4.0/24", "local stratum 8", "cmdport 0"} <= set(lines)
    assert not any(line.split()[0] in ("server", "pool", "peer") for line in lines if line)  # no upstream
    assert f"pidfile {tmp_path / 'time-server.pid'}" in lines


def _fake_proc(root: Path, processes: dict[int, tuple[int, int]]) -> Path:
    """A /proc of processes pid -> (uid, inotify instances held), each also holding a plain file."""
    for pid, (uid, held) in processes.items():
        fd = root / str(pid) / "fd"
        fd.mkdir(parents=True)
        (root / str(pid) / "status").write_text(f"Name:\tx\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t0\n")
        for n in range(held):
            (fd / str(n + 3)).symlink_to("anon_inode:inotify")
        (fd / "0").symlink_to("/dev/null")
    (root / "self").mkdir()
    return root


def test_the_inotify_instances_counted_are_roots_alone(tmp_path):
    from tradestack.lab.machines import inotify_instances

    proc = _fake_proc(tmp_path, {1: (0, 3), 20: (0, 2), 30: (100, 7), 40: (0, 0)})
    assert inotify_instances(0, proc) == 5
    assert inotify_instances(100, proc) == 7


def test_a_machine_that_would_pass_roots_inotify_limit_is_refused_naming_the_limit_and_the_fix(tmp_path):
    """lab.yaml's 14 machines hold about 128 instances, the kernel's default limit: a 15th machine's init died at
    once and the boot waited its whole minute, saying only that systemd did not answer."""
    from tradestack.lab.machines import inotify_problem

    limit = tmp_path / "max_user_instances"
    limit.write_text("128\n")
    problem = inotify_problem(limit, lambda: 120)
    assert problem.startswith("root holds 120 of its 128 inotify instances (fs.inotify.max_user_instances)")
    assert "run `make setup` as root" in problem and "sysctl -w fs.inotify.max_user_instances=8192" in problem
    assert inotify_problem(limit, lambda: 100) == ""
    limit.write_text("8192\n")
    assert inotify_problem(limit, lambda: 128) == ""


def test_a_console_that_ran_out_of_inotify_instances_names_the_limit_and_only_for_this_boot(tmp_path):
    from tradestack.lab.machines import _hint

    m = Machine("m1", "ns", tmp_path / "m1", BaseImage(mirror="http://deb.example/debian"))
    m.state.mkdir(parents=True)
    died = b"Failed to create control group inotify object: Too many open files\nExiting PID 1...\n"
    (m.state / "console.log").write_bytes(died)
    assert "ran out of inotify instances (fs.inotify.max_user_instances)" in _hint(m, 0)
    assert _hint(m, len(died)) == ""  # an earlier boot's words are not this one's


def test_make_setup_raises_roots_inotify_limit_to_what_a_boot_asks_for():
    import re

    from tradestack.lab.machines import INOTIFY_WANTED

    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    assert re.search(r"^INOTIFY_INSTANCES := (\d+)$", makefile, re.M).group(1) == str(INOTIFY_WANTED)
    setup = re.search(r"^setup:.*?\n\n", makefile, re.M | re.S).group(0)
    assert "machine-limits" in setup


def test_the_power_switch_finds_its_machine_by_its_disk_without_asking_pulumi(tmp_path, monkeypatch):
    """A drill cuts power at the moment of its fault: the switch asked Pulumi for the stack's settings first (three
    pulumi processes), which took 8 s of a gateway crash's 12 s recovery on a busy host (make test, stop 43)."""
    from tradestack.errors import InputError
    from tradestack.lab import stack as labstack

    monkeypatch.setenv("TRADESTACK_HOME", str(tmp_path))
    lab = labstack.LabStack("lab")
    asked: list[str] = []

    class NoPulumi:
        def exists(self) -> bool:
            asked.append("exists")
            return False
    monkeypatch.setattr(labstack.LabStack, "_pulumi", NoPulumi())
    disk = labstack.workdir("lab", lab.home) / "lab-sz1-gateway-1" / "machine" / "upper"
    disk.mkdir(parents=True)
    assert lab.power("lab-sz1-gateway-1", "status") == "off"  # its disk is there, nothing of it runs
    assert asked == []
    with pytest.raises(InputError, match="no stack 'lab'"):  # no such disk: Pulumi says why
        lab.power("lab-sz1-gateway-9", "status")
    assert asked == ["exists"]


def test_a_second_refresh_still_looks_for_what_was_wanted(monkeypatch):
    """A refresh that finds a route gone writes it as None, which Pulumi drops from the state: the next refresh
    (before any `up`) had no gateway to look for and failed with KeyError: 'gateway' (seen after a failed `up`).
    What an update asked for is kept apart from what a refresh saw."""
    from tradestack.lab import resources

    routes = {"lab-sz1-router-1": "default via 198.18.2.1 dev lan0\n"}
    monkeypatch.setattr(resources.netlink, "ns_exists", lambda ns: True)
    monkeypatch.setattr(resources.netlink, "run_in", lambda ns, argv, check=True: type(
        "Done", (), {"stdout": routes[ns]})())
    provider = resources.DefaultRouteProvider()
    monkeypatch.setattr(resources.netlink, "add_default_route", lambda ns, gw: None)
    made = provider.create({"netns": "lab-sz1-router-1", "gateway": "198.18.2.1"}).outs
    routes["lab-sz1-router-1"] = ""  # gone by hand

    def as_stored(outs: dict) -> dict:  # Pulumi keeps no output that is None
        return {k: v for k, v in outs.items() if v is not None}
    first = as_stored(provider.read("lab-sz1-router-1", made).outs)
    assert "gateway" not in first
    second = as_stored(provider.read("lab-sz1-router-1", first).outs)
    assert "gateway" not in second  # still missing, and no KeyError
    routes["lab-sz1-router-1"] = "default via 198.18.2.1 dev lan0\n"  # put back by hand
    assert provider.read("lab-sz1-router-1", second).outs["gateway"] == "198.18.2.1"
    assert not provider.diff("lab-sz1-router-1", provider.read("lab-sz1-router-1", second).outs,
                             {"netns": "lab-sz1-router-1", "gateway": "198.18.2.1"}).changes


def test_a_cable_with_an_end_switched_off_is_drift_that_up_lights(monkeypatch):
    """A power switch darkens a machine's LAN port; a lab left so (a drill's restore that never ran) made the next
    `up` fail adding the host's default route ("Network is unreachable"): the port being down is now drift of the
    cable, which the same `up` lights before the routes that depend on it."""
    from tradestack.lab import resources

    ends = {("lab-sz1-router-1", "lan0"): {"up": False, "addresses": ["198.18.2.3/24"], "master": None},
            (None, "lab-sz1-lan"): {"up": True, "addresses": [], "master": "lab-sz1-br"}}
    monkeypatch.setattr(resources.netlink, "link_state", lambda ns, ifname: ends.get((ns, ifname)))
    props = {"a_netns": "lab-sz1-router-1", "a_ifname": "lan0", "a_address": "198.18.2.3/24", "a_bridge": None,
             "b_netns": None, "b_ifname": "lab-sz1-lan", "b_address": None, "b_bridge": "lab-sz1-br", "up": True}
    seen = resources.VethProvider().read("v", props).outs
    assert seen["up"] is False
    diff = resources.VethProvider().diff("v", seen, props)
    assert diff.changes and diff.replaces == []
    ends[("lab-sz1-router-1", "lan0")]["up"] = True
    assert not resources.VethProvider().diff("v", resources.VethProvider().read("v", props).outs, props).changes


def test_the_switch_a_hosts_file_names_loads_no_cli_and_says_plainly_what_it_cannot_do(tmp_path):
    """A drill runs the switch at the moment of its fault on a busy host: it must not load the CLI, Pulumi or
    the drills (it did: 6 s to switch a gateway off under load); a machine it does not know is exit 2, said."""
    import subprocess
    import sys

    (tmp_path / "lab-sz1-gateway-1" / "machine" / "upper").mkdir(parents=True)
    probe = ("import sys, runpy; sys.argv = ['switch', '--lab', sys.argv[1], sys.argv[2], 'status']\n"
             "try:\n    runpy.run_module('tradestack.lab.switch', run_name='__main__')\n"
             "except SystemExit as e:\n    code = e.code\n"
             "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'pulumi', 'rich', 'ansible_runner')"
             " or m.startswith(('tradestack.cli', 'tradestack.drills', 'tradestack.adapters.pulumi')))\n"
             "print('loaded', heavy, 'exit', code, file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path), "lab-sz1-gateway-1"], capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.strip() == "off" and "loaded [] exit 0" in done.stderr, (done.stdout, done.stderr)
    missing = subprocess.run([sys.executable, "-m", "tradestack.lab.switch", "--lab", str(tmp_path), "lab-x-1", "on"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "no machine 'lab-x-1'" in missing.stderr and "Traceback" not in missing.stderr
