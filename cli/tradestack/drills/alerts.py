"""What the on-call was sent during a drill: Alertmanager's webhook notifications, as the drill's receiver on the
clients host logged them (refstack/alertsink.py), judged against the alerts the drill expects (pure).

An alert is notified when the first notification with it firing arrives after the fault; resolved when every
instance of it that fired (one per site or host: its labels) has been sent as resolved, timed from the restore
(before it, negative, when the stack healed itself while the fault was held: a promoted standby, a moved VIP)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .model import ExpectedAlert


@dataclass(frozen=True)
class Notification:
    received: float            # epoch seconds, on the clients host
    alert: str
    status: str                # firing | resolved
    labels: tuple[tuple[str, str], ...]


def parse_log(text: str) -> list[Notification]:
    """The receiver's log: one JSON line per webhook call, {"received": t, "notification": Alertmanager's body}."""
    out: list[Notification] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            alerts = entry["notification"].get("alerts") or []
            received = float(entry["received"])
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # a torn last line (the receiver stopped mid-write) or a stranger's POST
        for a in alerts:
            labels = dict(a.get("labels") or {})
            out.append(Notification(received, str(labels.get("alertname", "?")), str(a.get("status", "firing")),
                                    tuple(sorted(labels.items()))))
    return sorted(out, key=lambda n: n.received)


def still_firing(notifications: Iterable[Notification], names: Iterable[str]) -> set[str]:
    """Which of `names` has an instance (its labels) whose latest notification says firing."""
    wanted = set(names)
    latest: dict[tuple[str, tuple[tuple[str, str], ...]], bool] = {}
    for n in notifications:
        if n.alert in wanted:
            latest[(n.alert, n.labels)] = n.status == "firing"
    return {alert for (alert, _), firing in latest.items() if firing}


@dataclass
class AlertTimes:
    alert: str
    notified_s: float | None = None    # after the fault
    resolved_s: float | None = None    # after the restore (negative: the stack healed before it)
    instances: int = 0                 # how many of it fired (by labels)
    expected: ExpectedAlert | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"alert": self.alert, "notified_s": _r(self.notified_s),
                               "resolved_s": _r(self.resolved_s), "instances": self.instances}
        if self.expected is not None:
            out |= {"notified_within_s": self.expected.notified_within_s,
                    "resolved_within_s": self.expected.resolved_within_s}
        return out


@dataclass
class AlertFigures:
    expected: list[AlertTimes]
    unexpected: list[AlertTimes]
    notifications: int
    events: list[dict[str, Any]] = field(default_factory=list)   # for the timeline: t, alert, status

    def to_dict(self) -> dict[str, Any]:
        return {"expected": [a.to_dict() for a in self.expected],
                "unexpected": [a.to_dict() for a in self.unexpected],
                "notifications": self.notifications, "events": self.events}


def judge(expected: Iterable[ExpectedAlert], notifications: list[Notification], injected: float,
          restored: float, since: float) -> AlertFigures:
    """Times of each alert notified after `since` (the load's start: what was firing before is not the drill's):
    its first firing notification after the fault, and when every instance that fired was resolved."""
    seen = [n for n in notifications if n.received >= since]
    times: dict[str, AlertTimes] = {}
    firing: dict[str, dict[tuple[tuple[str, str], ...], bool]] = {}
    for n in seen:
        t = times.setdefault(n.alert, AlertTimes(n.alert))
        instances = firing.setdefault(n.alert, {})
        if n.status == "firing":
            if t.notified_s is None and n.received >= injected:
                t.notified_s = n.received - injected
            instances[n.labels] = True
            t.instances = len(instances)
            t.resolved_s = None
        elif n.labels in instances:
            instances[n.labels] = False
            if not any(instances.values()):
                t.resolved_s = n.received - restored   # negative: resolved while the fault was still held
    wanted = list(expected)
    names = {e.alert for e in wanted}
    out_expected = []
    for e in wanted:
        t = times.get(e.alert, AlertTimes(e.alert))
        t.expected = e
        out_expected.append(t)
    unexpected = [t for name, t in sorted(times.items()) if name not in names and t.instances]
    events = [{"t": n.received, "alert": n.alert, "status": n.status,
               "labels": {k: v for k, v in n.labels if k not in ("alertname", "severity", "job", "instance")}}
              for n in seen]
    return AlertFigures(out_expected, unexpected, len(seen), events)


def checks(figures: AlertFigures | None, expected: list[ExpectedAlert], problem: str | None) -> list[dict[str, Any]]:
    """One check per expected alert's notification and resolution; none when nothing was expected. A drill that
    expects alerts and heard nothing judgeable (no receiver, no monitoring) fails each with why."""
    out: list[dict[str, Any]] = []
    for e in expected:
        t = next((a for a in figures.expected if a.alert == e.alert), None) if figures else None
        notified = None if t is None else t.notified_s
        resolved = None if t is None else t.resolved_s
        why = problem or ("never notified" if notified is None else None)
        out.append({"check": f"alert {e.alert} notified", "expected": f"<= {e.notified_within_s:g} s after the fault",
                    "actual": why or f"{notified:.1f} s", "ok": why is None and notified <= e.notified_within_s})
        why = problem or ("never notified" if notified is None else "not resolved" if resolved is None else None)
        actual = why or (f"{resolved:.1f} s" if resolved >= 0 else f"{-resolved:.1f} s before the restore")
        out.append({"check": f"alert {e.alert} resolved", "expected": f"<= {e.resolved_within_s:g} s after the restore",
                    "actual": actual, "ok": why is None and resolved <= e.resolved_within_s})
    return out


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 2)
