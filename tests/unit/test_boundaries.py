"""The package's layers, checked on its imports: what may know the lab, Typer, a substrate.

The import graph is read from the source: every `import` and `from ... import` (also inside functions, where a
cycle would hide), and the registry's module names that `importlib` opens. Imports under `if TYPE_CHECKING:` are
left out (they never run). Every rule first asserts that the folders it speaks of hold modules, so renaming one
fails here instead of making its rule pass on nothing.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[2] / "cli" / "tradestack"
SUBSTRATES = ("lab", "hosts", "kubernetes")          # the implementations, each a package of its own
USERS = ("deploy", "drills", "capacity", "audit", "cli")   # what stands on the substrate interface


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _in(layer: str) -> list[str]:
    """The modules of a folder of the package; fails when it has none (a renamed folder must not pass a rule)."""
    found = [m for m in MODULES if _layer(m) == layer and (PACKAGE / layer).is_dir()]
    assert found, f"no modules under cli/tradestack/{layer}/: the rule would judge nothing"
    return found


def _type_checking_only(tree: ast.AST) -> set[ast.AST]:
    skipped: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                skipped |= set(ast.walk(child))
    return skipped


def _imports(module: str) -> set[str]:
    """The package's modules `module` imports: `from pkg import sub` counts as importing `pkg.sub` when that is a
    module (not the package's __init__); a "tradestack.x.y[:Class]" string counts (the registry's kinds)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    skipped = _type_checking_only(tree)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if node in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            source = ".".join([*base, *(node.module.split(".") if node.module else [])])
            subs = {f"{source}.{a.name}" for a in node.names if f"{source}.{a.name}" in MODULES}
            found |= subs if len(subs) == len(node.names) else subs | {source}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            named = re.fullmatch(r"(tradestack(?:\.\w+)+)(?::\w+)?", node.value)
            if named and named.group(1) in MODULES:
                found.add(named.group(1))
    return {m for m in found if m in MODULES and m != module}


GRAPH = {m: _imports(m) for m in MODULES}


def _offenders(layers: tuple[str, ...] | str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    out = {}
    for layer in (layers,) if isinstance(layers, str) else layers:
        for m in _in(layer):
            bad = sorted(i for i in GRAPH[m] if _layer(i) in forbidden)
            if bad:
                out[m] = bad
    return out


def test_the_graph_is_read_from_the_source():
    """The reader itself: it sees relative, function-level and registry imports (else every rule is blind)."""
    assert "tradestack.substrates.base" in GRAPH["tradestack.lab.substrate"]
    assert "tradestack.lab.substrate" in GRAPH["tradestack.substrates.registry"]
    assert "tradestack.drills.engine" in GRAPH["tradestack.cli.drill"]  # imported inside a command
    assert len(MODULES) > 100


def test_no_substrate_imports_the_layers_that_use_it():
    assert _offenders(("substrates", *SUBSTRATES), USERS) == {}


def test_substrate_implementations_do_not_import_each_other():
    offenders = {}
    for kind in SUBSTRATES:
        others = tuple(k for k in SUBSTRATES if k != kind)
        offenders |= _offenders(kind, others)
    assert offenders == {}


def test_the_cli_reaches_substrates_only_through_the_registry():
    assert _offenders("cli", SUBSTRATES) == {}


@pytest.mark.parametrize("layer", ["deploy", "drills", "capacity", "audit", "evidence", "refstack", "topology"])
def test_the_domain_reaches_stacks_only_through_the_substrate_interface(layer):
    offenders = {m: sorted(i for i in GRAPH[m] if _layer(i) in SUBSTRATES or i == "tradestack.adapters.pulumi")
                 for m in _in(layer)}
    assert {m: i for m, i in offenders.items() if i} == {}


def test_nothing_outside_the_lab_package_imports_the_lab():
    offenders = {m: sorted(i for i in GRAPH[m] if _layer(i) == "lab") for m in MODULES if _layer(m) != "lab"}
    offenders.pop("tradestack.substrates.registry")  # names every kind, opened by name
    assert {m: i for m, i in offenders.items() if i} == {}


def test_the_module_graph_has_no_cycle():
    import graphlib

    try:
        tuple(graphlib.TopologicalSorter(GRAPH).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_nothing_outside_the_lab_package_enters_a_namespace():
    offenders = [m for m in MODULES if _layer(m) != "lab"
                 and ("netns exec" in MODULES[m].read_text() or '"netns", "exec"' in MODULES[m].read_text())]
    assert _in("lab") and offenders == []


def test_only_the_cli_imports_typer():
    def typer_in(m: str) -> bool:
        tree = ast.parse(MODULES[m].read_text())
        return any(isinstance(n, ast.Import) and any(a.name.split(".")[0] == "typer" for a in n.names)
                   or isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "typer"
                   for n in ast.walk(tree))
    assert _in("cli") and any(typer_in(m) for m in _in("cli"))
    assert [m for m in MODULES if _layer(m) != "cli" and typer_in(m)] == []


def test_every_registered_substrate_implements_every_primitive():
    import importlib

    from tradestack.substrates import KINDS

    assert set(KINDS) == {"lab", "hosts", "kubernetes"}
    for kind, where in KINDS.items():
        module, _, name = where.partition(":")
        cls = getattr(importlib.import_module(module), name)
        assert cls.kind == kind and not cls.__abstractmethods__, kind
        assert hasattr(cls, "over") if getattr(cls, "layered", False) else hasattr(cls, "open"), kind


def test_the_substrate_interface_is_small_and_clusters_are_a_capability_not_a_wrapper():
    """At most 15 primitives a substrate must provide; the kubernetes kind attaches its clusters to the hosts'
    substrate (it is no Substrate, and defines none of the primitives: nothing forwarded by hand)."""
    from tradestack.kubernetes.substrate import KubernetesClusters
    from tradestack.substrates.base import Substrate
    from tradestack.substrates.clusters import Clusters

    primitives = Substrate.__abstractmethods__
    assert 10 <= len(primitives) <= 15, sorted(primitives)
    assert issubclass(KubernetesClusters, Clusters) and not issubclass(KubernetesClusters, Substrate)
    assert not primitives & set(vars(KubernetesClusters)), sorted(primitives & set(vars(KubernetesClusters)))


def test_one_run_loop_locks_the_stack_raises_signals_and_restores():
    """Drills and capacity verify share drills/session.py: it alone takes the stack's lock, turns SIGINT and
    SIGTERM into interrupts and defers them while restoring."""
    users = {m for m in MODULES if any(word in MODULES[m].read_text() for word in
                                       ("with stack_lock(", "interrupts.raising(", "interrupts.deferred("))}
    assert users == {"tradestack.drills.session"}
    assert "tradestack.drills.session" in GRAPH["tradestack.drills.engine"]
    assert "tradestack.drills.session" in GRAPH["tradestack.capacity.verify"]


def test_the_trading_stack_and_the_topology_know_no_substrate_and_no_cli():
    """refstack runs on any substrate and knows none of them; the topology is used by all and uses none."""
    assert _offenders(("refstack", "topology"), ("substrates", *SUBSTRATES, "cli")) == {}
