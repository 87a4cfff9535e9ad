"""EVD-01's judgement, pure: does a stack's drill history prove each catalogue drill was tested, recently and as
written, at the declared peak?

A run counts as evidence for a catalogue drill only when its definition's digest is that catalogue drill's (a
renamed, edited or token-load copy named like it does not count), it passed with every check judged (none
failed, the engine's own checks present), its load was at least the topology's declared peak, it records the
tool that ran it, and it is younger than the evidence age. Missing evidence is a finding, never a pass; each
drill's judgement names the run that counts, and why every other run of it does not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DAY = 86400.0
# checks every drill run must have judged (the engine's own): a run without them proves nothing
ENGINE_CHECKS = ("the load ran as planned", "the stack was watched", "reconciliation ran")


@dataclass(frozen=True)
class Run:
    """One drill run as its history row and report recorded it."""

    run: str
    drill: str
    started: float   # epoch seconds
    verdict: str
    digest: str | None = None            # the definition's SHA-256 (drills.model.Drill.digest)
    rate: float | None = None            # orders/s the clients were planned to send
    sessions: int | None = None
    tool: str | None = None              # "tradestack X.Y"
    checks: tuple[tuple[str, bool], ...] = ()

    @classmethod
    def from_report(cls, report: dict[str, Any]) -> Run:
        plan = report.get("plan") or {}
        return cls(report["run"], report["drill"], float(report["started"]), report["verdict"],
                   report.get("definition_digest"), plan.get("rate"), plan.get("sessions"), report.get("tool"),
                   tuple((c["check"], bool(c["ok"])) for c in report.get("checks") or []))


@dataclass(frozen=True)
class Wanted:
    """A catalogue drill as this stack must have tested it."""

    drill: str
    digest: str
    rate: float          # the topology's declared peak orders/s (x the drill's share of it)
    sessions: int


def rejection(run: Run, wanted: Wanted, now: float, max_age_days: float) -> str | None:
    """Why `run` is not evidence for `wanted` (None: it is)."""
    if run.digest != wanted.digest:
        return ("its definition differs from the catalogue's" if run.digest else
                "it records no definition digest (run before runs were bound to their definition)")
    if run.verdict != "pass":
        return f"its verdict is {run.verdict}"
    failed = [name for name, ok in run.checks if not ok]
    if failed:
        return f"checks failed: {', '.join(failed)}"
    missing = [c for c in ENGINE_CHECKS if c not in {name for name, _ in run.checks}]
    if missing:
        return f"not judged: {', '.join(missing)}"
    if run.rate is None or run.sessions is None or run.rate < wanted.rate or run.sessions < wanted.sessions:
        return (f"its load ({run.rate} orders/s, {run.sessions} sessions) is below the declared peak "
                f"({wanted.rate:g} orders/s, {wanted.sessions} sessions)")
    if not run.tool:
        return "it records no tool version"
    age = (now - run.started) / DAY
    if age > max_age_days:
        return f"it is {age:.1f} days old (max {max_age_days:g})"
    return None


@dataclass(frozen=True)
class DrillEvidence:
    drill: str
    counting: Run | None                         # the newest run that counts
    rejected: list[tuple[str, str]] = field(default_factory=list)   # (run, why it does not count), newest first
    finding: str | None = None                   # None: the evidence holds

    @property
    def ok(self) -> bool:
        return self.finding is None

    def summary(self) -> str:
        """The run that counts (or the finding), then every run that does not and why."""
        head = f"counts: {self.counting.run}" if self.counting is not None else str(self.finding)
        return head + "".join(f"; {run} does not count: {why}" for run, why in self.rejected)


def judge(wanted: Wanted, runs: list[Run], now: float, max_age_days: float) -> DrillEvidence:
    """Judge a stack's runs (any order, any drill) as evidence for one catalogue drill. Runs named like it or
    carrying its digest are considered; the newest that counts is the evidence."""
    mine = sorted((r for r in runs if r.drill == wanted.drill or r.digest == wanted.digest),
                  key=lambda r: r.started, reverse=True)
    counting: Run | None = None
    rejected: list[tuple[str, str]] = []
    for run in mine:
        why = rejection(run, wanted, now, max_age_days)
        if why is None and counting is None:
            counting = run
        elif why is not None:
            rejected.append((run.run, why))
    if counting is not None:
        finding = None
    elif not mine:
        finding = f"no run of {wanted.drill} in the drill history: no evidence it was ever tested"
    else:
        finding = f"none of {len(mine)} run(s) of {wanted.drill} counts as evidence"
    return DrillEvidence(wanted.drill, counting, rejected, finding)
