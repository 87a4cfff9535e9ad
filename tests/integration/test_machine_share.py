"""`make test`'s two workers share one machine: a `peak` test never runs beside a `peak` or `heavy` one, while two
`heavy` tests may. Shown with the project's own conftest in a pytest run of its own (`-n 2 --dist loadgroup`, as
`make test`), whose two workers each start one test at once and record when it ran."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

# One module in the session lab's group (tests/conftest.py: SESSION_LAB), one beside it: one test per worker.
TEST = """\
import json, os, time
from pathlib import Path
import pytest

pytestmark = pytest.mark.integration


@pytest.mark.{mark}
def test_{name}():
    start = time.monotonic()
    time.sleep(2)
    Path(os.environ["INTERVALS"], "{name}.json").write_text(json.dumps([start, time.monotonic(),
                                                                     os.getpriority(os.PRIO_PROCESS, 0)]))
"""


def _intervals(tmp_path: Path, lab_mark: str, other_mark: str) -> list[list[float]]:
    project = tmp_path / f"{lab_mark}-{other_mark}"
    integration = project / "tests" / "integration"
    integration.mkdir(parents=True)
    shutil.copy(CONFTEST, project / "tests" / "conftest.py")
    # judge_leftovers off: this run makes nothing, and the outer run's other worker may be making and removing a
    # cluster's namespaces meanwhile (test_run_leaves_nothing judges leftovers, with the machine to itself)
    (project / "pytest.ini").write_text("[pytest]\njudge_leftovers = false\n"
                                        "markers =\n    unit\n    integration\n    peak\n    heavy\n")
    (integration / "test_lab.py").write_text(TEST.format(mark=lab_mark, name="lab"))
    (integration / "test_beside.py").write_text(TEST.format(mark=other_mark, name="beside"))
    out = project / "intervals"
    out.mkdir()
    done = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-p", "no:cacheprovider",
                           "-q", f"--basetemp={project / 'tmp'}"], cwd=project, capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "INTERVALS": str(out)}, preexec_fn=_at_niceness_zero)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [json.loads((out / f"{name}.json").read_text()) for name in ("lab", "beside")]


def _at_niceness_zero() -> None:
    """The run starts as make test does, at niceness 0 (this test may itself run in the niced worker); a user who
    is not root cannot go back to 0 and keeps theirs."""
    if os.geteuid() == 0:
        os.setpriority(os.PRIO_PROCESS, 0, 0)


def _overlap(a: list[float], b: list[float]) -> float:
    return min(a[1], b[1]) - max(a[0], b[0])


@pytest.mark.parametrize("lab_mark, other_mark", [("peak", "heavy"), ("heavy", "peak"), ("peak", "peak")])
def test_a_peak_test_has_the_machine_to_itself(tmp_path, lab_mark, other_mark):
    lab, beside = _intervals(tmp_path, lab_mark, other_mark)
    assert _overlap(lab, beside) < 0, (lab, beside)


def test_heavy_tests_run_beside_each_other(tmp_path):
    lab, beside = _intervals(tmp_path, "heavy", "heavy")
    assert _overlap(lab, beside) > 1, (lab, beside)


def test_the_session_labs_tests_get_the_cpu_first(tmp_path):
    """The lab's group is make test's longest chain: the other worker runs at niceness 5, the lab's at 0."""
    lab, beside = _intervals(tmp_path, "heavy", "heavy")
    start = 0 if os.geteuid() == 0 else os.getpriority(os.PRIO_PROCESS, 0)
    assert (lab[2], beside[2]) == (start, max(start, 5)), (lab, beside)
