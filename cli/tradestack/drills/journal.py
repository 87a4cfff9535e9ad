"""A drill's journal, modelled on Chaos Toolkit's: every step recorded with its timing and outcome, a failed step
being data in the report rather than an exception through the run."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Step:
    name: str
    started: float
    ended: float | None = None
    ok: bool | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "started": self.started, "ended": self.ended, "ok": self.ok, "detail": self.detail}


@dataclass
class Journal:
    steps: list[Step] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    interrupted: str | None = None      # SIGINT / SIGTERM
    aborted: str | None = None          # an abort condition held

    @contextmanager
    def step(self, name: str) -> Iterator[Step]:
        s = Step(name, time.time())
        self.steps.append(s)
        try:
            yield s
            s.ok = True
        except KeyboardInterrupt:
            s.ok, s.detail = False, "interrupted"
            raise
        except Exception as exc:  # a failed step is data in the report
            s.ok, s.detail = False, f"{type(exc).__name__}: {exc}"
        finally:
            s.ended = time.time()
