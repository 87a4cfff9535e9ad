"""Benchmark: `capacity check --depth 2` on a large generated topology. Prints figures; asserts nothing.

Run: .venv/bin/python tests/bench/bench_capacity.py [--sites 100 --carriers 20 --services 20]
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from tradestack.capacity import check_capacity
from tradestack.topology import parse_topology, risk_group_index


def generate(sites: int, carriers: int, services: int, seed: int = 7) -> str:
    """A plausible large footprint: shared power feeds, 3 uplinks per site through 20 facilities per carrier."""
    rnd = random.Random(seed)
    carrier_names = [f"c{i:02d}" for i in range(carriers)]
    site_list = []
    for s in range(sites):
        chosen = rnd.sample(carrier_names, 3)
        site_list.append({
            "name": f"s{s:03d}",
            "role": "active" if s % 5 else "standby",
            # own feed, plus a substation shared by four sites: real shared fate
            "risk_groups": [f"power:feed-{s:03d}", f"power:substation-{s // 4:02d}"],
            "uplinks": [{"carrier": c, "risk_groups": [f"facility:{c}-f{rnd.randrange(40):02d}"]}
                        for c in chosen],
        })
    upstreams = [{"name": f"venue{u:02d}", "risk_groups": [f"facility:venue-colo-{u:02d}"]}
                 for u in range(20)]
    svc = []
    for k in range(services):
        placement = {f"s{s:03d}": 1 + (s + k) % 3 for s in rnd.sample(range(sites), 40)}
        entry = {"name": f"svc{k:02d}", "kind": "stateless",
                 "capacity": {"orders_per_second": 75.0, "sessions": 3000},
                 "placement": placement}
        if k % 4 == 1:
            entry["requires"] = [f"svc{k - 1:02d}"]
        if k % 5 == 2:
            entry["upstreams"] = [f"venue{(k + i) % 20:02d}" for i in range(3)]
        if k == services - 1:
            entry = {"name": "consensus", "kind": "quorum",
                     "placement": {f"s{s:03d}": 1 for s in range(0, sites, max(1, sites // 7))}}
        svc.append(entry)
    doc = {"name": "bench", "peak": {"orders_per_second": 4000, "sessions": 120000}, "headroom": 1.25,
           "carriers": [{"name": c} for c in carrier_names], "sites": site_list,
           "upstreams": upstreams, "services": svc}
    return yaml.safe_dump(doc, sort_keys=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--carriers", type=int, default=20)
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    started = time.perf_counter()
    topology = parse_topology(generate(args.sites, args.carriers, args.services), "bench.yaml")
    load = time.perf_counter() - started
    groups = len(risk_group_index(topology))
    times, report = [], None
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        report = check_capacity(topology, depth=2)
        times.append(time.perf_counter() - t0)
    assert report is not None
    t0 = time.perf_counter()
    failing_json = report.to_dict(failing_only=True)
    render = time.perf_counter() - t0
    print(f"topology: {args.sites} sites, {args.carriers} carriers, {groups} risk groups, "
          f"{args.services} services; parse+validate {load:.2f}s")
    print(f"depth 2: {report.scenario_count:,} scenarios, {report.failing.size:,} failing, "
          f"{len(report.spofs)} SPOFs")
    print(f"check_capacity depth 2: median {statistics.median(times):.2f}s, worst {max(times):.2f}s "
          f"over {args.repeat} runs")
    print(f"JSON of failing scenarios: {len(failing_json['scenarios']):,} entries in {render:.2f}s")

    exe = shutil.which("tradestack")
    if exe:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "bench.yaml"
            path.write_text(generate(args.sites, args.carriers, args.services))
            t0 = time.perf_counter()
            proc = subprocess.run([exe, "capacity", "check", str(path), "--depth", "2", "--json",
                                   "--failing-only"], capture_output=True, check=False)
            wall = time.perf_counter() - t0
        print(f"CLI `tradestack capacity check --depth 2 --json --failing-only`: {wall:.2f}s wall "
              f"(exit {proc.returncode}, {len(proc.stdout):,} bytes)")


if __name__ == "__main__":
    main()
