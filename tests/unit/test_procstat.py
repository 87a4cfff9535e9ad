"""Per-process CPU accounting of lab hosts: what a process is, and its CPU ticks from /proc."""

from __future__ import annotations

import os

import pytest

from tradestack.lab import procstat

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("comm", "args", "expected"), [
    ("tradestack", "/opt/ts/venv/bin/python3 /opt/ts/venv/bin/tradestack refstack serve gateway --config x",
     "gateway"),
    ("tradestack", "python3 tradestack refstack serve router --config x", "router"),
    ("tradestack", "python3 tradestack refstack serve venue --config x", "venue"),
    ("python3", "python3 -m tradestack refstack load -e http://198.18.0.1:8080 --rate 10", "load generator"),
    ("patroni", "/usr/bin/python3 /usr/bin/patroni /var/lib/x/patroni.yml", "patroni"),
    ("postgres", "postgres: tradestack-lab: walwriter", "postgres"),
    ("haproxy", "/usr/sbin/haproxy -W -db -f haproxy.cfg", "haproxy"),
    ("sshd", "sshd: /usr/sbin/sshd -f sshd_config [listener]", "sshd"),
    ("curl", "curl -s http://198.18.0.1", "curl"),
])
def test_component(comm: str, args: str, expected: str):
    assert procstat.component(comm, args) == expected


def test_reads_this_process_cpu_ticks():
    sum(i * i for i in range(300_000))  # some CPU to account for
    read = procstat._read(os.getpid())
    assert read is not None
    comm, ticks, start, args = read
    assert ticks > 0 and start > 0 and ("pytest" in args or "python" in args)


def test_by_component_sums_hosts_and_labels():
    used = {("lab-sz1-orderdb-1", "postgres"): 2.0, ("lab-hk1-orderdb-1", "postgres"): 0.5,
            ("lab-sz1-gateway-1", "gateway"): 1.0, ("lab-hk1-gateway-1", "gateway"): 1.5}
    assert procstat.by_component(used) == {"postgres": 2.5, "gateway": 2.5}
    label = (lambda host, comp: f"{comp} primary" if host == "lab-sz1-orderdb-1" and comp == "postgres" else comp)
    assert procstat.by_component(used, label) == {"postgres primary": 2.0, "postgres": 0.5, "gateway": 2.5}
