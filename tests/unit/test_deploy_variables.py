"""What the playbooks are told, from the topology and the stack's outputs (pure, no hosts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradestack.deploy import variables
from tradestack.substrates import HostTraits
from tradestack.topology import load_topology

pytestmark = pytest.mark.unit

LAB = Path(__file__).resolve().parents[2] / "infra" / "topologies" / "lab.yaml"
OUTPUTS = {"site_prefixes": {"sz1": "198.18.1.0/24", "hk1": "198.18.2.0/24", "wit": "198.18.3.0/24"},
           "upstreams": {"exchange": "198.19.16.1", "overnight-ats": "198.19.17.1"}}
SECRETS = {"dbSuperuserPassword": "s" * 24, "dbReplicationPassword": "r" * 24, "dbAppPassword": "a" * 24}
# one kernel, one filesystem, no systemd: what the lab substrate declares of its hosts
SHARED = HostTraits(shared_filesystem=True, supervisor="supervisord", install_packages=False, manage_sshd=False,
                    time_sync=False)


def build(traits: HostTraits = SHARED) -> variables.DeployVars:
    return variables.build(load_topology(LAB), OUTPUTS, SECRETS, traits=traits, wheelhouse="/w", wheel="t.whl",
                           wheel_sha256="abc")


def test_vips_are_dot_five_of_each_site_with_gateways():
    assert build().public["tradestack_vips"] == {"sz1": "198.18.1.5", "hk1": "198.18.2.5"}  # wit has none


def test_admission_follows_the_declared_gateway_capacity():
    # refusing starts 25% above the declared 60/s: survivors running exactly at it are not refused
    assert build().public["tradestack_admission"] == {"max_in_flight": 256, "orders_per_second": 75.0,
                                                      "burst": 75, "retry_after_s": 1}


def test_venues_and_routes_from_the_upstreams():
    public = build().public
    assert public["tradestack_venues"] == [{"name": "exchange", "host": "198.19.16.1", "port": 9001},
                                           {"name": "overnight-ats", "host": "198.19.17.1", "port": 9001}]
    assert public["tradestack_routes"] == [
        {"session": "regular", "venues": ["exchange"], "reroute": False},
        {"session": "overnight", "venues": ["overnight-ats", "exchange"], "reroute": True}]
    assert variables.routes([]) == []


def test_secrets_never_travel_with_the_public_variables():
    deploy = build()
    assert set(deploy.secret) == {"postgres_superuser_password", "postgres_replication_password",
                                  "tradestack_db_password"}
    assert not any(value in str(deploy.public) for value in SECRETS.values())


def test_only_hosts_that_differ_from_a_real_machine_switch_to_supervisord_and_a_shared_filesystem():
    assert build(SHARED).public["tradestack_supervisor"] == "supervisord"
    assert build(SHARED).public["tradestack_shared_filesystem"] is True
    assert build(SHARED).public["tradestack_install_packages"] is False
    real = build(HostTraits()).public  # real hosts keep systemd and the group_vars defaults
    assert not {"tradestack_supervisor", "tradestack_shared_filesystem", "tradestack_install_packages",
                "tradestack_manage_sshd", "tradestack_time_sync"} & set(real)


def test_a_hosts_files_time_servers_reach_chrony_as_a_list_and_none_leaves_debians_pool():
    from tradestack.hosts.model import Traits

    traits = Traits.model_validate({"time_servers": ["198.19.0.1", "ntp.example.net"]})
    assert build(HostTraits(**traits.model_dump())).public["tradestack_time_servers"] == ["198.19.0.1",
                                                                                         "ntp.example.net"]
    assert "tradestack_time_servers" not in build(HostTraits(**Traits().model_dump())).public
    with pytest.raises(ValueError, match="not a host name or address"):
        Traits.model_validate({"time_servers": ["ntp.example.net; reboot"]})


def test_host_settings_reach_the_playbooks_and_default_to_the_documented_names():
    from tradestack.hostsettings import HostSettings

    assert {k: build().public[k] for k in ("tradestack_user", "tradestack_group", "tradestack_root",
                                            "tradestack_software_root")} == {
        "tradestack_user": "tradestack", "tradestack_group": "tradestack",
        "tradestack_root": "/var/lib/tradestack", "tradestack_software_root": "/opt/tradestack"}
    mine = HostSettings("ts1a2b3c", "ts1a2b3cg", "/var/lib/tradestack-it/1a2b3c", "/opt/tradestack-it/1a2b3c")
    public = variables.build(load_topology(LAB), OUTPUTS, SECRETS, traits=SHARED, wheelhouse="/w", wheel="t.whl",
                             wheel_sha256="abc", settings=mine).public
    assert (public["tradestack_user"], public["tradestack_group"], public["tradestack_root"]) == \
        ("ts1a2b3c", "ts1a2b3cg", "/var/lib/tradestack-it/1a2b3c")


def test_host_settings_round_trip_through_stack_config_and_refuse_bad_names():
    from tradestack.errors import InputError
    from tradestack.hostsettings import HostSettings

    mine = HostSettings(service_user="svc", state_root="/srv/ts/state")
    config = mine.to_config()
    assert config["tradestack:serviceUser"] == "svc" and config["tradestack:stateRoot"] == "/srv/ts/state"
    assert HostSettings.from_config({**config, "tradestack:topology": "x"}) == mine
    assert HostSettings.from_config({}) == HostSettings()
    assert mine.host_dir("lab-sz1-gateway-1") == Path("/srv/ts/state/lab-sz1-gateway-1")
    with pytest.raises(InputError, match="service_user: 'Root Admin' is not a valid user or group name; "
                                         "state_root: 'relative/path' must be an absolute path"):
        HostSettings(service_user="Root Admin", state_root="relative/path")
    with pytest.raises(InputError, match="software_root: '/opt' must be an absolute path at least two levels"):
        HostSettings(software_root="/opt")  # never let a destroy or a test clean-up remove a top-level folder
