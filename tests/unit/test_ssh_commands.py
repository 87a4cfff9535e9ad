"""What the SSH adapter asks a remote shell to run, run here by a local `sh` (the remote side of ssh is a shell)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tradestack.adapters import ssh

pytestmark = pytest.mark.unit

AWKWARD = ["printf", "%s|", "a b", "it's", "$HOME", "`id`", "semi;colon", "new\nline", ""]


def _as_remote_shell(command: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", command], input=stdin, capture_output=True, text=True, timeout=10)


def test_every_argument_reaches_the_remote_program_as_given():
    done = _as_remote_shell(ssh.remote_command(AWKWARD))
    assert done.stdout == "a b|it's|$HOME|`id`|semi;colon|new\nline||"


def test_secrets_travel_on_stdin_not_on_the_command_line():
    command = ssh.remote_command(["sh", "-c", 'printf "%s" "$TRADESTACK_DSN"; cat'], ssh._SECRET_PRELUDE)
    assert "hunter2" not in command
    done = _as_remote_shell(command, "TRADESTACK_DSN=password=hunter2 host=x\n\nand the rest\n")
    assert done.stdout == "password=hunter2 host=xand the rest\n"


def test_a_started_process_reports_its_own_pid_first():
    done = _as_remote_shell(ssh.remote_command(["sh", "-c", 'echo "child $$"'], ssh._PID_PRELUDE))
    pid, child = done.stdout.splitlines()
    assert child == f"child {pid}"  # exec: the pid printed is the command's own, so SIGTERM reaches it


def test_ssh_options_pin_host_keys_and_never_prompt(tmp_path: Path):
    options = ssh.SshOptions(tmp_path / "key", tmp_path / "known_hosts", control_dir=Path("/tmp/ts-cm"))
    argv = options.argv(ssh.SshTarget("198.18.0.10", "ops", 2222))
    text = " ".join(argv)
    for option in (f"UserKnownHostsFile={tmp_path / 'known_hosts'}", "StrictHostKeyChecking=yes", "BatchMode=yes",
                   "IdentitiesOnly=yes", "PasswordAuthentication=no", "ControlPath=/tmp/ts-cm/%C"):
        assert f"-o {option}" in text
    assert argv[-2:] == ["ops@198.18.0.10", "--"] and argv[argv.index("-p") + 1] == "2222"


def test_a_control_directory_too_long_for_its_socket_means_no_shared_connection(tmp_path: Path):
    """ssh would refuse every command ("too long for Unix domain socket"); one connection per command instead."""
    fits = Path("/" + "d" * (ssh.MAX_CONTROL_DIR - 1))
    target = ssh.SshTarget("198.18.0.10", "ops")
    assert "ControlMaster=auto" in ssh.SshOptions(tmp_path / "k", tmp_path / "kh", control_dir=fits).argv(target)
    too_long = ssh.SshOptions(tmp_path / "k", tmp_path / "kh", control_dir=Path(f"{fits}d")).argv(target)
    assert not any(a.startswith(("ControlMaster", "ControlPath")) for a in too_long)
