"""`capacity peak` against a real Prometheus holding a month of synthetic history with known maxima, and
`capacity check --observed` on the peak file it writes. The recording rules those series stand for are checked
by promtool (test_monitoring_rules.py)."""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tradestack.cli.app import app

from .promhistory import build_blocks, serving, write_openmetrics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "infra" / "topologies" / "lab.yaml"
DAY = 86400
STEP = 60  # a sample a minute (the benchmark writes 15 s ones)

# the known answers, placed in the history below; every other sample is lower
ORDERS_PEAK, ORDERS_DAY, ORDERS_AT = 55.5, 17, 10 * 3600 + 60           # day 17, 10:01 into the day
SESSIONS_PEAK, SESSIONS_DAY, SESSIONS_AT = 312.0, 23, 14 * 3600          # day 23, 14:00 into the day
OLDER_PEAK = 70.0         # on day 0, more than 30 days ago: outside a 30-day window
TOOLKIT_SPIKE = 500.0     # a drill's load, recorded apart: never the clients' peak


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory):
    """31 days of daily peaks ending five minutes ago, served by Prometheus; the known peaks' times."""
    work = tmp_path_factory.mktemp("observed-peak")
    end = int(time.time()) // STEP * STEP - 300
    start = end - 31 * DAY
    orders, sessions, toolkit = [], [], []
    for t in range(start + STEP, end + 1, STEP):
        day, sec = divmod(t - start, DAY)
        bump = math.exp(-((sec - 36000) / 3600) ** 2) * (0.9 + 0.002 * day)   # at most 0.96
        orders.append((t, round(4 + 40 * bump, 3)))                           # at most 42.4
        sessions.append((t, round(40 + 200 * bump)))                          # at most 232
        toolkit.append((t, 0.0))

    def put(samples: list[tuple[int, float]], day: int, sec: int, value: float) -> int:
        t = start + day * DAY + sec
        samples[(t - start) // STEP - 1] = (t, value)
        return t

    at = {"orders": put(orders, ORDERS_DAY, ORDERS_AT, ORDERS_PEAK),
          "sessions": put(sessions, SESSIONS_DAY, SESSIONS_AT, SESSIONS_PEAK)}
    put(orders, 0, 36000, OLDER_PEAK)
    put(toolkit, 25, 36000, TOOLKIT_SPIKE)
    om = work / "history.om"
    write_openmetrics(om, {"tradestack:client_orders_per_second": orders, "tradestack:client_sessions": sessions,
                           "tradestack:toolkit_orders_per_second": toolkit})
    build_blocks(om, work / "data")
    om.unlink()
    with serving(work / "data", work) as url:
        yield {"url": url, "at": at, "start": start, "work": work}


def _peak(url: str, *args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(app, ["capacity", "peak", "--prometheus", url, "--json", *args])
    return result.exit_code, json.loads(result.stdout)


def _utc(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).isoformat().replace("+00:00", "Z")


def test_the_peak_over_30_days_is_the_known_one_at_its_time(history):
    path = history["work"] / "peak.yaml"
    rc, doc = _peak(history["url"], "--window", "30d", "--write", str(path))
    assert rc == 0 and doc["ok"], doc
    figures = doc["figures"]
    # the larger value of day 0 is older than the window; the toolkit's spike is not the clients'
    assert figures["orders_per_second"]["value"] == ORDERS_PEAK
    assert figures["orders_per_second"]["at"] == _utc(history["at"]["orders"])
    assert figures["sessions"]["value"] == SESSIONS_PEAK
    assert figures["sessions"]["at"] == _utc(history["at"]["sessions"])
    assert doc["problems"] == [] and doc["covered_s"] >= 30 * DAY - 3600
    written = yaml.safe_load(path.read_text())
    assert written["figures"]["orders_per_second"]["value"] == ORDERS_PEAK


def test_a_window_longer_than_the_history_fails_and_says_what_it_covers(history):
    rc, doc = _peak(history["url"], "--window", "45d")
    assert rc == 1 and not doc["ok"]
    assert doc["figures"]["orders_per_second"]["value"] == OLDER_PEAK  # day 0 is inside 45 days
    [problem] = doc["problems"]
    assert "covers 31.0 d of the 45.0 d asked" in problem, problem


def test_lab_carries_the_observed_peak_twice_and_a_stricter_multiple_fails(history, tmp_path: Path):
    path = history["work"] / "peak-check.yaml"
    rc, _ = _peak(history["url"], "--window", "30d", "--write", str(path))
    assert rc == 0
    runner = CliRunner()
    # lab.yaml: 55.5 x 2 = 111 orders/s and 312 x 2 = 624 sessions; a site cut off keeps 120/s and 800
    result = runner.invoke(app, ["capacity", "check", str(LAB), "--observed", str(path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["observed"]["ok"] is True
    stricter = tmp_path / "stricter.yaml"
    stricter.write_text(LAB.read_text().replace("observed_multiple: 2.0", "observed_multiple: 2.5"))
    result = runner.invoke(app, ["capacity", "check", str(stricter), "--observed", str(path)])
    assert result.exit_code == 1, result.output
    when = dt.datetime.fromtimestamp(history["at"]["orders"], tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f"observed 55.5 at {when} x 2.5 = 138.75: short by 18.75" in " ".join(result.output.split())
