"""Run the whole reference stack on loopback: PostgreSQL, two venues, a router, a gateway.

Every component is a real process (`python -m tradestack refstack serve ...`) with its own
log file; `stop()` ends them in reverse order and removes the temporary database.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel

from ..errors import TradestackError
from .config import Admission, Breaker, GatewayConfig, Route, RouterConfig, VenueConfig, VenueEndpoint
from .localpg import LocalPostgres, free_port
from .schema import migrate, seed_accounts

VENUES = ("exchange", "overnight-ats")
# Regular session: the exchange only (no alternate: orders are rejected with the reason when it
# is unavailable). Overnight: the overnight venue first, the exchange as the alternate.
ROUTES = (Route(session="regular", venues=["exchange"], reroute=False),
          Route(session="overnight", venues=["overnight-ats", "exchange"], reroute=True))


class ServiceFailed(TradestackError):
    """A reference-stack process did not start or become ready."""


@dataclass
class Service:
    name: str
    kind: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""


@dataclass
class LocalRefStack:
    """Start with `start()` (or `with`), read `endpoints()`, end with `stop()`."""

    accounts: int = 1000
    admission: Admission = field(default_factory=Admission)
    breaker: Breaker = field(default_factory=Breaker)
    workdir: Path | None = None
    keep: bool = False
    on_step: Callable[[str], None] = lambda _msg: None
    services: dict[str, Service] = field(default_factory=dict)
    venue_ports: dict[str, tuple[int, int]] = field(default_factory=dict)
    pg: LocalPostgres | None = None

    def __enter__(self) -> "LocalRefStack":
        self.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="tradestack-refstack-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.on_step("starting PostgreSQL")
        self.pg = LocalPostgres.temporary()
        self.pg.init()
        self.pg.start()
        migrate(self.pg.dsn)
        seed_accounts(self.pg.dsn, self.accounts)
        for name in VENUES:
            self.on_step(f"starting venue {name}")
            port, admin = free_port(), free_port()
            self.venue_ports[name] = (port, admin)
            self._spawn(name, "venue", VenueConfig(name=name, port=port, admin_port=admin), admin)
        self.add_router("router-1")
        self.add_gateway("gateway-1", self.admission)
        self.on_step("waiting for readiness")
        self.wait_ready("gateway-1")

    def router_config(self, name: str) -> RouterConfig:
        assert self.pg is not None
        venues = [VenueEndpoint(name=n, port=p[0]) for n, p in self.venue_ports.items()]
        return RouterConfig(instance=name, port=free_port(), dsn=self.pg.dsn, venues=venues, routes=list(ROUTES),
                            breaker=self.breaker)

    def add_router(self, name: str) -> Service:
        self.on_step(f"starting {name}")
        config = self.router_config(name)
        return self._spawn(name, "router", config, config.port)

    def add_gateway(self, name: str, admission: Admission) -> Service:
        assert self.pg is not None
        self.on_step(f"starting {name}")
        config = GatewayConfig(instance=name, port=free_port(), dsn=self.pg.dsn, admission=admission)
        return self._spawn(name, "gateway", config, config.port)

    def _spawn(self, name: str, kind: str, config: BaseModel, http_port: int) -> Service:
        assert self.workdir is not None
        path = self.workdir / f"{name}.json"
        path.write_text(json.dumps(config.model_dump(mode="json"), indent=2))
        log = self.workdir / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "tradestack", "refstack", "serve", kind, "--config", str(path)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        service = Service(name, kind, f"http://127.0.0.1:{http_port}", process, log)
        self.services[name] = service
        self._wait(service, "/healthz")
        return service

    def _wait(self, service: Service, path: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if service.process.poll() is not None:
                    raise ServiceFailed(f"{service.name} exited with {service.process.returncode}:\n"
                                        f"{service.log_tail()}")
                try:
                    response = client.get(service.url + path)
                    if response.status_code == 200:
                        return
                    last = f"{response.status_code} {response.text[:200]}"
                except httpx.HTTPError as exc:
                    last = str(exc) or type(exc).__name__
                time.sleep(0.1)
        raise ServiceFailed(f"{service.name} not ready at {service.url}{path} after {timeout:g} s ({last}):\n"
                            f"{service.log_tail()}")

    def wait_ready(self, name: str, timeout: float = 20.0) -> None:
        self._wait(self.services[name], "/readyz", timeout)

    def stop_service(self, name: str, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        service = self.services.pop(name, None)
        if service is None or service.process.poll() is not None:
            return service.process.returncode if service else None
        service.process.send_signal(sig)
        return _ended(service.process, time.monotonic() + timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every service at once (`timeout` seconds for all of them together, then killed), then the
        database: stopping them one after the other added up their graceful shutdowns."""
        services = [self.services.pop(name) for name in reversed(list(self.services))]
        running = [s for s in services if s.process.poll() is None]
        for service in running:
            service.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for service in running:
            _ended(service.process, deadline)
        if self.pg is not None:
            self.pg.stop()
            if not self.keep:
                self.pg.remove()
        if self.workdir is not None and not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def endpoints(self) -> dict[str, Any]:
        assert self.pg is not None
        by_kind: dict[str, dict[str, str]] = {}
        for service in self.services.values():
            by_kind.setdefault(service.kind, {})[service.name] = service.url
        return {
            "database": self.pg.dsn,
            "gateways": by_kind.get("gateway", {}),
            "routers": by_kind.get("router", {}),
            "venues": {name: {"orders": f"127.0.0.1:{port}", "admin": f"http://127.0.0.1:{admin}"}
                       for name, (port, admin) in self.venue_ports.items()},
            "logs": str(self.workdir),
        }


def _ended(process: subprocess.Popen[bytes], deadline: float) -> int:
    """The exit code of a process told to stop, killed if it has not ended by `deadline` (monotonic)."""
    try:
        return process.wait(max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()
