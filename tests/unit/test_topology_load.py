"""Loading topology files: the contract example, and every kind of bad input with its message."""

from __future__ import annotations

from pathlib import Path

import pytest

from tradestack.errors import TopologyError
from tradestack.topology import load_topology, parse_topology, risk_group_index

pytestmark = pytest.mark.unit

LAB = Path(__file__).resolve().parents[2] / "infra" / "topologies" / "lab.yaml"

GOOD = """\
name: t
peak: {orders_per_second: 100}
headroom: 1.5
carriers:
  - name: a
sites:
  - name: s1
    role: active
    uplinks:
      - carrier: a
services:
  - name: web
    kind: stateless
    capacity: {orders_per_second: 50}
    placement: {s1: 4}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(TopologyError) as info:
        parse_topology(text, "t.yaml")
    return [str(p) for p in info.value.problems]


def only(text: str) -> str:
    found = problems(text)
    assert len(found) == 1, found
    return found[0]


def test_contract_example_validates_with_its_field_names():
    t = load_topology(LAB)
    assert t.name == "lab"
    assert t.peak == {"orders_per_second": 48, "sessions": 320}
    assert t.session_refresh_s == 10
    assert t.headroom == 2.5
    assert [s.name for s in t.sites] == ["sz1", "hk1", "wit"]
    assert t.site("hk1").uplinks[1].risk_groups == ["facility:cm-tko"]
    assert t.service("orderdb").replication == "synchronous"
    assert t.service("router").upstreams == ["exchange", "overnight-ats"]
    assert t.service("consensus").instances == 3
    assert t.required("sessions") == 800


def test_example_has_sixteen_risk_groups_including_implicit_ones():
    groups = risk_group_index(load_topology(LAB)).groups
    assert len(groups) == 16
    assert {"site:sz1", "site:hk1", "site:wit", "carrier:ct", "carrier:cu", "carrier:cm",
            "upstream:exchange", "upstream:overnight-ats", "power:hk-grid", "facility:cm-gz"} <= set(groups)


def test_every_shipped_topology_validates():
    shipped = sorted(LAB.parent.glob("*.yaml"))
    assert len(shipped) >= 2
    for path in shipped:
        load_topology(path)


def test_good_minimal_text_parses():
    assert parse_topology(GOOD).service("web").placement == {"s1": 4}


def test_yaml_syntax_error_has_line_and_column():
    msg = only(GOOD.replace("headroom: 1.5", "headroom: [1.5"))
    assert msg.startswith("t.yaml:4:")
    assert "YAML syntax error" in msg


def test_unknown_field_is_named_with_its_line():
    assert only(GOOD.replace("    role: active", "    role: active\n    colour: red")) == \
        "t.yaml:9:5: sites[0].colour: unknown field"


def test_unknown_top_level_field():
    assert only(GOOD + "extra: 1\n") == "t.yaml:16:1: extra: unknown field"


def test_missing_required_field_points_at_its_parent():
    msg = only(GOOD.replace("    role: active\n", ""))
    assert msg == "t.yaml:7:5: sites[0].role: required field is missing"


def test_bad_enum_value():
    msg = only(GOOD.replace("role: active", "role: primary"))
    assert msg.startswith("t.yaml:8:11: sites[0].role: Input should be 'active', 'standby' or 'witness'")


def test_undefined_carrier_in_uplink_says_which():
    msg = only(GOOD.replace("      - carrier: a", "      - carrier: zz"))
    assert msg == "t.yaml:10:18: sites[0].uplinks[0].carrier: carrier 'zz' is not defined (known: a)"


def test_undefined_site_in_placement_says_which():
    msg = only(GOOD.replace("placement: {s1: 4}", "placement: {s1: 4, s9: 1}"))
    assert msg == "t.yaml:15:24: services[0].placement.s9: site 's9' is not defined (known: s1)"


def test_undefined_requires_and_upstreams():
    text = GOOD + "    requires: [db]\n    upstreams: [nyse]\n"
    found = problems(text)
    assert "t.yaml:17:17: services[0].upstreams[0]: upstream 'nyse' is not defined (none are defined)" in found
    assert "t.yaml:16:16: services[0].requires[0]: service 'db' is not defined (known: web)" in found


def test_duplicate_names():
    text = GOOD.replace("  - name: a\n", "  - name: a\n  - name: a\n")
    assert only(text) == "t.yaml:6:11: carriers[1].name: duplicate name 'a' (also carriers[0])"


def test_duplicate_yaml_keys_are_errors_not_silently_overwritten():
    msg = only(GOOD.replace("headroom: 1.5", "headroom: 1.5\nheadroom: 3"))
    assert msg == "t.yaml:4:1: duplicate key 'headroom' (first defined at line 3)"


@pytest.mark.parametrize("old,new,field", [
    ("capacity: {orders_per_second: 50}", "capacity: {orders_per_second: -5}", "services[0].capacity.orders_per_second"),
    ("capacity: {orders_per_second: 50}", "capacity: {orders_per_second: 0}", "services[0].capacity.orders_per_second"),
    ("placement: {s1: 4}", "placement: {s1: 0}", "services[0].placement.s1"),
    ("placement: {s1: 4}", "placement: {s1: -2}", "services[0].placement.s1"),
    ("peak: {orders_per_second: 100}", "peak: {orders_per_second: 0}", "peak.orders_per_second"),
])
def test_zero_or_negative_numbers(old, new, field):
    msg = only(GOOD.replace(old, new))
    assert f": {field}: Input should be greater than 0" in msg


def test_numbers_in_quotes_are_not_numbers():
    assert "Input should be a valid number (got '50')" in only(GOOD.replace(": 50}", ": '50'}"))


def test_fractional_instance_count_rejected():
    assert "services[0].placement.s1: Input should be a valid integer" in only(GOOD.replace("{s1: 4}", "{s1: 1.5}"))


def test_headroom_below_one_rejected():
    assert "headroom: Input should be greater than or equal to 1" in only(GOOD.replace("1.5", "0.8"))


def test_requires_cycle_is_reported_as_a_chain():
    text = GOOD + """\
    requires: [db]
  - name: db
    kind: stateless
    placement: {s1: 1}
    requires: [cache]
  - name: cache
    kind: stateless
    placement: {s1: 1}
    requires: [web]
