"""Every drill run of a stack, kept in SQLite beside its reports (auditors read this as evidence)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..paths import state_dir


def drills_dir(stack: str) -> Path:
    """Reports and history outlive the stack's lab (destroying a lab must not destroy audit evidence)."""
    return state_dir() / "drills" / stack


def _connect(stack: str) -> sqlite3.Connection:
    directory = drills_dir(stack)
    directory.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(directory / "history.sqlite")
    conn.execute("CREATE TABLE IF NOT EXISTS runs (run TEXT PRIMARY KEY, drill TEXT, stack TEXT, started REAL, "
                 "ended REAL, verdict TEXT, report TEXT)")
    return conn


@dataclass(frozen=True)
class RunRow:
    run: str
    drill: str
    started: float
    ended: float
    verdict: str
    recovery_s: float | None
    acked_lost: int | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def record(report: dict[str, Any]) -> None:
    with _connect(report["stack"]) as conn:
        conn.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (report["run"], report["drill"], report["stack"], report["started"], report["ended"],
                      report["verdict"], json.dumps(report)))


def runs(stack: str, drill: str | None = None) -> list[RunRow]:
    """Newest first."""
    with _connect(stack) as conn:
        rows = conn.execute("SELECT run, drill, started, ended, verdict, report FROM runs "
                            "WHERE (? IS NULL OR drill = ?) ORDER BY started DESC", (drill, drill)).fetchall()
    out = []
    for run, name, started, ended, verdict, text in rows:
        report = json.loads(text)
        rec = report.get("reconciliation") or {}
        lost = rec["acked_missing"]["count"] if rec else None
        out.append(RunRow(run, name, started, ended, verdict, (report.get("figures") or {}).get("recovery_s"), lost))
    return out


def load(stack: str, run: str) -> dict[str, Any]:
    with _connect(stack) as conn:
        row = conn.execute("SELECT report FROM runs WHERE run = ?", (run,)).fetchone()
    if row is None:
        raise InputError(f"no drill run {run!r} on stack {stack!r} (see `tradestack drill history --stack {stack}`)")
    return dict(json.loads(row[0]))
