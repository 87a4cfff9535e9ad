"""Benchmark: what a lab of booted machines costs on this machine (issue 32's goals), root.

Prints: the base image built cold (with --cold: the cached one is moved aside, then put back) and found cached;
lab.yaml's hosts booted as machines to multi-user; idle memory and CPU per machine; a deploy onto them through a
`hosts` stack from nothing and with nothing to change; the database leader's machine powered off (seconds until
another member leads) and on again (seconds from power on until it is the synchronous standby, nobody deploying).

Run: sudo .venv/bin/python tests/bench/bench_machines.py [--cold]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tradestack.hostsettings import HostSettings
from tradestack.lab import machines, procstat
from tradestack.lab.stack import LabStack
from tradestack.polling import wait_for
from tradestack.substrates import open_stack, registry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchstack import TOPOLOGIES, remove_created  # noqa: E402

IDLE_S = 30.0


def _available_kb() -> int:
    return next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemAvailable:"))


def _image(cold: bool) -> tuple[float | None, float]:
    image = machines.lab_image()
    cold_s = None
    if cold and image.built():
        if str(image.root) in Path("/proc/self/mountinfo").read_text():
            raise SystemExit(f"--cold: machines booted from {image.root} are up (a lab of machines, a test run); "
                             "their image cannot be moved aside now")
        aside = image.directory.with_name(image.directory.name + ".bench-aside")
        image.directory.rename(aside)
        try:
            started = time.perf_counter()
            machines.build_image(image)
            cold_s = time.perf_counter() - started
        finally:
            subprocess.run(["rm", "-rf", "--one-file-system", str(image.directory)], check=True)
            aside.rename(image.directory)
    started = time.perf_counter()
    machines.build_image(image)
    return cold_s, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="build the base image from nothing once (~1 min)")
    args = parser.parse_args()
    cold_s, cached_s = _image(args.cold)
    run = secrets.token_hex(2)
    settings = HostSettings(f"tb{run}", f"tb{run}g", f"/var/lib/tradestack-bench/{run}", f"/opt/tradestack-bench/{run}")
    with tempfile.TemporaryDirectory() as home:
        os.environ["TRADESTACK_HOME"] = home
        lab_name, hosts_name = f"bm{run}", f"bh{run}"
        stack = LabStack(lab_name, TOPOLOGIES / "lab.yaml", host_settings=settings, machines=True)
        try:
            before = _available_kb()
            started = time.perf_counter()
            _, files = stack.up()
            up_s = time.perf_counter() - started
            inventory = yaml.safe_load(files.inventory.read_text())["all"]["hosts"]
            booted = [machines.Machine(h, h, Path(stack.daemons_dir) / h / "machine", machines.lab_image())
                      for h in inventory]
            booted = [m for m in booted if m.state.is_dir()]
            wait_for(lambda: all(m.state_of() in ("running", "degraded") for m in booted), 120, 0.5)
            all_up_s = time.perf_counter() - started
            time.sleep(5)
            # a machine's processes run in its host's namespace: the lab's own CPU accounting per host
            sampler = procstat.Sampler(f"{lab_name}-")
            sampler.start()
            time.sleep(IDLE_S)
            sampler.stop()
            names = {m.name for m in booted}
            used = sum(seconds for (host, _), seconds in sampler.used().items() if host in names)
            idle_cpu = used / IDLE_S / len(booted) * 100
            memory_mb = (before - _available_kb()) / 1024 / len(booted)

            key = Path(home) / "id_ed25519"
            shutil.copyfile(files.private_key, key)
            key.chmod(0o600)
            path = Path(home) / "hosts.yaml"
            path.write_text(yaml.safe_dump(registry.hosts_file(lab_name, key), sort_keys=False))
            _cli("stack", "up", "--stack", hosts_name, "--hosts", str(path), "--service-user", settings.service_user,
                 "--service-group", settings.service_group, "--state-root", settings.state_root,
                 "--software-root", settings.software_root, "--yes")
            started = time.perf_counter()
            _cli("deploy", "--stack", hosts_name)
            deploy_s = time.perf_counter() - started
            started = time.perf_counter()
            _cli("deploy", "--stack", hosts_name)
            again_s = time.perf_counter() - started

            estate = open_stack(hosts_name)
            leader = estate.probe.database_leader()
            assert leader, "no database leader after the deploy"
            registry.power(lab_name, leader, "off")
            off = time.perf_counter()
            wait_for(lambda: estate.probe.database_leader() not in (None, leader), 120, 0.5)
            failover_s = time.perf_counter() - off
            registry.power(lab_name, leader, "on")
            on = time.perf_counter()
            back = wait_for(lambda: estate.probe.database_members().get(leader) == "sync_standby", 300, 0.5)
            rejoin_s = time.perf_counter() - on
        finally:
            _cli("stack", "destroy", "--stack", hosts_name, "--yes", check=False)
            stack.destroy()
            remove_created(settings)
    print(f"{dt.date.today()}: lab.yaml as {len(booted)} machines, {os.cpu_count()} cores")
    print(f"base image: cold {'%.0f s' % cold_s if cold_s is not None else 'not measured (--cold)'}, "
          f"cached {cached_s:.2f} s (goal <= 4 min / < 1 s)")
    print(f"stack up {up_s:.1f} s; every machine up (multi-user) {all_up_s:.1f} s after it began (goal <= 20 s)")
    print(f"idle, before any deploy: {memory_mb:.0f} MB and {idle_cpu:.2f} % of a core per machine "
          f"(goal <= 40 MB, <= 0.5 %)")
    print(f"deploy through hosts from nothing {deploy_s:.0f} s; with nothing to change {again_s:.0f} s (goal <= 30 s)")
    print(f"database leader's machine powered off: another member leads after {failover_s:.1f} s; powered on: "
          + (f"the synchronous standby after {rejoin_s:.1f} s, no deploy (goal <= 60 s)" if back
             else f"not the synchronous standby after {rejoin_s:.0f} s"))


def _cli(*args: str, check: bool = True) -> None:
    done = subprocess.run([sys.executable, "-m", "tradestack", *args], capture_output=True, text=True, timeout=1800)
    if check and done.returncode != 0:
        raise SystemExit(f"tradestack {' '.join(args)} exited {done.returncode}: {done.stderr[-2000:]}")


if __name__ == "__main__":
    main()
