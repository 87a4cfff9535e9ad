"""What the playbooks are told, from the topology and the stack's outputs (pure, no hosts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradestack.deploy import variables
from tradestack.topology import load_topology

pytestmark = pytest.mark.unit

LAB = Path(__file__).resolve().parents[2] / "infra" / "topologies" / "lab.yaml"
OUTPUTS = {"site_prefixes": {"sz1": "198.18.1.0/24", "hk1": "198.18.2.0/24", "wit": "198.18.3.0/24"},
           "upstreams": {"exchange": "198.19.16.1", "overnight-ats": "198.19.17.1"}}
SECRETS = {"dbSuperuserPassword": "s" * 24, "dbReplicationPassword": "r" * 24, "dbAppPassword": "a" * 24}


def build(lab: bool = True) -> variables.DeployVars:
    return variables.build(load_topology(LAB), OUTPUTS, SECRETS, lab=lab, wheelhouse="/w", wheel="t.whl",
                           wheel_sha256="abc")


def test_vips_are_dot_five_of_each_site_with_gateways():
    assert build().public["tradestack_vips"] == {"sz1": "198.18.1.5", "hk1": "198.18.2.5"}  # wit has none


def test_admission_follows_the_declared_gateway_capacity():
    assert build().public["tradestack_admission"] == {"max_in_flight": 256, "orders_per_second": 400.0,
                                                      "burst": 40, "retry_after_s": 1}


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


def test_only_a_lab_switches_to_supervisord_and_a_shared_filesystem():
    assert build(lab=True).public["tradestack_supervisor"] == "supervisord"
    assert build(lab=True).public["tradestack_shared_filesystem"] is True
    assert "tradestack_supervisor" not in build(lab=False).public  # real hosts keep systemd (group_vars)
