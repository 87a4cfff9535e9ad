"""A test run that leaves behind what a lab makes fails, naming it: tests/conftest.py reads this machine's network
namespaces, links, overlay mounts and booted machines when the run starts and again after every fixture's
tear-down. Shown with the project's own conftest in pytest runs of their own, in one process and as `make test`
runs (`-n 2 --dist loadgroup`)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# `peak`: the machine to itself (tests/conftest.py), for what counts here is what this machine holds: a namespace
# another worker's lab made in the same seconds would be new to these runs too
pytestmark = [pytest.mark.integration, pytest.mark.peak,
              pytest.mark.skipif(os.geteuid() != 0 and not os.environ.get("CI"), reason="needs root")]

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

TEST = """\
import subprocess
import pytest

pytestmark = pytest.mark.integration


def test_makes_a_namespace():
    subprocess.run(["ip", "netns", "add", "{name}"], check=True)
    if {tidy}:
        subprocess.run(["ip", "netns", "delete", "{name}"], check=True)


def test_another():
    pass
"""


def _run(tmp_path: Path, name: str, tidy: bool, workers: int) -> subprocess.CompletedProcess:
    project = tmp_path / f"{tidy}-{workers}"
    (project / "tests").mkdir(parents=True)
    shutil.copy(CONFTEST, project / "tests" / "conftest.py")
    (project / "pytest.ini").write_text("[pytest]\nmarkers =\n    unit\n    integration\n    peak\n    heavy\n")
    (project / "tests" / "test_it.py").write_text(TEST.format(name=name, tidy=tidy))
    xdist = ["-n", str(workers), "--dist", "loadgroup"] if workers else []
    return subprocess.run([sys.executable, "-m", "pytest", *xdist, "-p", "no:cacheprovider", "-q",
                           f"--basetemp={project / 'tmp'}"], cwd=project, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


@pytest.mark.parametrize("workers", [0, 2])
def test_a_namespace_left_behind_fails_the_run_naming_it(tmp_path, workers):
    name = f"tsleft{secrets.token_hex(3)}"
    try:
        done = _run(tmp_path, name, tidy=False, workers=workers)
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "2 passed" in done.stdout and f"network namespace {name}" in done.stdout, done.stdout[-2000:]


def test_a_run_that_removes_what_it_made_passes(tmp_path):
    name = f"tsleft{secrets.token_hex(3)}"
    try:
        done = _run(tmp_path, name, tidy=True, workers=2)
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "left behind" not in done.stdout
