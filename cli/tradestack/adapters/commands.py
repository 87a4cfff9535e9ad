"""Running a program: argv in (never a shell string), one result type out."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CommandResult:
    """What a command did: its argv, exit code, output and how long it took."""

    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def succeeded(self) -> bool:
        return self.rc == 0

    def why(self, limit: int = 300) -> str:
        """The end of what it said, for an error message."""
        return (self.stderr.strip() or self.stdout.strip())[-limit:]


def run(argv: Sequence[str], *, input: str | None = None, timeout: float = 30.0,
        env: Mapping[str, str] | None = None) -> CommandResult:
    """Run `argv` here and wait; a command that outlives `timeout` is killed and reported with rc 124."""
    started = time.monotonic()
    try:
        done = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout,
                              check=False, env=dict(env) if env is not None else None)
    except subprocess.TimeoutExpired as exc:
        return CommandResult(tuple(argv), 124, _text(exc.stdout), _text(exc.stderr) or f"timed out after {timeout:g} s",
                             time.monotonic() - started)
    except OSError as exc:  # the program is missing or not executable
        return CommandResult(tuple(argv), 127, "", str(exc), time.monotonic() - started)
    return CommandResult(tuple(argv), done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def _text(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data
