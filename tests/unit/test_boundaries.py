"""The package's layers, checked on its imports: what may know the lab, Typer, a substrate."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[2] / "cli" / "tradestack"


def _modules(*, outside: tuple[str, ...] = ()) -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py")
                  if not any(p.is_relative_to(PACKAGE / part) for part in outside))


def _imports(path: Path) -> set[str]:
    """Every module a file imports, relative imports resolved against the package."""
    tree = ast.parse(path.read_text(), str(path))
    here = path.relative_to(PACKAGE.parent).with_suffix("").parts
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = list(here[:len(here) - node.level]) if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(module)
            found |= {f"{module}.{a.name}" for a in node.names}
    return found


def test_nothing_outside_the_lab_package_imports_the_lab():
    offenders = {str(p.relative_to(PACKAGE)): sorted(i for i in _imports(p) if i.startswith("tradestack.lab"))
                 for p in _modules(outside=("lab",))}
    assert {p: i for p, i in offenders.items() if i} == {}


def test_nothing_outside_the_lab_package_enters_a_namespace():
    offenders = [str(p.relative_to(PACKAGE)) for p in _modules(outside=("lab",))
                 if "netns exec" in p.read_text() or '"netns", "exec"' in p.read_text()]
    assert offenders == []


def test_only_the_cli_imports_typer():
    offenders = [str(p.relative_to(PACKAGE)) for p in _modules(outside=("cli",))
                 if any(i == "typer" or i.startswith("typer.") for i in _imports(p))]
    assert offenders == []


@pytest.mark.parametrize("layer", ["deploy", "drills", "capacity", "audit", "refstack", "topology"])
def test_the_domain_reaches_stacks_only_through_the_substrate_interface(layer):
    offenders = {str(p.relative_to(PACKAGE)): sorted(i for i in _imports(p)
                                                    if i.startswith(("tradestack.lab.", "tradestack.hosts.", "tradestack.kubernetes.",
                                                                  "tradestack.adapters.pulumi"))
                                                    or i in ("tradestack.lab", "tradestack.hosts", "tradestack.kubernetes"))
                 for p in (PACKAGE / layer).rglob("*.py")}
    assert {p: i for p, i in offenders.items() if i} == {}


def test_every_registered_substrate_implements_every_primitive():
    import importlib

    from tradestack.substrates import KINDS

    assert set(KINDS) == {"lab", "hosts", "kubernetes"}
    for kind, where in KINDS.items():
        module, _, name = where.partition(":")
        cls = getattr(importlib.import_module(module), name)
        assert cls.kind == kind and not cls.__abstractmethods__, kind
