"""The observed peak: `capacity peak`'s questions to Prometheus, its peak file, `capacity check --observed`; the
gateway's sessions and origin, which the peak is recorded from."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tradestack.adapters.prometheus import Prometheus, PrometheusError, Series
from tradestack.capacity import check_capacity
from tradestack.capacity.observed import (ObservedPeak, PeakFigure, dump_peak, find_peak, judge_observed, load_peak,
                                          peak_across,
                                          parse_window, required_with)
from tradestack.cli.app import app
from tradestack.errors import InputError
from tradestack.refstack.origin import origin_of
from tradestack.topology import load_topology

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "infra" / "topologies" / "lab.yaml"
T0 = dt.datetime(2026, 11, 20, 9, 30, 15, tzinfo=dt.UTC)


def peak(orders: float, sessions: float, **kw) -> ObservedPeak:
    doc = {"source": "http://198.18.1.20:9090", "window_from": T0 - dt.timedelta(days=20),
           "window_to": T0 + dt.timedelta(days=10), "covered_from": T0 - dt.timedelta(days=20),
           "covered_to": T0 + dt.timedelta(days=10), "resolution_s": 3600.0,
           "figures": {"orders_per_second": PeakFigure(value=orders, at=T0,
                                                       series="tradestack:client_orders_per_second"),
                       "sessions": PeakFigure(value=sessions, at=T0, series="tradestack:client_sessions")}}
    return ObservedPeak(**(doc | kw))


def test_windows_read_as_prometheus_writes_them():
    assert parse_window("30d") == 30 * 86400 and parse_window("12h") == 43200 and parse_window("2w") == 14 * 86400
    for bad in ("30", "d", "0d", "1.5d", "30y", "-3d"):
        with pytest.raises(InputError):
            parse_window(bad)


def test_lab_survivors_carry_an_observed_peak_twice_over_and_not_more():
    topology = load_topology(LAB)
    assert topology.observed_multiple == 2.0
    # lab.yaml: a site cut off leaves 2 gateways (60/s, 400 sessions each: 120/s, 800) and one router and orderdb
    # primary (120/s); 55/s x 2 = 110 and 310 x 2 = 620 fit
    fits = peak(55, 310)
    report = check_capacity(topology, 1, required=required_with(topology, fits))
    rows = {r.metric: r for r in judge_observed(topology, fits, report)}
    assert report.ok and all(r.ok for r in rows.values())
    assert (rows["orders_per_second"].needed, rows["orders_per_second"].worst_available) == (110, 120)
    assert (rows["sessions"].needed, rows["sessions"].worst_available) == (620, 800)
    # 61/s x 2 = 122 does not: short by 2 wherever a site or the database primary's site is lost
    short = peak(61, 310)
    report = check_capacity(topology, 1, required=required_with(topology, short))
    rows = {r.metric: r for r in judge_observed(topology, short, report)}
    assert not report.ok and not rows["orders_per_second"].ok and rows["sessions"].ok
    assert rows["orders_per_second"].worst_available == 120 and rows["orders_per_second"].worst_scenario
    assert "observed 61 at 2026-11-20 09:30:15 UTC x 2 = 122: short by 2" in rows["orders_per_second"].detail
    failing = report.scenario(int(report.failing[0]))
    assert any(m.required == 122 for r in failing.failing_services.values() for m in r.metrics.values())


def test_a_declared_requirement_above_the_observed_one_stays():
    topology = load_topology(LAB)
    # peak 48 x headroom 2.5 = 120 already; an observed 10/s x 2 asks less and does not lower it
    assert required_with(topology, peak(10, 50))["orders_per_second"] == 120


def test_an_observed_metric_no_service_declares_cannot_pass():
    topology = load_topology(LAB)
    odd = peak(10, 50)
    odd = odd.model_copy(update={"figures": {**odd.figures, "cancels_per_second": PeakFigure(
        value=3, at=T0, series="tradestack:client_cancels_per_second")}})
    report = check_capacity(topology, 1)
    [row] = [r for r in judge_observed(topology, odd, report) if r.metric == "cancels_per_second"]
    assert not row.ok and "no service declares capacity in cancels_per_second" in row.detail


def test_a_peak_file_with_a_short_window_or_a_missing_series_is_refused(tmp_path: Path):
    path = tmp_path / "peak.yaml"
    path.write_text(dump_peak(peak(55, 310)))
    assert load_peak(path).figures["orders_per_second"].value == 55
    short = peak(55, 310, covered_from=T0 - dt.timedelta(days=5))
    assert short.short and "covers 15.0 d of the 30.0 d asked" in short.problems()[0]
    path.write_text(dump_peak(short))
    with pytest.raises(InputError, match="cannot judge capacity against it"):
        load_peak(path)
    path.write_text(dump_peak(peak(55, 310, missing=["tradestack:client_sessions"])))
    with pytest.raises(InputError, match="no sample of tradestack:client_sessions"):
        load_peak(path)
    # within one coarse step of the window is whole
    assert not peak(55, 310, covered_from=T0 - dt.timedelta(days=20) + dt.timedelta(minutes=50)).short


def test_check_observed_fails_naming_the_metric_value_time_and_multiple(tmp_path: Path):
    path = tmp_path / "peak.yaml"
    path.write_text(dump_peak(peak(61, 310)))
    result = CliRunner().invoke(app, ["capacity", "check", str(LAB), "--observed", str(path), "--json"])
    assert result.exit_code == 1, result.output
    doc = json.loads(result.stdout)
    assert not doc["ok"] and doc["observed"]["multiple"] == 2.0
    [orders] = [m for m in doc["observed"]["metrics"] if m["metric"] == "orders_per_second"]
    assert (orders["observed"], orders["needed"], orders["ok"]) == (61, 122, False)
    assert orders["at"] == "2026-11-20T09:30:15+00:00"
    path.write_text(dump_peak(peak(55, 310)))
    result = CliRunner().invoke(app, ["capacity", "check", str(LAB), "--observed", str(path)])
    assert result.exit_code == 0, result.output
    assert "every scenario keeps the observed peak x 2" in result.output


class FakePrometheus:
    """Answers the two questions find_peak asks from a list of raw samples, as Prometheus would: a coarse
    max_over_time at each step end over (end - step, end], and a range selector's raw samples at a time."""

    def __init__(self, samples: dict[str, list[tuple[float, float]]]):
        self.samples, self.asked = samples, []

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[Series]:
        self.asked.append(expr)
        name, rng = expr[len("max_over_time("):-1].split("[")
        width = float(rng.rstrip("s]"))
        points, t = [], start
        while t <= end:
            inside = [v for ts, v in self.samples.get(name, []) if t - width < ts <= t]
            if inside:
                points.append((t, max(inside)))
            t += step_s
        return [Series({}, points)] if points else []

    def query(self, expr: str, at: float | None = None) -> list[Series]:
        self.asked.append(expr)
        name, rng = expr.split("[")
        width = float(rng.rstrip("s]"))
        return [Series({}, [(ts, v) for ts, v in self.samples.get(name, []) if at - width < ts <= at])]


