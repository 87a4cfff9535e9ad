"""Every semantic rule of the capacity check, with expectations computed by hand.

Base topology (tests/unit/builders.py): sites s1 (active), s2 (standby) on carriers a and b,
witness w on carrier b only; peak 100 orders/s; headroom 1.0 unless a test says otherwise.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tradestack.capacity import Reason, check_capacity
from tradestack.capacity.scenarios import enumerate_scenarios, scenario_count
from tradestack.errors import InputError
from tradestack.topology import load_topology

from .builders import base, build, with_services

pytestmark = pytest.mark.unit

LAB = Path(__file__).resolve().parents[2] / "infra" / "topologies" / "lab.yaml"


def one(topology, *failed: str):
    """Result of exactly one scenario: the given groups failed together."""
    report = check_capacity(topology, scenarios=[list(failed)])
    return report.scenario(1 if failed else 0)


def svc(**fields):
    out = {"name": "web", "kind": "stateless", "placement": {"s1": 2, "s2": 2}}
    out.update(fields)
    return out


# --- risk groups and scenarios ---------------------------------------------------------------

def test_lab_example_scenario_counts():
    t = load_topology(LAB)
    assert check_capacity(t, 1).scenario_count == 17
    assert check_capacity(t, 2).scenario_count == 137


def test_scenario_enumeration_order_and_padding():
    rows = enumerate_scenarios(3, 2)
    assert rows.tolist() == [[3, 3], [0, 3], [1, 3], [2, 3], [0, 1], [0, 2], [1, 2]]
    assert scenario_count(16, 2) == 137


def test_implicit_groups_tag_sites_uplinks_and_upstreams():
    doc = base()
    doc["upstreams"] = [{"name": "x", "risk_groups": ["facility:colo"]}]
    doc["sites"][0]["risk_groups"] = ["power:p1"]
    doc["sites"][0]["uplinks"][0]["risk_groups"] = ["facility:f1"]
    report = check_capacity(build(doc), 1)
    assert report.groups == ["carrier:a", "carrier:b", "facility:colo", "facility:f1", "power:p1",
                             "site:s1", "site:s2", "site:w", "upstream:x"]


def test_carrier_with_no_uplinks_is_not_enumerated():
    doc = base()
    doc["carriers"].append({"name": "idle"})
    assert "carrier:idle" not in check_capacity(build(doc), 1).groups


# --- sites up or down ------------------------------------------------------------------------

def test_site_down_when_its_own_group_fails():
    doc = base()
    doc["sites"][0]["risk_groups"] = ["power:p1"]
    report = check_capacity(build(doc), scenarios=[["power:p1"]])
    assert report.down_sites(1) == ["s1"]


def test_site_down_only_when_every_uplink_is_cut():
    t = with_services(svc())
    report = check_capacity(t, scenarios=[["carrier:a"], ["carrier:a", "carrier:b"]])
    assert report.down_sites(1) == []  # b survives for s1, s2; w is on b only
    assert report.down_sites(2) == ["s1", "s2", "w"]


def test_uplink_own_group_cuts_only_that_uplink():
    doc = base()
    doc["sites"][2]["uplinks"][0]["risk_groups"] = ["facility:wf"]
    report = check_capacity(build(doc), scenarios=[["facility:wf"]])
    assert report.down_sites(1) == ["w"]


def test_shared_facility_across_sites_takes_both_down_with_carrier():
    doc = base()
    for site in doc["sites"][:2]:
        site["uplinks"][1]["risk_groups"] = ["facility:shared-room"]
    report = check_capacity(build(doc), scenarios=[["carrier:a", "facility:shared-room"]])
    assert report.down_sites(1) == ["s1", "s2"]  # w's only uplink (carrier b) is not in that room


# --- stateless -------------------------------------------------------------------------------

def test_stateless_available_is_instances_up_times_per_instance():
    t = with_services(svc(capacity={"orders_per_second": 30}), headroom=1.5)  # required 150
    intact = one(t).services["web"]
    assert intact.metrics["orders_per_second"].required == 150
    assert intact.metrics["orders_per_second"].available == 120  # 4 x 30
    assert intact.reason is Reason.CAPACITY


def test_stateless_loses_a_site_and_falls_short():
    t = with_services(svc(capacity={"orders_per_second": 40}))  # 4 x 40 = 160 >= 100
    assert one(t).ok
    lost = one(t, "site:s1").services["web"]
    assert lost.metrics["orders_per_second"].available == 80
    assert (lost.ok, lost.reason) == (False, Reason.CAPACITY)
    assert lost.detail == "2 of 4 instances up"


def test_stateless_checks_each_declared_metric():
    t = with_services(svc(capacity={"orders_per_second": 100, "sessions": 10}),
                      peak={"orders_per_second": 100, "sessions": 50})
    r = one(t, "site:s2").services["web"]
    assert r.metrics["orders_per_second"].ok
    assert not r.metrics["sessions"].ok and r.metrics["sessions"].available == 20


def test_stateless_with_no_instance_up_is_unavailable():
    t = with_services(svc(capacity={"orders_per_second": 100}, placement={"s1": 1}))
    assert one(t, "site:s1").services["web"].reason is Reason.UNAVAILABLE


def test_metric_exactly_at_required_passes():
    t = with_services(svc(capacity={"orders_per_second": 25}))  # 4 x 25 = 100
    assert one(t).ok


# --- replicated ------------------------------------------------------------------------------

def db(replication, **more):
    fields = {"name": "db", "kind": "replicated", "replication": replication,
              "capacity": {"orders_per_second": 500}, "placement": {"s2": 1, "s1": 1}}
    fields.update(more)
    return fields


def test_replicated_available_is_one_instance_not_the_sum():
    r = one(with_services(db("synchronous"))).services["db"]
    assert r.metrics["orders_per_second"].available == 500  # not 1000


def test_replicated_too_small_fails_capacity_even_intact():
    t = with_services(db("synchronous", capacity={"orders_per_second": 80}))
    assert one(t).services["db"].reason is Reason.CAPACITY


def test_synchronous_survives_losing_either_site():
    t = with_services(db("synchronous"))
    assert one(t, "site:s1").ok and one(t, "site:s2").ok
    assert one(t, "site:s1", "site:s2").services["db"].reason is Reason.UNAVAILABLE


def test_asynchronous_primary_is_first_active_site_and_losing_it_is_rpo():
    t = with_services(db("asynchronous"))  # placement lists s2 (standby) first; s1 is the active one
    assert one(t, "site:s2").ok
    lost = one(t, "site:s1").services["db"]
    assert (lost.ok, lost.reason) == (False, Reason.RPO)
    assert "s1" in lost.detail


# --- quorum ----------------------------------------------------------------------------------

def quorum(placement):
    return {"name": "etcd", "kind": "quorum", "placement": placement}


def test_quorum_needs_a_strict_majority():
    t = with_services(quorum({"s1": 1, "s2": 1, "w": 1}))
    assert one(t, "site:w").ok
    r = one(t, "site:w", "site:s1").services["etcd"]
    assert (r.reason, r.metrics["members"].required, r.metrics["members"].available) == (Reason.QUORUM, 2, 1)


def test_quorum_half_is_not_a_majority():
    t = with_services(quorum({"s1": 2, "s2": 2}))
    r = one(t, "site:s1").services["etcd"]
    assert (r.ok, r.metrics["members"].required, r.metrics["members"].available) == (False, 3, 2)


# --- requires and upstreams ------------------------------------------------------------------

def test_requires_propagates_transitively():
    t = with_services(
        svc(name="web", capacity={"orders_per_second": 100}, requires=["app"]),
        svc(name="app", requires=["etcd"]),
        quorum({"s1": 1, "s2": 1, "w": 1}),
    )
    r = one(t, "site:w", "site:s2")  # etcd loses quorum; s1 alone still has web and app
    assert r.services["etcd"].reason is Reason.QUORUM
    assert (r.services["app"].reason, r.services["app"].detail) == (Reason.REQUIRES, "etcd is down")
    assert r.services["web"].reason is Reason.REQUIRES


def test_service_declared_before_what_it_requires_still_sees_it():
    t = with_services(svc(name="web", requires=["db"]), db("synchronous", placement={"s2": 1}))
    r = one(t, "site:s2")  # web keeps its s1 instances; db had only s2
    assert r.services["db"].reason is Reason.UNAVAILABLE
    assert (r.services["web"].reason, r.services["web"].detail) == (Reason.REQUIRES, "db is down")


def test_upstreams_down_only_when_all_failed():
    t = with_services(svc(upstreams=["x", "y"]), upstreams=[{"name": "x"}, {"name": "y"}])
    assert one(t, "upstream:x").ok
    r = one(t, "upstream:x", "upstream:y").services["web"]
    assert (r.reason, r.detail) == (Reason.UPSTREAMS, "every upstream failed: x, y")


def test_upstream_explicit_group_fails_it():
    t = with_services(svc(upstreams=["x"]),
                      upstreams=[{"name": "x", "risk_groups": ["facility:colo"]}])
    assert one(t, "facility:colo").services["web"].reason is Reason.UPSTREAMS


def test_own_reason_wins_over_dependency_reason():
    t = with_services(svc(capacity={"orders_per_second": 100}, placement={"s1": 1}, requires=["db"]),
                      db("synchronous", placement={"s1": 1}))
    r = one(t, "site:s1")
    assert r.services["web"].reason is Reason.UNAVAILABLE


# --- SPOFs and verdict -----------------------------------------------------------------------

def test_spof_is_a_group_that_alone_fails_a_service():
    t = with_services(svc(capacity={"orders_per_second": 60}))  # one site left: 2 x 60 = 120 ok
    assert check_capacity(t, 1).spofs == []
    t = with_services(svc(capacity={"orders_per_second": 40}))  # one site left: 80 < 100
    assert check_capacity(t, 1).spofs == ["site:s1", "site:s2"]


def test_spofs_exclude_services_already_failing_intact():
    t = with_services(svc(capacity={"orders_per_second": 1}))  # fails intact: not a SPOF matter
    report = check_capacity(t, 1)
    assert not report.ok and report.spofs == []


def test_lab_passes_depth_one_and_fails_carrier_pair_at_depth_two():
    t = load_topology(LAB)
    assert check_capacity(t, 1).ok
    report = check_capacity(t, 2)
    assert not report.ok
    doc = report.to_dict()
    pair = next(s for s in doc["scenarios"] if s["failed"] == ["carrier:cm", "carrier:ct"])
    assert pair["sites_down"] == ["hk1", "wit"]
    assert pair["services"]["consensus"]["reason"] == "quorum"
    assert pair["services"]["gateway"]["ok"] is True
    assert pair["services"]["gateway"]["metrics"]["orders_per_second"] == {"required": 120.0, "available": 120.0}  # 2 x 60 in sz1


def test_json_document_shape():
    doc = check_capacity(load_topology(LAB), 1).to_dict()
    assert doc["ok"] is True and doc["spofs"] == []
    assert len(doc["scenarios"]) == 17
    assert doc["scenarios"][0]["failed"] == []
    svc_doc = doc["scenarios"][0]["services"]["orderdb"]
    assert svc_doc == {"ok": True, "reason": None, "detail": None,
                       "metrics": {"orders_per_second": {"required": 120.0, "available": 120.0}}}
    failing = check_capacity(load_topology(LAB), 2).to_dict(failing_only=True)
    assert failing["failing_count"] == len(failing["scenarios"]) == 23
    assert all(not s["ok"] for s in failing["scenarios"])


def test_explicit_scenario_with_unknown_group_is_input_error():
    with pytest.raises(InputError, match="unknown risk group"):
        check_capacity(load_topology(LAB), scenarios=[["carrier:nope"]])


def test_base_builder_is_not_mutated():
    before = copy.deepcopy(base())
    with_services(svc())
    assert base() == before


def test_monitoring_is_lost_only_with_every_site_it_is_placed_in_and_carries_no_load():
    mon = {"name": "monitoring", "kind": "monitoring", "placement": {"s1": 1, "s2": 1}}
    web = {"name": "web", "kind": "stateless", "capacity": {"orders_per_second": 100}, "placement": {"s1": 1, "s2": 1}}
    t = with_services(web, mon)
    assert one(t, "site:s1").services["monitoring"].ok
    assert one(t, "site:s1", "site:s2").services["monitoring"].reason is Reason.UNAVAILABLE
    # placed in one site only: that site's loss blinds the others, and the check says so
    blind = with_services(web, dict(mon, placement={"s1": 1}))
    assert one(blind, "site:s1").services["monitoring"].reason is Reason.UNAVAILABLE
    for extra in ({"capacity": {"orders_per_second": 10}}, {"requires": ["web"]}):
        with pytest.raises(InputError, match="carries no clients' load"):
            with_services(web, dict(mon, **extra))
