"""A Prometheus on loopback holding a history written in advance: samples as OpenMetrics text, made into TSDB blocks
by `promtool tsdb create-blocks-from openmetrics` (how an estate backfills), served by the real `prometheus`.
Used by test_observed_peak.py and tests/bench/bench_peak.py."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from tradestack.polling import wait_for


def write_openmetrics(path: Path, series: Mapping[str, Sequence[tuple[float, float]]]) -> None:
    """Gauges, one per name, each with its (epoch seconds, value) samples in time order."""
    with path.open("w") as out:
        for name, samples in series.items():
            out.write(f"# TYPE {name} gauge\n")
            out.writelines(f"{name} {value:g} {t:.0f}\n" for t, value in samples)
        out.write("# EOF\n")


def build_blocks(openmetrics: Path, data: Path) -> None:
    done = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "-q", str(openmetrics),
                           str(data)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(data: Path, workdir: Path, retention: str = "90d") -> Iterator[str]:
    """`prometheus` over `data` on a free loopback port, scraping nothing; its URL while it runs."""
    assert shutil.which("prometheus"), "prometheus is not installed (make setup)"
    config = workdir / "prometheus.yml"
    config.write_text("global:\n  evaluation_interval: 15s\n")
    port = _free_port()
    log = (workdir / "prometheus.log").open("w")
    proc = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={data}",
                             f"--storage.tsdb.retention.time={retention}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        assert wait_for(ready, 60, 0.2), (workdir / "prometheus.log").read_text()[-2000:]
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
