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


def test_a_scenario_that_carried_its_target_shows_the_target_and_one_that_fell_short_what_it_acked():
    """Clients got 97% of 100/s acknowledged in the window (the rest still in flight as it closed): the scenario
    carried its target, so the stack showed 100/s. With 90% it fell short and showed only the 90/s it acked."""
    topology = load_topology(LAB)
    survivors = topology.service("gateway").instances - topology.service("gateway").placement["sz1"]

    def one(acked: float) -> ScenarioFigure:
        return ScenarioFigure(scenario="site sz1 down", cut_site="sz1", target_per_s=100, acked_per_s=acked,
                              p99_ms=80, within_bound=True, sessions=0)

    assert derive(topology, "lab", [one(97)], 250).services["gateway"].orders_per_second == round(100 / survivors, 1)
    assert derive(topology, "lab", [one(97)], 250).services["orderdb"].orders_per_second == 100
    assert derive(topology, "lab", [one(90)], 250).services["orderdb"].orders_per_second == 90
