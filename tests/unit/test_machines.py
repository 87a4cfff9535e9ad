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