def test_find_peak_returns_the_raw_maximum_and_its_time_and_the_span_covered():
    now = 1_800_000_000.0
    orders = [(now - 86400 * 3 + 15 * k, 5.0) for k in range(3 * 5760)]
    orders[1000] = (orders[1000][0], 42.5)
    orders[9000] = (orders[9000][0], 42.5)  # a tie later: the first one is the peak
    fake = FakePrometheus({"tradestack:client_orders_per_second": orders})
    found = find_peak(fake, "fake", 86400 * 7, now)
    assert found.figures["orders_per_second"].value == 42.5
    assert found.figures["orders_per_second"].at.timestamp() == orders[1000][0]
    assert found.missing == ["tradestack:client_sessions"] and not found.ok
    assert found.covered_from.timestamp() == orders[0][0]
    assert found.short  # 3 days of data in a 7-day window
    assert found.resolution_s == 840  # 7 days over 720 steps: 14 min (rounded up to whole minutes)


def test_the_toolkits_own_requests_say_so():
    assert origin_of([(b"x-tradestack-origin", b"toolkit")]) == "toolkit"
    assert origin_of([(b"x-tradestack-origin", b"TOOLKIT ")]) == "toolkit"
    assert origin_of([(b"x-tradestack-origin", b"someone")]) == "client" and origin_of([]) == "client"


