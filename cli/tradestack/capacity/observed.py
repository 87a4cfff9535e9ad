"""The peak clients were observed to reach, and whether the capacity that survives a failure carries it.

`capacity peak` reads the estate's Prometheus: for each metric, the recording rule of the stack's client total
(infra/monitoring/rules: the gateways' counters and gauges summed, the toolkit's own traffic left out), its
largest sample over the window and when it was taken, and the span the data actually covers. Two questions per
metric, whatever the window: the window's maximum of `max_over_time` over a few hundred coarse steps, then that
step's raw samples (a range selector at the step's end), which give the exact value and time.

`capacity check --observed FILE` requires of every service declaring a metric that what survives each failure
scenario carries the observed peak x the topology's `observed_multiple` as well as peak x headroom.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..adapters.prometheus import PrometheusError
from ..errors import InputError
from ..topology.model import Metric, Topology
from ..yamlsource import load_yaml, validate_model
from .report import CapacityReport

# metric (as topologies name it) -> the recording rule holding the stack's client total
RECORDED: dict[str, str] = {"orders_per_second": "tradestack:client_orders_per_second",
                            "sessions": "tradestack:client_sessions"}
COARSE_POINTS = 720   # steps over the window in the first question (an hour each over 30 days)
MIN_STEP_S = 60


class Queries(Protocol):
    """What is asked of Prometheus (adapters.prometheus.Prometheus)."""

    def query(self, expr: str, at: float | None = None) -> list: ...  # list[Series]

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list: ...


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PeakFigure(_Strict):
    value: Annotated[float, Field(ge=0)]
    at: dt.datetime                      # when the largest sample was taken (UTC)
    series: str                          # the recording rule it was read from


class ObservedPeak(_Strict):
    """What `capacity peak` found; its peak file (`--write FILE`) is this document."""

    source: str                          # the Prometheus asked
    window_from: dt.datetime
    window_to: dt.datetime
    covered_from: dt.datetime | None     # the first and last sample found in the window, over every metric
    covered_to: dt.datetime | None
    resolution_s: float                  # coverage is judged to within this (one coarse step)
    figures: dict[Metric, PeakFigure]
    missing: list[str] = []              # recording rules with no sample in the window

    @property
    def window_s(self) -> float:
        return (self.window_to - self.window_from).total_seconds()

    @property
    def covered_s(self) -> float:
        if self.covered_from is None or self.covered_to is None:
            return 0.0
        return (self.window_to - self.covered_from).total_seconds()

    @property
    def short(self) -> bool:
        """The data begins later than the window asked (Debian's Prometheus keeps 15 days unless told)."""
        return self.covered_s + self.resolution_s < self.window_s

    @property
    def ok(self) -> bool:
        return bool(self.figures) and not self.missing and not self.short

    def problems(self) -> list[str]:
        out = [f"no sample of {series} in the window" for series in self.missing]
        if self.short:
            out.append(f"the data covers {_span(self.covered_s)} of the {_span(self.window_s)} asked "
                       f"(first sample {_stamp(self.covered_from) if self.covered_from else 'none'})")
        return out


def find_peak(prometheus: Queries, source: str, window_s: float, now: float,
              recorded: Mapping[str, str] = RECORDED) -> ObservedPeak:
    """The largest sample of each recorded total over the `window_s` seconds before `now` (epoch seconds)."""
    if window_s <= 0:
        raise InputError("the window must be longer than nothing")
    step = max(MIN_STEP_S, math.ceil(window_s / COARSE_POINTS / MIN_STEP_S) * MIN_STEP_S)
    start = now - window_s
    # coarse points end at `now` itself, each the max of the step before it: the newest samples are seen too
    first_point = now - (max(1, math.floor(window_s / step)) - 1) * step
    figures: dict[str, PeakFigure] = {}
    missing: list[str] = []
    first: list[float] = []
    last: list[float] = []
    for metric, series in recorded.items():
        coarse = _samples(prometheus.query_range(f"max_over_time({series}[{step}s])", first_point, now, step))
        if not coarse:
            missing.append(series)
            continue
        peak_step = max(coarse, key=lambda s: (s[1], -s[0]))[0]
        raw = _within(_samples(prometheus.query(f"{series}[{step}s]", at=peak_step)), start, now)
        if not raw:  # the coarse answer saw a sample there: the raw question must too
            missing.append(series)
            continue
        at, value = max(raw, key=lambda s: (s[1], -s[0]))
        figures[metric] = PeakFigure(value=value, at=_utc(at), series=series)
        earliest = _within(_samples(prometheus.query(f"{series}[{step}s]", at=coarse[0][0])), start, now)
        latest = _within(_samples(prometheus.query(f"{series}[{step}s]", at=coarse[-1][0])), start, now)
        first.append(min(t for t, _ in earliest or raw))
        last.append(max(t for t, _ in latest or raw))
    return ObservedPeak(source=source, window_from=_utc(start), window_to=_utc(now),
                        covered_from=_utc(min(first)) if first else None,
                        covered_to=_utc(max(last)) if last else None,
                        resolution_s=float(step), figures=figures, missing=missing)


def peak_across(sources: Mapping[str, Queries], window_s: float, now: float) -> tuple[ObservedPeak, list[str]]:
    """The peak over every Prometheus of a stack that answers (merge_peaks), and what those that did not said;
    PrometheusError when none answered."""
    peaks, unanswered = [], []
    for source, prometheus in sources.items():
        try:
            peaks.append(find_peak(prometheus, source, window_s, now))
        except PrometheusError as exc:
            unanswered.append(str(exc))
    if not peaks:
        raise PrometheusError("; ".join(unanswered) or "no Prometheus to ask")
    return merge_peaks(peaks), unanswered


def merge_peaks(peaks: Sequence[ObservedPeak]) -> ObservedPeak:
    """One peak from several Prometheus that watched the same stack (one per site): per metric the highest any
    saw (one that was down for a while missed what the others saw), the span any of them covers; a series is
    missing only when none had it."""
    if not peaks:
        raise InputError("no Prometheus answered")
    first = peaks[0]
    figures: dict[str, PeakFigure] = {}
    for peak in peaks:
        for metric, figure in peak.figures.items():
            if metric not in figures or figure.value > figures[metric].value:
                figures[metric] = figure
    starts = [p.covered_from for p in peaks if p.covered_from is not None]
    ends = [p.covered_to for p in peaks if p.covered_to is not None]
    return first.model_copy(update={
        "source": ", ".join(p.source for p in peaks), "figures": figures,
        "covered_from": min(starts) if starts else None, "covered_to": max(ends) if ends else None,
        "resolution_s": max(p.resolution_s for p in peaks),
        "missing": [m for m in first.missing if all(m in p.missing for p in peaks)]})


def _samples(series: list) -> list[tuple[float, float]]:
    return sorted(s for one in series for s in one.samples)


def _within(samples: list[tuple[float, float]], start: float, end: float) -> list[tuple[float, float]]:
    return [(t, v) for t, v in samples if start < t <= end]


def _utc(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC)


def _stamp(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds:.0f} s"


def parse_window(text: str) -> float:
    """`30d`, `12h`, `90m`, `45s` (Prometheus's own units, one of them) as seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit() or int(number) == 0:
        raise InputError(f"not a window: {text!r} (a whole number and one of s, m, h, d, w: e.g. 30d)")
    return float(int(number) * units[unit])


def dump_peak(peak: ObservedPeak) -> str:
    import yaml

    head = (f"# The peak clients were observed to reach over {_span(peak.window_s)}, read from {peak.source} by\n"
            "# `tradestack capacity peak`. Check a topology against it:\n"
            "# `tradestack capacity check TOPOLOGY --observed THIS_FILE`.\n")
    return head + yaml.safe_dump(peak.model_dump(mode="json"), sort_keys=False)


def load_peak(path: Path) -> ObservedPeak:
    """A peak file written by `capacity peak --write`; errors name file and line."""
    doc = load_yaml(Path(path), InputError)
    peak = validate_model(ObservedPeak, doc, InputError)
    if not peak.ok:
        raise InputError([f"{path}: cannot judge capacity against it: {p}" for p in peak.problems()])
    return peak


@dataclass(frozen=True)
class ObservedRow:
    """One metric: the observed peak x multiple against the least any failure scenario leaves of it."""

    metric: str
    observed: float
    at: dt.datetime
    multiple: float
    needed: float                     # observed x multiple
    declared_required: float | None   # the topology's peak x headroom, when it declares the metric
    worst_available: float | None     # the least capacity any scenario leaves, over the services declaring it
    worst_service: str | None
    worst_scenario: list[str] | None  # its failed risk groups ([] = intact)
    ok: bool
    detail: str


def required_with(topology: Topology, peak: ObservedPeak) -> dict[str, float]:
    """Each metric's requirement: peak x headroom, raised to the observed peak x observed_multiple."""
    out = {m: topology.required(m) for m in topology.peak}
    for metric, figure in peak.figures.items():
        out[metric] = max(out.get(metric, 0.0), figure.value * topology.observed_multiple)
    return out


def judge_observed(topology: Topology, peak: ObservedPeak, report: CapacityReport) -> list[ObservedRow]:
    """Each observed metric against what the report's scenarios leave of it (computed from the scenarios' instances
    up, not from the report's own verdicts)."""
    rows = []
    for metric, figure in sorted(peak.figures.items()):
        needed = figure.value * topology.observed_multiple
        declared = topology.required(metric) if metric in topology.peak else None
        worst: tuple[float, str, int] | None = None
        for j, spec in enumerate(report.services):
            if metric not in spec.capacity or spec.kind == "quorum":
                continue
            up = report.up_instances[:, j]
            available = spec.capacity[metric] * (up if spec.kind == "stateless" else (up > 0))
            i = int(np.argmin(available))
            if worst is None or float(available[i]) < worst[0]:
                worst = (float(available[i]), spec.name, i)
        if worst is None:
            rows.append(ObservedRow(metric, figure.value, figure.at, topology.observed_multiple, needed, declared,
                                    None, None, None, False,
                                    f"no service declares capacity in {metric}: nothing to judge the observed "
                                    "peak against"))
            continue
        available, service, i = worst
        ok = available + 1e-9 >= needed
        scenario = report.failed_groups(i)
        where = "with nothing failed" if not scenario else "with " + ", ".join(scenario) + " failed"
        detail = (f"{service} keeps {available:g} {where}; observed {figure.value:g} at {_stamp(figure.at)} "
                  f"x {topology.observed_multiple:g} = {needed:g}"
                  + ("" if ok else f": short by {needed - available:g}"))
        rows.append(ObservedRow(metric, figure.value, figure.at, topology.observed_multiple, needed, declared,
                                available, service, scenario, ok, detail))
    return rows
