"""Evidence of testing: every catalogue drill has a recent passing run, of its own definition, at the declared peak,
with every check judged, in the stack's drill history.

A drill with no such run is a failure of this control, not a skip: an auditor reads a pass as "tested".
"""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from tradestack.audit.evidence import Run, Wanted, judge


@pytest.mark.control("EVD-01")
@pytest.mark.targets("drill", lambda ctx: [d["drill"] for d in ctx["catalogue_drills"]])
def test_each_catalogue_drill_has_a_run_that_counts_as_evidence(audit, evidence, drill):
    wanted = Wanted(**next(d for d in audit["catalogue_drills"] if d["drill"] == drill))
    history = audit["drill_history"]
    runs: list[Run] = []
    if history:
        with sqlite3.connect(f"file:{history}?mode=ro", uri=True) as conn:
            runs = [Run.from_report(json.loads(text)) for (text,) in conn.execute("SELECT report FROM runs")]
    judged = judge(wanted, runs, time.time(), audit["evidence_max_age_days"])
    evidence.note("drill history", f"runs of {drill} ({history or 'no history file'})", judged.summary())
    assert judged.ok, judged.summary()
