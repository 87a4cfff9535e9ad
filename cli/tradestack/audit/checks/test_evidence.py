"""Evidence of testing: every catalogue drill has a recent passing run in the stack's drill history.

A drill with no run is a failure of this control, not a skip: an auditor reads a pass as "tested".
"""

from __future__ import annotations

import sqlite3
import time

import pytest

from tradestack.audit.evidence import Run, judge


@pytest.mark.control("EVD-01")
@pytest.mark.targets("drill", lambda ctx: ctx["catalogue_drills"])
def test_each_catalogue_drill_has_a_recent_passing_run(audit, evidence, drill):
    history = audit["drill_history"]
    runs: list[Run] = []
    if history:
        with sqlite3.connect(f"file:{history}?mode=ro", uri=True) as conn:
            runs = [Run(*row) for row in conn.execute("SELECT run, started, verdict FROM runs WHERE drill = ?",
                                                      (drill,))]
    judged = judge(drill, runs, time.time(), audit["evidence_max_age_days"])
    evidence.note("drill history", f"runs of {drill} ({history or 'no history file'})", judged.summary())
    assert judged.ok, judged.finding
