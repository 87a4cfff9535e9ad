"""Drill files: read and validate them (file:line on every problem); the built-in catalogue."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from ..yamlsource import load_yaml, validate_model
from .model import Drill

CATALOGUE = Path(__file__).resolve().parent / "catalogue"
CLUSTER_CATALOGUE = CATALOGUE / "kubernetes"   # drills that need a stack on the kubernetes substrate
SYSTEMD_CATALOGUE = CATALOGUE / "systemd"      # drills that need hosts run by systemd (an orderly reboot)


class DrillFileError(InputError):
    """A drill file is unreadable or invalid."""


def load_drill(path: Path) -> Drill:
    doc = load_yaml(path, DrillFileError)
    if not isinstance(doc.data, dict):
        raise DrillFileError([doc.problem((), "a drill file must be a mapping (name:, faults:, ...)")],
                             source=path)
    return validate_model(Drill, doc, DrillFileError)


def catalogue() -> dict[str, Path]:
    """Built-in drill name -> file: the drills every stack runs (its audit's evidence asks for each)."""
    return {p.stem: p for p in sorted(CATALOGUE.glob("*.yaml"))}


def cluster_catalogue() -> dict[str, Path]:
    """Built-in drills for stacks whose services run in Kubernetes clusters."""
    return {p.stem: p for p in sorted(CLUSTER_CATALOGUE.glob("*.yaml"))}


def systemd_catalogue() -> dict[str, Path]:
    """Built-in drills for stacks whose hosts are run by systemd (a broker's servers, the lab's machines)."""
    return {p.stem: p for p in sorted(SYSTEMD_CATALOGUE.glob("*.yaml"))}


def every_drill() -> dict[str, Path]:
    """Every built-in drill, whatever it needs."""
    return {**catalogue(), **cluster_catalogue(), **systemd_catalogue()}


def resolve(name_or_file: str) -> Drill:
    """A catalogue drill by name, or a drill file by path."""
    path = Path(name_or_file)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return load_drill(path)
    known = every_drill()
    if name_or_file not in known:
        raise InputError(f"no drill {name_or_file!r}: give a drill file, or one of {', '.join(known)}")
    return load_drill(known[name_or_file])
