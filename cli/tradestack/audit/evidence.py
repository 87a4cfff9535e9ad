"""EVD-01's judgement, pure: does a drill's run history prove it was tested recently?

Missing evidence is a finding, never a pass: a drill that never ran, or never passed, or whose last
pass is older than the allowed age, fails the control with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

DAY = 86400.0


@dataclass(frozen=True)
class Run:
    run: str
    started: float   # epoch seconds
    verdict: str


@dataclass(frozen=True)
class DrillEvidence:
    drill: str
    runs: int
    last_run: str | None
    last_verdict: str | None
    last_age_days: float | None
    last_pass_age_days: float | None
    finding: str | None          # None: the evidence holds

    @property
    def ok(self) -> bool:
        return self.finding is None

    def summary(self) -> str:
        if self.last_run is None:
            return f"{self.drill}: never run"
        passed = ("never passed" if self.last_pass_age_days is None
                  else f"last pass {self.last_pass_age_days:.2f} days ago")
        return (f"{self.drill}: last run {self.last_run}, {self.last_verdict}, {self.last_age_days:.2f} days ago; "
                f"{passed}; {self.runs} run(s)")


def judge(drill: str, runs: list[Run], now: float, max_age_days: float) -> DrillEvidence:
    """Judge one drill's history (any order) against the evidence age."""
    ordered = sorted(runs, key=lambda r: r.started, reverse=True)
    last = ordered[0] if ordered else None
    passing = next((r for r in ordered if r.verdict == "pass"), None)
    age = (now - last.started) / DAY if last else None
    pass_age = (now - passing.started) / DAY if passing else None
    if last is None:
        finding = f"no run of {drill} in the drill history: no evidence it was ever tested"
    elif passing is None:
        finding = f"{len(ordered)} run(s) of {drill}, none passing (latest: {last.verdict})"
    elif pass_age is not None and pass_age > max_age_days:
        finding = f"last passing run of {drill} is {pass_age:.1f} days old (max {max_age_days:g})"
    else:
        finding = None
    return DrillEvidence(drill, len(ordered), last.run if last else None, last.verdict if last else None,
                         age, pass_age, finding)