def test_an_unusable_prometheus_is_named():
    with pytest.raises(InputError, match="not a Prometheus URL"):
        Prometheus("198.18.1.20:9090")
    with pytest.raises(PrometheusError, match="did not answer"):
        Prometheus("http://127.0.0.1:9", timeout_s=1).query("up")


def test_the_newest_samples_of_the_window_are_seen():
    """A peak in the last coarse step before `now` (just after load) is the one found: the coarse points end at
    `now` itself."""
    now = 1_800_000_000.0
    orders = [(now - 86400 + 15 * k, 5.0) for k in range(5760)] + [(now - 5, 77.0)]
    found = find_peak(FakePrometheus({"tradestack:client_orders_per_second": orders}), "fake", 86400, now)
    assert found.figures["orders_per_second"].value == 77.0
    assert found.figures["orders_per_second"].at.timestamp() == now - 5


class Silent:
    def query_range(self, *args):
        raise PrometheusError("Prometheus at http://198.18.2.16:9090 did not answer: timed out")

    query = query_range


def test_a_stacks_peak_is_the_highest_any_of_its_prometheus_saw_over_the_span_any_covered():
    now = 1_800_000_000.0
    day = [(now - 86400 + 15 * k, 5.0) for k in range(5760)]
    sz1 = {"tradestack:client_orders_per_second": [*day[:3000], (day[3000][0], 30.0), *day[3001:]],
           "tradestack:client_sessions": [(t, 100.0) for t, _ in day[2000:]]}  # down for its first hours
    hk1 = {"tradestack:client_orders_per_second": [(day[100][0], 44.0)] + day[200:5000],  # away at the end
           "tradestack:client_sessions": [(t, 90.0) for t, _ in day] + [(day[50][0] + 1, 140.0)]}
    found, unanswered = peak_across({"sz1": FakePrometheus(sz1), "hk1": FakePrometheus(hk1), "gone": Silent()},
                                    86400, now)
    assert (found.figures["orders_per_second"].value, found.figures["sessions"].value) == (44.0, 140.0)
    assert found.figures["orders_per_second"].at.timestamp() == day[100][0]
    # the window is (now - 1 day, now]: its first sample is the day's second
    assert found.covered_from.timestamp() == day[1][0] and found.covered_to.timestamp() == day[-1][0]
    assert found.source == "sz1, hk1" and found.ok and found.missing == []
    assert unanswered == ["Prometheus at http://198.18.2.16:9090 did not answer: timed out"]
    with pytest.raises(PrometheusError, match="did not answer"):
        peak_across({"gone": Silent()}, 86400, now)
    # a series missing from one is not missing while another has it
    only_orders = {"tradestack:client_orders_per_second": day}
    found, _ = peak_across({"a": FakePrometheus(only_orders), "b": FakePrometheus(hk1)}, 86400, now)
    assert found.missing == [] and found.figures["sessions"].value == 140.0
    found, _ = peak_across({"a": FakePrometheus(only_orders)}, 86400, now)
    assert found.missing == ["tradestack:client_sessions"] and not found.ok


@pytest.mark.parametrize("args", [[], ["--stack", "lab", "--prometheus", "http://198.18.1.20:9090"]])
def test_capacity_peak_asks_for_one_source(args):
    r = CliRunner().invoke(app, ["capacity", "peak", *args, "--json"])
    assert r.exit_code == 2 and json.loads(r.stdout)["errors"] == [
        "give --stack NAME (its own Prometheus) or --prometheus URL"], r.output
