"""Running a program: argv in (never a shell string), one result type out."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


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


class StreamedPopen:
    """A running child whose output is read as it comes (a thread per stream), so a long-running program's
    progress lines can be read while it runs and a full pipe never blocks it. The one place that reads a
    started program's streams; local and SSH processes both wrap their Popen in it."""

    def __init__(self, popen: subprocess.Popen[str]):
        self.popen = popen
        self._out: list[str] = []
        self._err: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(stream, into), daemon=True)
                         for stream, into in ((popen.stdout, self._out), (popen.stderr, self._err)) if stream]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: Any, into: list[str]) -> None:
        for line in iter(stream.readline, ""):
            into.append(line)

    @property
    def returncode(self) -> int | None:
        """The exit code once it has ended (polled: a child that died is seen as soon as it is asked)."""
        return self.popen.poll()

    def stderr_lines(self) -> list[str]:
        """What it has written on stderr so far, a line each (a copy)."""
        return list(self._err)

    def communicate(self, timeout: float) -> tuple[str, str]:
        """(stdout, stderr) once it has ended; raises subprocess.TimeoutExpired if it runs past `timeout`."""
        self.popen.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        return "".join(self._out), "".join(self._err)
