"""The last `make test` run's wall time, from its JUnit report (reports/junit.xml): what CI and a newcomer wait.

It measures nothing itself (a whole test run is half an hour); it reads the suite time pytest wrote.
Run: .venv/bin/python tests/bench/bench_make_test.py [reports/junit.xml]
"""

from __future__ import annotations

import datetime as dt
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPORT = Path(__file__).resolve().parents[2] / "reports" / "junit.xml"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1].startswith("-"):
        print(__doc__.strip())
        return
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else REPORT
    if not path.exists():
        print(f"whole make test: no report at {path} (run make test first)")
        return
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    seconds = sum(float(s.get("time", 0)) for s in suites)
    tests = sum(int(s.get("tests", 0)) for s in suites)
    failed = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
    when = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC)
    print(f"whole make test (the pytest run of {when:%Y-%m-%d %H:%M} UTC): {seconds / 60:.1f} min, "
          f"{tests} tests, {failed} failed or in error")
    # tests/conftest.py: a test at peak has the machine to itself, so the other worker's tests wait for it
    waits = [float(p.get("value", 0)) for p in root.iter("property") if p.get("name") == "machine_wait_s"]
    if waits:
        print(f"  {sum(1 for w in waits if w >= 1)} tests waited for the machine while the other worker's test held "
              f"it, {sum(waits) / 60:.1f} min in all (both workers)")


if __name__ == "__main__":
    main()
