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
    (tmp_path / "m" / "nspawn.pid").write_text("1\n")  # pid 1 of this machine is not an nspawn
    assert not machine.running() and machine.state_of() is None
    machine.remove()
    assert not (tmp_path / "m").exists()
