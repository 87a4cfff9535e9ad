"""Running an ASGI app and a service's main loop: uvicorn in-process, stopped by SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn


async def serve_app(app: Any, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve `app` until `stop` is set; in-flight requests finish (uvicorn's graceful shutdown)."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                           http="httptools", lifespan="on", timeout_graceful_shutdown=5,
                                           proxy_headers=False, server_header=False))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # ours, below, own them
    task = asyncio.create_task(server.serve())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    stopper.cancel()
    await task  # a port that cannot be bound ends the process here (uvicorn exits 1 and logs why)


def run_service(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `main(stop)` on uvloop; SIGTERM and SIGINT set `stop` so the service shuts down cleanly."""
    import uvloop

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    uvloop.run(runner())
