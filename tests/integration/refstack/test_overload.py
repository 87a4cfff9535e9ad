"""Beyond one instance's admission limits the gateway answers 429 with Retry-After, fast: no timeouts, no 5xx."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from tradestack.refstack.config import Admission

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tight_gateway(refstack):
    service = refstack.add_gateway("gateway-tight", Admission(max_in_flight=4, orders_per_second=20, burst=5))
    yield service.url
    refstack.stop_service("gateway-tight")


async def _burst(url: str, count: int, connections: int = 64) -> list[tuple[int | str, float, str | None]]:
    """`count` orders at once over `connections` kept-alive connections (opened first, so the figures
    measure the gateway's answers, not TCP handshakes)."""
    async with httpx.AsyncClient(timeout=5, limits=httpx.Limits(max_connections=connections)) as client:
        await asyncio.gather(*(client.get(f"{url}/healthz") for _ in range(connections)))

        async def one(i: int) -> tuple[int | str, float, str | None]:
            start = time.perf_counter()
            try:
                response = await client.post(f"{url}/v1/orders", json={
                    "account": f"acct-{i % 50:05d}", "client_order_id": f"burst-{i}", "symbol": "AAPL",
                    "side": "buy", "qty": 1})
            except httpx.HTTPError as exc:
                return type(exc).__name__, time.perf_counter() - start, None
            return response.status_code, time.perf_counter() - start, response.headers.get("Retry-After")
        return await asyncio.gather(*(one(i) for i in range(count)))


def test_overload_gets_fast_429s_with_retry_after_not_timeouts_or_5xx(tight_gateway):
    results = asyncio.run(_burst(tight_gateway, 300))
    statuses = [status for status, _, _ in results]
    assert set(statuses) <= {201, 429}, sorted(set(map(str, statuses)))
    refused = [(latency, retry) for status, latency, retry in results if status == 429]
    accepted = statuses.count(201)
    assert refused and accepted >= 1  # what fitted the limits got in; the rest was refused at once
    assert all(retry is not None and int(retry) >= 1 for _, retry in refused)
    metrics = httpx.get(f"{tight_gateway}/metrics").text
    refused_total = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                        if line.startswith("tradestack_gateway_admission_refused_total{"))
    assert refused_total == len(refused)
    within = _bucket_share(metrics, "0.005")
    latencies = sorted(latency for latency, _ in refused)
    print(f"\n300 concurrent orders: {accepted} accepted, {len(refused)} refused; in the gateway "
          f"{within:.0%} of 429s took <= 5 ms; seen by the (CPU-bound) client: p50 "
          f"{latencies[len(latencies) // 2] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")
    assert httpx.get(f"{tight_gateway}/healthz").status_code == 200  # health is never throttled


def _bucket_share(metrics: str, le: str) -> float:
    """Share of 429 answers the gateway's own histogram puts at or under `le` seconds."""
    prefix = 'tradestack_gateway_request_seconds_bucket{code="429",'
    buckets = {line.split('le="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
               for line in metrics.splitlines() if line.startswith(prefix) and 'route="/v1/orders"' in line}
    return buckets[le] / buckets["+Inf"]
