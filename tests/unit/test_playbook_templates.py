"""What the database's templates promise, rendered as Ansible would render them (jinja2, a stand-in inventory)."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest
import yaml

pytestmark = pytest.mark.unit

ROLES = Path(__file__).resolve().parents[2] / "playbooks" / "roles"


def _render(role: str, template: str, **extra: object) -> str:
    hostvars = {"db1": {"lan_address": "198.18.1.13", "site": "sz1"}, "db2": {"lan_address": "198.18.2.13", "site": "hk1"},
                "etcd1": {"lan_address": "198.18.1.14", "site": "sz1"},
                "gw1": {"lan_address": "198.18.1.10", "site": "sz1"}}
    names = {"groups": {"consensus": ["etcd1"], "orderdb": ["db1", "db2"], "gateway": ["gw1"]},
             "hostvars": hostvars, "group_names": ["gateway"], "site": "sz1", "inventory_hostname": "db1",
             "lan_address": "198.18.1.13", "ansible_managed": "managed", "patroni_restapi_port": 8008,
             "postgres_port": 5432, **extra}
    source = (ROLES / role / "templates" / template).read_text()
    return jinja2.Environment().from_string(source).render(names)  # the roles' own defaults render empty


def test_a_former_primary_that_cannot_rewind_is_rebuilt_rather_than_left_a_member_that_never_streams():
    local = yaml.safe_load(_render("postgres_patroni", "patroni.yml.j2"))["postgresql"]
    assert local["remove_data_directory_on_rewind_failure"] is True
    assert local["remove_data_directory_on_diverged_timelines"] is True
    assert local["basebackup"] == [{"checkpoint": "fast"}]


def test_haproxy_asks_patroni_for_the_status_line_only():
    text = _render("haproxy", "haproxy.cfg.j2")
    assert "option httpchk OPTIONS /primary" in text and "GET /primary" not in text
    assert text.count("check port 8008 on-marked-down shutdown-sessions") == 2  # each database, cut when it is demoted


def test_the_database_proxy_brings_a_new_primary_up_within_a_fifth_of_a_second():
    """Issue 33: a down member (every standby) is checked every 200 ms and one 200 from /primary makes it the
    one that gets connections; the gateways' load balancing keeps the defaults."""
    text = _render("haproxy", "haproxy.cfg.j2")
    database = text.split("listen orderdb", 1)[1].split("\nfrontend ", 1)[0]
    assert "default-server inter 500ms downinter 200ms fall 2 rise 1" in database
    assert text.split("listen orderdb", 1)[0].count("default-server inter 500ms fall 2 rise 2") == 1
