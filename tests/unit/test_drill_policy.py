"""Drills on a stack that is not a lab: allowed by its own configuration, in its change windows, within its
blast radius, confirmed with --yes; refused with the reason otherwise, before anything is touched."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tradestack.drills import engine, model
from tradestack.substrates import faults
from tradestack.drills.policy import DrillPolicy, Reach, parse_window, reach
from tradestack.errors import InputError

from .memory_substrate import MemorySubstrate

pytestmark = pytest.mark.unit

UTC = dt.timezone.utc
SAT_3AM = dt.datetime(2026, 12, 5, 3, 0, tzinfo=UTC)        # a Saturday
WED_NOON = dt.datetime(2026, 12, 2, 12, 0, tzinfo=UTC)      # a Wednesday


@pytest.fixture
def memory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MemorySubstrate:
    substrate = MemorySubstrate(tmp_path)
    from tradestack.drills import session

    for module in (engine, session):  # planning, and the run's frame
        monkeypatch.setattr(module, "open_stack", lambda name: substrate)
    return substrate


def _crash(host: str = "sz1-gateway-1") -> model.Drill:
    return model.Drill(name="d", description="x", faults=[faults.HostCrash(kind="host-crash", host=host)])


def test_a_lab_needs_neither_policy_nor_yes(memory, monkeypatch):
    monkeypatch.setattr(MemorySubstrate, "disposable", True)
    engine.authorize(engine.plan(_crash(), "mem"), yes=False)


def test_a_stack_that_does_not_allow_drills_refuses_them_even_with_yes(memory):
    with pytest.raises(engine.DrillRefused, match=r"does not allow drills \(set tradestack:allowDrills true"):
        engine.authorize(engine.plan(_crash(), "mem"), yes=True, now=SAT_3AM)
    assert memory.events == []


def test_an_allowed_drill_still_needs_yes(memory):
    memory.stack_config = {"tradestack:allowDrills": "true"}
    planned = engine.plan(_crash(), "mem")
    with pytest.raises(engine.DrillRefused, match="--yes"):
        engine.authorize(planned, yes=False, now=WED_NOON)
    engine.authorize(planned, yes=True, now=WED_NOON)


def test_outside_the_change_windows_a_drill_is_refused_with_the_next_window(memory):
    memory.stack_config = {"tradestack:allowDrills": "true", "tradestack:changeWindows": "Sat,Sun 02:00-06:00 UTC"}
    planned = engine.plan(_crash(), "mem")
    with pytest.raises(engine.DrillRefused, match="outside the stack's change windows; the next opens "
                                                  "Sat 2026-12-05 02:00 UTC"):
        engine.authorize(planned, yes=True, now=WED_NOON)
    engine.authorize(planned, yes=True, now=SAT_3AM)
    # a drill that would run past the window's end does not start
    with pytest.raises(engine.DrillRefused, match="outside"):
        engine.authorize(planned, yes=True, now=SAT_3AM.replace(hour=5, minute=59, second=50))


def test_beyond_the_blast_radius_a_drill_is_refused_naming_what_it_would_touch(memory):
    memory.stack_config = {"tradestack:allowDrills": "true", "tradestack:blastRadius": "hosts=1,sites=1"}
    engine.authorize(engine.plan(_crash(), "mem"), yes=True, now=WED_NOON)
    two_sites = model.Drill(name="d", description="x", faults=[faults.Partition(kind="partition", sites=["sz1", "hk1"])])
    with pytest.raises(engine.DrillRefused, match=r"would touch 2 sites \(hk1, sz1\); the stack's blast radius allows 1"):
        engine.authorize(engine.plan(two_sites, "mem"), yes=True, now=WED_NOON)
    two_hosts = model.Drill(name="d", description="x", faults=[faults.HostCrash(kind="host-crash", host="sz1-gateway-1"),
                                                               faults.HostFreeze(kind="host-freeze", host="sz1-router-1")])
    with pytest.raises(engine.DrillRefused, match="would touch 2 hosts"):
        engine.authorize(engine.plan(two_hosts, "mem"), yes=True, now=WED_NOON)


def test_the_dry_run_plan_says_whether_the_policy_allows_the_drill_now(memory):
    memory.stack_config = {"tradestack:allowDrills": "false"}
    assert engine.plan(_crash(), "mem").steps[0].startswith("policy: refused now: this stack does not allow drills")


def test_what_a_drill_reaches():
    memory = MemorySubstrate(Path("/nonexistent"))
    leader = reach(_crash("@database-leader"), memory.topology, memory.hosts, "mem", memory.fault_map)
    assert leader == Reach(frozenset({"@database-leader"}), frozenset({"sz1", "hk1"}))
    carrier = model.Drill(name="d", description="x", faults=[faults.Blackhole(kind="blackhole", carrier="ct")])
    got = reach(carrier, memory.topology, memory.hosts, "mem", memory.fault_map)
    # every site with an uplink on carrier ct (lab.yaml: sz1, hk1 and the witness)
    assert got.hosts == frozenset() and got.sites == frozenset(
        s.name for s in memory.topology.sites if any(u.carrier == "ct" for u in s.uplinks))


@pytest.mark.parametrize("text, now, inside", [
    ("Mon-Fri 22:00-02:00 UTC", dt.datetime(2026, 12, 2, 23, 0, tzinfo=UTC), True),     # Wed night
    ("Mon-Fri 22:00-02:00 UTC", dt.datetime(2026, 12, 3, 1, 30, tzinfo=UTC), True),     # past midnight, from Wed
    ("Mon-Fri 22:00-02:00 UTC", dt.datetime(2026, 12, 5, 1, 30, tzinfo=UTC), True),     # Sat 01:30, from Fri
    ("Mon-Fri 22:00-02:00 UTC", dt.datetime(2026, 12, 6, 1, 30, tzinfo=UTC), False),    # Sun 01:30: Sat opened none
    ("daily 01:00-05:00 UTC", dt.datetime(2026, 12, 6, 4, 59, tzinfo=UTC), True),
    ("Sat-Mon 10:00-11:00 UTC", dt.datetime(2026, 12, 7, 10, 30, tzinfo=UTC), True),    # a range across Sunday
])
def test_change_windows(text, now, inside):
    assert DrillPolicy(True, (parse_window(text),)).in_window(now) is inside


@pytest.mark.parametrize("config, message", [
    ({"tradestack:allowDrills": "yes"}, "is not true or false"),
    ({"tradestack:changeWindows": "weekends 02:00-06:00"}, "is not like 'Sat,Sun 02:00-06:00 UTC'"),
    ({"tradestack:changeWindows": "Fun 02:00-06:00 UTC"}, "'fun' is not a day"),
    ({"tradestack:changeWindows": "Sat 25:00-26:00 UTC"}, "not HH:MM"),
    ({"tradestack:blastRadius": "hosts=two"}, "'hosts=two' is not hosts=N or sites=N"),
])
def test_unreadable_policy_settings_are_errors_not_an_open_door(config, message):
    with pytest.raises(InputError, match=message):
        DrillPolicy.from_config(config)


# -- capacity verify cuts sites off: the same policy, before anything is touched ------------------------------
@pytest.fixture
def verify_on_memory(memory, monkeypatch):
    from tradestack.capacity import verify

    monkeypatch.setattr(verify, "open_stack", lambda name: memory)
    return verify


def test_capacity_verify_on_a_stack_that_does_not_allow_drills_is_refused(memory, verify_on_memory):
    with pytest.raises(engine.DrillRefused, match="does not allow drills"):
        verify_on_memory.authorize("mem", yes=True, now=SAT_3AM)
    memory.stack_config = {"tradestack:allowDrills": "true"}
    with pytest.raises(engine.DrillRefused, match="--yes"):
        verify_on_memory.authorize("mem", yes=False, now=WED_NOON)
    verify_on_memory.authorize("mem", yes=True, now=WED_NOON)
    assert memory.events == [] and memory.loads == []


def test_capacity_verify_must_fit_in_the_change_window_and_the_blast_radius(memory, verify_on_memory):
    memory.stack_config = {"tradestack:allowDrills": "true", "tradestack:changeWindows": "Sat,Sun 02:00-06:00 UTC",
                           "tradestack:blastRadius": "sites=1"}
    verify_on_memory.authorize("mem", yes=True, now=SAT_3AM)  # one site cut at a time
    with pytest.raises(engine.DrillRefused, match="outside the stack's change windows"):  # 3 scenarios, ~10 min
        verify_on_memory.authorize("mem", yes=True, now=SAT_3AM.replace(hour=5, minute=55))
    verify_on_memory.authorize("mem", only=["all"], duration_s=20, warmup_s=0, yes=True,
                               now=SAT_3AM.replace(hour=5, minute=55))  # no cut, 20 s: fits


def test_capacity_verify_on_a_lab_needs_no_policy(memory, verify_on_memory, monkeypatch):
    monkeypatch.setattr(type(memory), "disposable", True)
    verify_on_memory.authorize("mem", yes=False, now=WED_NOON)


def test_the_leader_sites_power_loss_is_picked_when_injected_and_reaches_every_site_that_may_lead(tmp_path):
    """`@database-leader-site` means the power feed of the site leading the database at injection (the memory
    stack's leader is in sz1: lab.yaml feeds sz1 from power:sz-grid-east); before that, a plan counts every site
    with a database host, and the stack must have each of their feeds."""
    memory = MemorySubstrate(tmp_path)
    fault = faults.PowerLoss(kind="power-loss", group=faults.LEADER_SITE)
    assert memory.pinned(fault).group == "power:sz-grid-east"
    assert memory.pinned(fault).duration_s == fault.duration_s
    drill = model.Drill(name="d", description="x", faults=[fault])
    assert reach(drill, memory.topology, memory.hosts, "mem", memory.fault_map).sites == frozenset({"sz1", "hk1"})
    with pytest.raises(InputError, match="power:"):  # the memory stack's fault map has no power groups
        memory.check_fault(fault)
    memory.fault_map.update({"power:sz-grid-east": {"links": [], "hosts": []}, "power:hk-grid": {"links": [],
                                                                                                 "hosts": []}})
    memory.check_fault(fault)
