"""Evidence of testing: every catalogue drill has a recent passing run in the stack's drill history."""

from __future__ import annotations

import sqlite3
import time

import pytest


@pytest.mark.control("EVD-01")
@pytest.mark.targets("drill", lambda ctx: ctx["catalogue_drills"])
def test_each_catalogue_drill_has_a_recent_passing_run(audit, evidence, drill):
    history, max_age_days = audit["drill_history"], audit["evidence_max_age_days"]
    runs = []
    if history:
        with sqlite3.connect(f"file:{history}?mode=ro", uri=True) as conn:
            runs = conn.execute("SELECT run, started, verdict FROM runs WHERE drill = ? ORDER BY started DESC",
                                (drill,)).fetchall()
    evidence.note("drill history", f"runs of {drill}", runs[:5] or "none")
    if not runs:
        pytest.skip(f"no run of {drill} in the drill history yet: no evidence either way")
    passing = [r for r in runs if r[2] == "pass"]
    assert passing, f"{len(runs)} run(s) of {drill}, none passing (latest: {runs[0][2]})"
    age_days = (time.time() - passing[0][1]) / 86400
    assert age_days <= max_age_days, f"last passing run of {drill} is {age_days:.1f} days old (max {max_age_days})"
