"""The Prometheus rules in the repository load (`promtool check rules`) and compute what their tests say
(`promtool test rules`: input series and expected results written by hand, infra/monitoring/tests)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

MONITORING = Path(__file__).resolve().parents[2] / "infra" / "monitoring"
RULES = sorted((MONITORING / "rules").glob("*.yml"))
TESTS = sorted((MONITORING / "tests").glob("*.test.yml"))


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert shutil.which("promtool"), "promtool is not installed (make setup)"
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120)


def test_every_rule_file_loads():
    assert RULES, f"no rule files under {MONITORING / 'rules'}"
    done = _promtool("check", "rules", *map(str, RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_rule_file_is_tested_and_its_tests_pass():
    assert TESTS, f"no rule tests under {MONITORING / 'tests'}"
    tested = {(t.parent / f).resolve() for t in TESTS for f in _rule_files(t)}
    assert set(RULES) <= tested, f"rule files no test loads: {sorted(set(RULES) - tested)}"
    done = _promtool("test", "rules", *map(str, TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


def _rule_files(test: Path) -> list[str]:
    import yaml

    return list(yaml.safe_load(test.read_text()).get("rule_files", []))
