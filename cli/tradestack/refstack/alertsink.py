"""The on-call's pager, as a drill hears it: Alertmanager's webhook receiver on the clients host. Each POST is
logged as one JSON line with when it arrived ({"received": epoch seconds, "notification": the body}); the drill
reads the log afterwards (drills/alerts.py). Standard library only: it runs wherever the load generator runs."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

MAX_BODY = 4 << 20  # Alertmanager's notifications are kilobytes; anything bigger is not one


class _Sink(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], log: IO[str]):
        super().__init__(address, _Handler)
        self.log, self.lock = log, threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: _Sink

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        received = time.time()
        length = int(self.headers.get("content-length") or 0)
        if not 0 < length <= MAX_BODY:
            self._answer(400)
            return
        try:
            body = json.loads(self.rfile.read(length))
        except ValueError:
            self._answer(400)
            return
        with self.server.lock:
            self.server.log.write(json.dumps({"received": received, "notification": body}) + "\n")
            self.server.log.flush()
        self._answer(200)

    def _answer(self, code: int) -> None:
        self.send_response(code)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the log file is the record


READY = "receiving on"


def serve(host: str, port: int, log: Path, stop: threading.Event,
          on_ready: Callable[[str], None] = lambda line: None) -> None:
    """Receive until `stop` is set, appending to `log`; `on_ready` is told once the port is bound."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as out, _Sink((host, port), out) as sink:
        thread = threading.Thread(target=sink.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
        thread.start()
        on_ready(f"{READY} {host}:{port}")
        stop.wait()
        sink.shutdown()
        thread.join(timeout=5)
