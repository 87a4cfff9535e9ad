"""docs/adopting-an-estate.md, step 1, as written: an unprivileged user with a checkout of its own installs
tradestack into a virtual environment of its own and gets the Pulumi CLI, with no root and no lab. Its commands
are read from the how-to and run as they stand; the user's cache holds this run's Pulumi build (the step's cached
case: building it again would only repeat `make setup`'s build), and pip takes the dependencies from this
machine's package index. Steps 2 to 6 run on the session lab (test_hosts_substrate.py)."""

from __future__ import annotations

import os
import subprocess

import pytest

from .operators import install_step, operator_account

# pip builds the wheel and installs about 80 distributions: CPU for a minute, nothing timed. Making a user needs
# root, as the lab does (CI runs as root and must run it)
pytestmark = [pytest.mark.integration, pytest.mark.heavy, pytest.mark.timeout(900),
              pytest.mark.skipif(os.geteuid() != 0 and not os.environ.get("CI"), reason="needs root (makes a user)")]


def test_step_one_installs_tradestack_for_an_unprivileged_user_as_written():
    commands, shown = install_step()
    with operator_account("src/tradestack", owned=True) as (user, home, _checkout):
        login = {"HOME": str(home), "USER": user, "LANG": "C.UTF-8", "PATH": "/usr/local/bin:/usr/bin:/bin",
                 # this machine's pip settings (its index's certificate, its timeout), as a login would have them
                 **{k: v for k, v in os.environ.items() if k.startswith("PIP_")}}
        done = subprocess.run(["sh", "-ec", "\n".join(commands)], capture_output=True, text=True, timeout=900,
                              user=user, group=user, extra_groups=[], env=login, cwd=home)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        assert done.stdout.strip().splitlines()[-1] == shown, done.stdout[-2000:]
        venv = home / "venvs" / "tradestack"
        assert (venv / "bin" / "tradestack").exists()
        # the Pulumi CLI is found by the installed tool: a stack that does not exist is unusable input (exit 2),
        # not a machine that lacks a program (exit 3, "the Pulumi CLI is not installed")
        env = {**login, "PATH": f"{venv / 'bin'}:{login['PATH']}"}
        asked = subprocess.run(["tradestack", "stack", "outputs", "--stack", f"{user}x"], capture_output=True,
                               text=True, timeout=120, user=user, group=user, extra_groups=[], env=env, cwd=home)
        assert asked.returncode == 2 and "does not exist" in asked.stderr, (asked.returncode, asked.stderr)
