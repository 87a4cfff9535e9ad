"""The playbooks are clean for ansible-lint's strictest profile (production): role variables carry their
role's prefix, shared settings live in group_vars, reads that no module offers say why they are commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"


def test_ansible_lint_production_profile_reports_nothing():
    bindir = Path(sys.executable).parent
    done = subprocess.run([str(bindir / "ansible-lint"), "--profile", "production", "--offline", "--nocolor", "."],
                          cwd=PLAYBOOKS, capture_output=True, text=True, timeout=600,
                          # its own stdin: a test before it in this worker may have left the inherited one
                          # non-blocking, which Ansible refuses ("requires blocking IO on stdin", make test run 28)
                          stdin=subprocess.DEVNULL,
                          env={**os.environ, "PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}"})
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "0 failure(s), 0 warning(s)" in output and "'production' was required, and it passed" in output, output
