"""Small helpers for the reference-stack tests."""

from __future__ import annotations

import time
from typing import Any

import httpx


def wait_for(predicate: Any, timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll until `predicate()` is truthy; return its value (or fail with the last one)."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    assert value, f"condition not met within {timeout} s"
    return value


def place(http: httpx.Client, gateway: str, **fields: Any) -> httpx.Response:
    body = {"account": "acct-00001", "symbol": "AAPL", "side": "buy", "qty": 1, **fields}
    return http.post(f"{gateway}/v1/orders", json=body)


def order_state(http: httpx.Client, gateway: str, order_id: str) -> dict[str, Any]:
    return http.get(f"{gateway}/v1/orders/{order_id}").json()


def settled(http: httpx.Client, gateway: str, order_id: str, states: tuple[str, ...]) -> dict[str, Any]:
    return wait_for(lambda: (o := order_state(http, gateway, order_id))["state"] in states and o)


def set_fault(admin: str, mode: str, **options: Any) -> None:
    response = httpx.put(f"{admin}/admin/fault", json={"mode": mode, **options}, timeout=10)
    assert response.status_code == 200, response.text


def breaker(router: str, venue: str) -> dict[str, Any]:
    venues = httpx.get(f"{router}/venues", timeout=10).json()["venues"]
    return next(v for v in venues if v["venue"] == venue)


def time_until(predicate: Any, timeout: float = 15.0, interval: float = 0.02) -> float:
    """Seconds until `predicate()` holds (fails the test past `timeout`)."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, f"condition not met within {timeout} s"
        time.sleep(interval)
    return time.monotonic() - start


def schemathesis_all(url: str, *, prefix: tuple[str, ...] = (), max_examples: int = 30, seed: int = 20261124,
                     timeout: float = 900) -> tuple[int, str]:
    """schemathesis's CLI with every check and every phase (stateful included) against a served OpenAPI."""
    import subprocess
    import sys
    from pathlib import Path

    exe = str(Path(sys.executable).parent / "schemathesis")
    done = subprocess.run([*prefix, exe, "run", url, "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful",
                           "--max-examples", str(max_examples), "--seed", str(seed), "--no-color", "-w", "1"],
                          capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stdout[-6000:] + done.stderr[-2000:]


def schemathesis_clean(code: int, output: str) -> bool:
    """No failure and no error in any phase, the stateful one included (a warning such as "missing test data"
    for random ids is not a failure)."""
    last = output.strip().splitlines()[-1] if output.strip() else ""
    phases = ("Examples", "Coverage", "Fuzzing", "Stateful")
    return (code == 0 and "failure" not in last and "error" not in last
            and all(f"✅ {p}" in output for p in phases) and "❌" not in output)
