"""`make bench` prints every benchmark's figures: each tests/bench/bench_*.py is run by the Makefile's `bench` recipe
or listed below with why it stands alone, so a new benchmark cannot be left out of `make bench` unnoticed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]

STANDS_ALONE = {
    "bench_demo.py": "clones the project afresh and times a newcomer's `make demo` (needs empty build caches)",
}


def _bench_recipe() -> str:
    recipe = re.search(r"^bench:.*\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert recipe, "the Makefile has no `bench` target"
    return recipe.group(1)


def test_make_bench_runs_every_benchmark_script():
    scripts = {p.name for p in (ROOT / "tests" / "bench").glob("bench_*.py")}
    assert len(scripts) > len(STANDS_ALONE), scripts  # found the benchmarks at all
    named = re.findall(r"tests/bench/(bench_\w+\.py)", _bench_recipe())
    run = set(named)
    assert run, "the bench recipe runs no benchmark"
    assert len(named) == len(run), f"a benchmark run twice: {sorted(named)}"
    assert scripts - set(STANDS_ALONE) - run == set(), "benchmarks `make bench` leaves out"
    assert run <= scripts, "the bench recipe names a script that does not exist"
    assert set(STANDS_ALONE) <= scripts and not set(STANDS_ALONE) & run