"""
    msg = only(text)
    assert "`requires` cycle: web -> db -> cache -> web" in msg


def test_service_requiring_itself():
    assert "service 'web' requires itself" in only(GOOD + "    requires: [web]\n")


def test_capacity_metric_without_peak():
    msg = only(GOOD.replace("capacity: {orders_per_second: 50}", "capacity: {orders_per_second: 50, qps: 3}"))
    assert "services[0].capacity.qps: metric 'qps' has no peak value" in msg


def test_replicated_needs_replication_mode():
    msg = only(GOOD.replace("kind: stateless", "kind: replicated"))
    assert "a replicated service must say `replication: synchronous` or `asynchronous`" in msg


def test_quorum_has_no_capacity():
    assert "a quorum service has members, not capacity" in only(GOOD.replace("kind: stateless", "kind: quorum"))


def test_async_replica_needs_an_active_site():
    text = GOOD.replace("role: active", "role: standby")
    found = problems(text)
    assert any("no site has role `active`" in p for p in found)


def test_site_needs_an_uplink():
    assert "sites[0].uplinks: List should have at least 1 item" in only(
        GOOD.replace("    uplinks:\n      - carrier: a\n", "    uplinks: []\n"))


def test_same_carrier_twice_in_one_site():
    msg = only(GOOD.replace("      - carrier: a\n", "      - carrier: a\n      - carrier: a\n"))
    assert "site 's1' has two uplinks to carrier 'a'" in msg


def test_names_must_be_lowercase_identifiers():
    assert "sites[0].name: String should match pattern" in only(GOOD.replace("name: s1", "name: S 1"))


def test_several_problems_are_all_reported():
    text = GOOD.replace("carrier: a", "carrier: zz").replace("{s1: 4}", "{s1: 4, nowhere: 2}")
    assert len(problems(text)) == 2


def test_missing_file(tmp_path):
    with pytest.raises(TopologyError) as info:
        load_topology(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: file not found"


def test_empty_file_and_non_mapping(tmp_path):
    assert only("") == "t.yaml:1:1: the file is empty"
    assert only("- 1\n- 2\n") == "t.yaml:1:1: a topology file must be a mapping (name:, sites:, ...)"


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(TopologyError, match="is a directory"):
        load_topology(tmp_path)
