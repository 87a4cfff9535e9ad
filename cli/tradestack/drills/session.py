"""The one frame every run that breaks a stack goes through: drills and capacity verify alike.

It holds the stack's lock, refuses a stack that is not steady before anything is touched, turns SIGINT and
SIGTERM into an interrupt for as long as it runs, applies faults through the substrate and journals each, and
undoes every fault still applied whatever happened (an error, an abort, Ctrl-C, SIGTERM), newest first, each
tried even when one fails, with a second signal noted and not obeyed while it does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..substrates import Substrate, open_stack
from ..substrates.faults import Fault
from . import actions, interrupts
from .errors import DrillRefused
from .journal import Journal
from .lock import stack_lock
from .steady import steady_problems, wait_steady

Phase = Callable[[str, str], None]


def guarded(handler: Callable[..., None]) -> Callable[..., None]:
    """`handler` that can never raise: a broken progress handler (a bar, a log) must never break a run or skip a
    restore."""
    def call(*args: object) -> None:
        try:
            handler(*args)
        except Exception:
            pass
    return call


class FaultSession:
    """Faults applied to one stack, journalled, and what is still to undo."""

    def __init__(self, substrate: Substrate, journal: Journal, phase: Phase):
        self.substrate = substrate
        self.journal = journal
        self.phase = phase
        self.applied: list[actions.Action] = []

    def inject(self, fault: Fault, spike: actions.SpikeLoad | None = None) -> tuple[actions.Action, float] | None:
        """Resolve the fault against the stack now and apply it: the action and when it started biting; None when
        that failed (a failed journal step; whatever was applied is still undone at the end)."""
        done: tuple[actions.Action, float] | None = None
        with self.journal.step(f"inject: {fault.describe()}") as s:
            action = actions.prepare(fault, self.substrate, spike=spike)
            s.detail = action.text
            self.applied.append(action)
            biting = time.time()  # resolving it (which node, which link) may take seconds on a busy stack
            self.journal.marks.setdefault("injected", biting)
            action.inject()
            done = (action, biting)
            self.phase("fault", action.text)
        return done

    def restore(self, action: actions.Action) -> None:
        self.phase("restore", action.text)
        try:
            with self.journal.step(f"restore: {action.text}") as s:
                s.detail = action.restore(lambda text: self.phase("restore", text)) or ""
        finally:
            self.applied.remove(action)

    def restore_all(self) -> None:
        """Undo whatever is still applied, newest first; every restore is tried even if one fails (each failure is
        a failed journal step)."""
        if self.applied:
            self.phase("restore", f"undoing {len(self.applied)} fault(s)")
        for action in reversed(list(self.applied)):
            self.restore(action)
        self.journal.marks["restored"] = time.time()

    @contextmanager
    def running(self, wind_down: Callable[[], None] = lambda: None) -> Iterator[None]:
        """Run the body. An interrupt inside it is noted (the run ends in restore, not in a traceback); then,
        whatever happened, every applied fault is undone and `wind_down` runs (stop the clients, wait for steady),
        a second Ctrl-C or SIGTERM meanwhile noted, not obeyed."""
        try:
            yield
        except KeyboardInterrupt as exc:
            self.journal.interrupted = self.journal.interrupted or str(exc) or "SIGINT"
        finally:
            with interrupts.deferred(self.journal):
                self.restore_all()
                wind_down()


@contextmanager
def session(stack: str, *, steady_within_s: float, phase: Phase = lambda name, detail="": None,
            what: str = "the drill", opened: Substrate | None = None) -> Iterator[FaultSession]:
    """The stack locked and steady (else DrillRefused, nothing touched), signals raised as interrupts. `opened`:
    the stack already opened by this command (what it is made of is read once per command)."""
    phase = guarded(phase)
    with stack_lock(stack):
        substrate = opened if opened is not None else open_stack(stack)
        phase("preflight", "checking the stack is steady")
        problems = steady_problems(substrate)
        if problems:
            phase("preflight", f"waiting up to {steady_within_s:g} s for a steady stack: " + "; ".join(problems[:3]))
            problems = wait_steady(substrate, steady_within_s)
        if problems:
            raise DrillRefused(f"the stack is not in its steady state after {steady_within_s:g} s, so {what} "
                               f"touched nothing: " + "; ".join(problems[:8]))
        journal = Journal()
        with interrupts.raising(journal):
            yield FaultSession(substrate, journal, phase)
