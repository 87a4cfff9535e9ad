"""Prometheus's HTTP query API (/api/v1/query, /api/v1/query_range), wrapped once.

Errors (nothing listening, a refused or malformed query, a Prometheus that answered "error") become
`PrometheusError` naming the server and the query, so callers never see httpx or Prometheus's JSON.
Samples come back as plain floats with their times in epoch seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..errors import InputError, TradestackError


class PrometheusError(TradestackError):
    """The Prometheus server did not answer, or refused the query."""


@dataclass(frozen=True)
class Series:
    """One time series: its labels and its samples, (epoch seconds, value) in time order."""

    labels: dict[str, str]
    samples: list[tuple[float, float]]


class Prometheus:
    """One Prometheus server's query API."""

    def __init__(self, url: str, timeout_s: float = 10.0):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InputError(f"not a Prometheus URL: {url!r} (expected http://HOST:PORT)")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def _get(self, endpoint: str, params: dict[str, str]) -> Any:
        where = f"{self.url}{endpoint}"
        try:
            response = httpx.get(where, params=params, timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise PrometheusError(f"Prometheus at {self.url} did not answer: {exc}") from exc
        try:
            body = response.json()
        except ValueError:
            raise PrometheusError(f"Prometheus at {self.url} answered {response.status_code} without JSON to "
                                  f"{params.get('query')!r}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"Prometheus at {self.url} refused {params.get('query')!r}: "
                                  f"{body.get('errorType', response.status_code)}: {body.get('error', '')}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[Series]:
        """An instant query. A range selector (`metric[1h]`) returns its raw samples with their own times."""
        params = {"query": expr} | ({"time": _epoch(at)} if at is not None else {})
        return _series(self._get("/api/v1/query", params))

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[Series]:
        """The expression evaluated every `step_s` seconds from `start` to `end` (epoch seconds)."""
        return _series(self._get("/api/v1/query_range", {"query": expr, "start": _epoch(start), "end": _epoch(end),
                                                         "step": f"{step_s:g}s"}))


def _epoch(t: float) -> str:
    return f"{t:.3f}"


def _series(data: dict[str, Any]) -> list[Series]:
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar":
        return [Series({}, _finite([result]))]
    if kind == "vector":
        return [Series(dict(r.get("metric", {})), _finite([r["value"]])) for r in result]
    if kind == "matrix":
        return [Series(dict(r.get("metric", {})), _finite(r.get("values", []))) for r in result]
    raise PrometheusError(f"unexpected result type from Prometheus: {kind!r}")


def _finite(pairs: list[list[Any]]) -> list[tuple[float, float]]:
    """Samples as numbers; NaN and infinities (an empty rate, a division by zero) are not figures and are left out."""
    out = [(float(t), float(v)) for t, v in pairs]
    return [(t, v) for t, v in out if math.isfinite(v)]
