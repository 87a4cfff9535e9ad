"""Program states straight from a real supervisord's XML-RPC socket: running, exited, frozen, gone; asked in
process (the lab) and by the same module run as a script with a host's python3 (the hosts substrate, over SSH)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tradestack.adapters import supervisord as supervisor
from tradestack.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _wait(predicate) -> bool:
    return wait_for(predicate, 20.0, 0.2)


def _remote(conf: Path, timeout: float = 5.0) -> dict[str, str]:
    """As the hosts substrate asks a host: the module's own source on python3's standard input, no tradestack
    on the path (the system interpreter, isolated from this environment)."""
    argv, script = supervisor.remote_query(str(conf), timeout)
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    done = subprocess.run([python, "-I", *argv[1:]], input=script, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return supervisor.parse_remote(done.stdout)


def test_states_come_from_the_socket_and_a_frozen_or_dead_supervisor_is_told_apart(tmp_path: Path):
    sock, pidfile = tmp_path / "supervisor.sock", tmp_path / "supervisord.pid"
    conf = tmp_path / "supervisord.conf"
    conf.write_text(f"[unix_http_server]\nfile={sock}\nchmod=0700\n\n"
                    f"[supervisord]\nlogfile={tmp_path}/supervisord.log\npidfile={pidfile}\nchildlogdir={tmp_path}\n\n"
                    "[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = "
                    "supervisor.rpcinterface:make_main_rpcinterface\n\n"
                    "[program:sleeper]\ncommand=sleep 600\nstartsecs=0\n\n"
                    "[program:quitter]\ncommand=true\nstartsecs=0\nautorestart=false\n")
    assert supervisor.program_states(sock) == {}  # nobody listens yet: nothing supervised
    assert supervisor.socket_of(conf) == sock and _remote(conf) == {}
    subprocess.run(["supervisord", "-c", str(conf)], check=True, timeout=30)
    pid = None
    try:
        assert _wait(lambda: supervisor.program_states(sock) == {"sleeper": "running", "quitter": "exited"}), \
            supervisor.program_states(sock)
        assert _remote(conf) == {"sleeper": "running", "quitter": "exited"}  # the script says the same
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGSTOP)  # a frozen host: the socket accepts, nobody answers
        try:
            started = time.monotonic()
            assert supervisor.program_states(sock, timeout=1.0) == {"supervisord": "unresponsive"}
            assert time.monotonic() - started < 5
            assert _remote(conf, timeout=1.0) == {"supervisord": "unresponsive"}
        finally:
            os.kill(pid, signal.SIGCONT)
        assert supervisor.program_states(sock)["sleeper"] == "running"
    finally:
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            _wait(lambda: not Path(f"/proc/{pid}").exists())
    assert _wait(lambda: supervisor.program_states(sock) == {})  # stopped (or crashed): nothing answers
