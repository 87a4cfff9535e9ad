"""The SSH adapter against the lab's hosts, reached as remote machines are: their sshd on the management network,
the stack's key, pinned host keys."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tradestack.adapters import ssh
from tradestack.polling import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def remote(lab):
    files = lab["files"]
    hosts = yaml.safe_load(files.inventory.read_text())["all"]["hosts"]
    name, host = next((n, h) for n, h in hosts.items() if h["service"] == "router")
    with tempfile.TemporaryDirectory(prefix="ts-ssh-") as control:  # short: the master connection's socket is in it
        options = ssh.SshOptions(files.private_key, files.known_hosts, control_dir=Path(control))
        assert "ControlMaster=auto" in options.argv(ssh.SshTarget("198.18.0.1", "root"))
        yield {"name": name, "options": options, "target": ssh.SshTarget(host["ansible_host"], "root"),
               "work": Path(lab["settings"].state_root) / "ssh-test"}


def test_a_command_runs_remotely_with_every_argument_as_given(remote):
    done = ssh.run(remote["options"], remote["target"], ["printf", "%s|", "a b", "it's", "$HOME", ""])
    assert done.succeeded, done.stderr
    assert done.stdout == "a b|it's|$HOME||"
    # it ran on the host itself: its own network namespace, the router's LAN port
    assert "lan0" in ssh.run(remote["options"], remote["target"], ["ip", "-o", "link", "show"]).stdout


def test_secrets_reach_the_remote_command_but_not_its_command_line(remote):
    done = ssh.run(remote["options"], remote["target"],
                   ["sh", "-c", 'printf "%s" "$TRADESTACK_DSN"; tr "\\0" " " < /proc/$$/cmdline'],
                   secret_env={"TRADESTACK_DSN": "password=planted-7c1e"})
    assert done.succeeded, done.stderr
    value, cmdline = done.stdout[:len("password=planted-7c1e")], done.stdout[len("password=planted-7c1e"):]
    assert value == "password=planted-7c1e" and "planted-7c1e" not in cmdline


def test_a_remote_process_stops_cleanly_on_sigterm(remote):
    marker = remote["work"] / "termed"
    ssh.run(remote["options"], remote["target"], ["mkdir", "-p", str(remote["work"])])
    ssh.run(remote["options"], remote["target"], ["rm", "-f", str(marker)])
    proc = ssh.RemoteProcess(remote["options"], remote["target"],
                             # the sleep is killed too and holds no output open: the session ends with the shell
                             ["sh", "-c", f'trap "echo done > {marker}; kill $!; exit 0" TERM; '
                                          'sleep 60 >/dev/null 2>&1 & wait'])
    assert proc.pid is not None
    started = time.monotonic()
    proc.terminate()
    proc.communicate(timeout=30)
    assert time.monotonic() - started < 10
    assert wait_for(lambda: ssh.run(remote["options"], remote["target"], ["cat", str(marker)]).stdout == "done\n", 10)


def test_a_file_comes_back_byte_for_byte_and_a_missing_one_says_so(remote, tmp_path):
    source = remote["work"] / "blob.bin"
    ssh.run(remote["options"], remote["target"], ["mkdir", "-p", str(remote["work"])])
    done = ssh.run(remote["options"], remote["target"], ["sh", "-c", f"head -c 300000 /dev/urandom > {source}"])
    assert done.succeeded, done.stderr
    local = ssh.fetch(remote["options"], remote["target"], source, tmp_path / "blob.bin")
    digest = ssh.run(remote["options"], remote["target"], ["sha256sum", str(source)]).stdout.split()[0]
    assert subprocess.run(["sha256sum", str(local)], capture_output=True, text=True).stdout.split()[0] == digest
    with pytest.raises(FileNotFoundError):
        ssh.fetch(remote["options"], remote["target"], remote["work"] / "absent", tmp_path / "absent")


def test_a_host_whose_key_changed_is_refused(remote, tmp_path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    impostor = (tmp_path / "other.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"{remote['target'].address} {' '.join(impostor)}\n")
    options = ssh.SshOptions(remote["options"].private_key, known)
    done = ssh.run(options, remote["target"], ["true"])
    assert done.rc == 255 and "Host key verification failed" in done.stderr
