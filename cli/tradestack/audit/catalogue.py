"""The controls catalogue (a data file in the package): id, title, rationale, severity, rule references."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints

from ..errors import InputError
from ..yamlsource import load_yaml, validate_model

CATALOGUE = Path(__file__).resolve().parent / "controls.yaml"
CHECKS = Path(__file__).resolve().parent / "checks"


class Control(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    id: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}-[0-9]{2}$")]
    title: str
    rationale: str
    severity: Literal["high", "medium", "low"]
    remedy: str                                          # what to do when it fails (the report shows it)
    refs: list[str]
    applies_to: Literal["every", "clusters"] = "every"   # clusters: only stacks whose services run in Kubernetes


SEVERITIES = ("high", "medium", "low")  # most severe first


class Catalogue(BaseModel):
    controls: list[Control]


def controls(path: Path = CATALOGUE) -> list[Control]:
    doc = load_yaml(path)
    doc.data = {"controls": doc.data}
    doc.positions = {("controls", *k): v for k, v in doc.positions.items()}
    doc.values = {("controls", *k): v for k, v in doc.values.items()}
    return validate_model(Catalogue, doc).controls


def select(all_controls: list[Control], ids: list[str] | None) -> list[Control]:
    """The controls named by `ids` (all when None); unknown ids are an input error listing the known ones."""
    if not ids:
        return all_controls
    known = {c.id: c for c in all_controls}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise InputError(f"unknown control(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[i] for i in ids]

