"""One root exception and a subclass per kind of failure.

The core raises these; only the CLI edge (`tradestack.cli.errors`) turns them into
one readable block and an exit code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class SourceLocation:
    """Where in a user's file a problem was found (1-based line and column)."""

    path: Path
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return str(self.path)
        if self.column is None:
            return f"{self.path}:{self.line}"
        return f"{self.path}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a user's input, optionally tied to a place in a file."""

    message: str
    where: SourceLocation | None = None
    field: str | None = None  # dotted path inside the document, e.g. sites[0].uplinks[1].carrier

    def __str__(self) -> str:
        prefix = f"{self.where}: " if self.where else ""
        field = f"{self.field}: " if self.field else ""
        return f"{prefix}{field}{self.message}"


class TradestackError(Exception):
    """Root of every error tradestack raises on purpose."""


class InputError(TradestackError):
    """The user's input (a file, an argument) cannot be used; carries every problem found."""

    def __init__(self, problems: list[Problem] | Problem | str, *, source: Path | None = None):
        if isinstance(problems, str):
            problems = [Problem(problems, SourceLocation(source) if source else None)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        self.source = source
        super().__init__("\n".join(str(p) for p in self.problems))


class TopologyError(InputError):
    """A topology file is unreadable or inconsistent."""


class EnvironmentProblem(TradestackError):
    """This machine lacks something the command needs (root, a program, a toolchain)."""
