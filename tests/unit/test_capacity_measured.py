"""Measured capacity: per-instance figures from `capacity verify` scenarios, and `capacity check --measured`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradestack.capacity.measured import ScenarioFigure, compare, derive, dump_measured, load_measured
from tradestack.cli.app import app
from tradestack.errors import InputError
from tradestack.topology import load_topology

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "infra" / "topologies" / "lab.yaml"


def fig(scenario: str, cut: str | None, acked: float, p99: float | None, bound: bool = True,
        sessions: int = 0) -> ScenarioFigure:
    return ScenarioFigure(scenario=scenario, cut_site=cut, target_per_s=acked, acked_per_s=acked, p99_ms=p99,
                          within_bound=bound, sessions=sessions)


def test_stateless_per_instance_is_the_rate_over_the_instances_alive():
    topology = load_topology(LAB)
    gateways = topology.service("gateway").instances
    cut = topology.service("gateway").placement["sz1"]
    m = derive(topology, "lab", [fig("all sites up", None, 300, 80), fig("site sz1 down", "sz1", 240, 90)], 250)
    # 300 over every gateway, 240 over the survivors of sz1: the survivors showed more per instance
    assert m.services["gateway"].orders_per_second == round(max(300 / gateways, 240 / (gateways - cut)), 1)
    assert m.services["gateway"].shown_by == "site sz1 down"
    # a replicated service's primary carried the whole rate
    assert m.services["orderdb"].orders_per_second == 300
    assert "consensus" not in m.services  # a quorum has members, not capacity


def test_a_scenario_beyond_the_latency_bound_counts_for_nothing():
    topology = load_topology(LAB)
    m = derive(topology, "lab", [fig("all sites up", None, 500, 900, bound=False), fig("site hk1 down", "hk1", 120, 60)],
               250)
    assert m.services["orderdb"].orders_per_second == 120
    m = derive(topology, "lab", [fig("all sites up", None, 500, 900, bound=False)], 250)
    assert m.services["gateway"].orders_per_second == 0 and m.services["gateway"].shown_by is None


def test_what_was_measured_is_written_even_above_the_target_and_capped_figures_say_so():
    topology = load_topology(LAB)
    over = ScenarioFigure(scenario="site hk1 down", cut_site="hk1", target_per_s=120, acked_per_s=126, p99_ms=40,
                          within_bound=True, sessions=800)
    m = derive(topology, "lab", [over], 250)
    # main wrote the target (60 per surviving gateway): what was acknowledged is 126 / 2
    assert m.services["gateway"].orders_per_second == 63.0 and m.services["gateway"].capped_by_offered_load
    short = over.model_copy(update={"acked_per_s": 115.2})  # 96% of the target: carried, yet not the target
    m = derive(topology, "lab", [short], 250)
    assert m.services["gateway"].orders_per_second == 57.6 and m.services["gateway"].capped_by_offered_load
    row = {(r.service, r.metric): r for r in compare(topology, m)}[("gateway", "orders_per_second")]
    assert not row.ok and row.detail == ("declares 60 per instance; 57.6 was measured (capped by the offered load: "
                                         "verify with more to show more)")
    saturated = over.model_copy(update={"acked_per_s": 90.0})  # the stack, not the load, set it
    assert not derive(topology, "lab", [saturated], 250).services["gateway"].capped_by_offered_load


def test_sessions_only_when_measured():
    topology = load_topology(LAB)
    scen = [fig("all sites up", None, 100, 50, sessions=1200)]
    assert derive(topology, "lab", scen, 250).services["gateway"].sessions is None
    held = derive(topology, "lab", scen, 250, sessions_measured=True).services["gateway"].sessions
    assert held == round(1200 / topology.service("gateway").instances, 1)


def test_declaring_more_than_measured_fails_and_says_so():
    topology = load_topology(LAB)
    gw = topology.service("gateway")
    declared = gw.capacity["orders_per_second"]
    # exactly what the topology declares, measured: every orders/s row passes
    rate = declared * gw.instances
    m = derive(topology, "lab", [fig("all sites up", None, rate, 50)], 250)
    rows = {(r.service, r.metric): r for r in compare(topology, m)}
    assert rows[("gateway", "orders_per_second")].ok
    # a little less measured than declared: that row fails, naming both figures
    m = derive(topology, "lab", [fig("all sites up", None, rate - gw.instances, 50)], 250)
    row = {(r.service, r.metric): r for r in compare(topology, m)}[("gateway", "orders_per_second")]
    assert not row.ok and f"{declared:g}" in row.detail and f"{declared - 1:g}" in row.detail


def test_file_round_trip_and_errors_name_the_line(tmp_path: Path):
    topology = load_topology(LAB)
    m = derive(topology, "lab", [fig("all sites up", None, 200, 50)], 250)
    path = tmp_path / "measured.yaml"
    path.write_text(dump_measured(m))
    assert load_measured(path) == m
    path.write_text(path.read_text().replace("orders_per_second: ", "orders_per_second: -", 1))
    with pytest.raises(InputError) as err:
        load_measured(path)
    assert f"{path}:" in str(err.value) and "orders_per_second" in str(err.value)


def test_cli_check_measured_fails_exit_1_with_json(tmp_path: Path):
    topology = load_topology(LAB)
    m = derive(topology, "lab", [fig("all sites up", None, 10, 50)], 250)  # far less than declared
    path = tmp_path / "measured.yaml"
    path.write_text(dump_measured(m))
    r = CliRunner().invoke(app, ["capacity", "check", str(LAB), "--measured", str(path), "--json"])
    assert r.exit_code == 1, r.output
    doc = json.loads(r.stdout)
    assert doc["ok"] is False and doc["measured"]["ok"] is False
    bad = {(s["service"], s["metric"]) for s in doc["measured"]["services"] if not s["ok"]}
    assert ("gateway", "orders_per_second") in bad
    r = CliRunner().invoke(app, ["capacity", "check", str(LAB), "--measured", str(tmp_path / "nope.yaml")])
    assert r.exit_code == 2 and "file not found" in r.output and "Traceback" not in r.output


def test_a_scenario_that_carried_its_target_shows_what_it_acked_and_is_capped_by_the_offered_load():
    """Clients got 97% of 100/s acknowledged: main showed 100/s (the target, so a check against a topology declaring
    the target agreed by construction); what was measured is 97/s, capped by the load offered. With 90% the stack,
    not the load, set the figure."""
    topology = load_topology(LAB)
    survivors = topology.service("gateway").instances - topology.service("gateway").placement["sz1"]

    def one(acked: float) -> ScenarioFigure:
        return ScenarioFigure(scenario="site sz1 down", cut_site="sz1", target_per_s=100, acked_per_s=acked,
                              p99_ms=80, within_bound=True, sessions=0)

    carried = derive(topology, "lab", [one(97)], 250)
    assert carried.services["gateway"].orders_per_second == round(97 / survivors, 1)
    assert carried.services["orderdb"].orders_per_second == 97 and carried.services["orderdb"].capped_by_offered_load
    fell_short = derive(topology, "lab", [one(90)], 250).services["orderdb"]
    assert fell_short.orders_per_second == 90 and not fell_short.capped_by_offered_load


def test_a_cut_sites_survivors_do_not_serve_while_commits_wait_for_its_synchronous_standby():
    from tradestack.capacity.verify import sync_standbys_in
    sites = {"lab-sz1-orderdb-1": "sz1", "lab-hk1-orderdb-1": "hk1"}
    # Patroni's view just after sz1 is cut: its member record is stale and still named in the /sync key
    stale = [{"name": "lab-hk1-orderdb-1", "role": "leader", "state": "running"},
             {"name": "lab-sz1-orderdb-1", "role": "sync_standby", "state": "streaming"}]
    assert sync_standbys_in(stale, sites, "sz1") == ["lab-sz1-orderdb-1"]
    assert sync_standbys_in(stale, sites, "hk1") == []  # the leader's own site cut: a failover, not this wait
    # once the primary's WAL sender timed out, Patroni dropped it from the /sync key (a replica, or gone)
    dropped = [stale[0], {**stale[1], "role": "replica"}]
    assert sync_standbys_in(dropped, sites, "sz1") == []
    assert sync_standbys_in(stale[:1], sites, "sz1") == []


def test_lab_yaml_declares_only_what_the_deployed_lab_was_measured_to_carry():
    """infra/topologies/measured/lab.yaml is `capacity verify --write-measured` on the deployed lab (see the
    README's "Measured here"): it must show peak x headroom carried within the bound with every site up and
    with each site cut off, and lab.yaml must declare nothing beyond it."""
    measured = LAB.parent / "measured" / "lab.yaml"
    topology = load_topology(LAB)
    m = load_measured(measured)
    required = topology.required("orders_per_second")
    by_cut = {s.cut_site: s for s in m.scenarios}
    assert set(by_cut) == {None, *(s.name for s in topology.sites)}
    for s in by_cut.values():
        assert s.within_bound and s.target_per_s == required and s.acked_per_s >= 0.95 * required, s
        assert s.sessions == topology.required("sessions"), s
    r = CliRunner().invoke(app, ["capacity", "check", str(LAB), "--measured", str(measured), "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["measured"]["ok"] is True
    assert {s["service"] for s in doc["measured"]["services"]} == {"gateway", "router", "orderdb"}
