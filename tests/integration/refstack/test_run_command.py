"""`tradestack refstack run`: starts everything, prints the endpoints, and Ctrl-C stops all of it cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0


def _as_a_background_job() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a non-interactive shell does to a job started with `&`


def test_run_prints_endpoints_serves_orders_and_ctrl_c_stops_everything():
    """Started as a script's background job (SIGINT ignored on entry, as CI's runner once started it), a SIGINT
    still stops everything."""
    process = subprocess.Popen([sys.executable, "-m", "tradestack", "refstack", "run", "--accounts", "10", "--json"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=_as_a_background_job)
    try:
        lines = []
        while True:  # the JSON document is printed once everything is ready
            line = process.stdout.readline()
            assert line, process.stderr.read()
            lines.append(line)
            if line.startswith("}"):
                break
        endpoints = json.loads("".join(lines))
        gateway = endpoints["gateways"]["gateway-1"]
        order = httpx.post(f"{gateway}/v1/orders", json={"account": "acct-00001", "client_order_id": "run-1",
                                                         "symbol": "AAPL", "side": "buy", "qty": 1}, timeout=10)
        assert order.status_code == 201
        children = [int(p) for p in subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True,
                                                   text=True).stdout.split()]
        assert len(children) == 4  # two venues, a router, a gateway
        workdir = Path(endpoints["logs"])
        assert workdir.is_dir()
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(30)
    assert code == 0, process.stderr.read()
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in children)
    assert not workdir.exists()
    dsn = dict(part.split("=") for part in endpoints["database"].split())
    assert subprocess.run(["pg_isready", "-h", dsn["host"], "-p", dsn["port"]], capture_output=True).returncode != 0
