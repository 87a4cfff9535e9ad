"""The Kubernetes API adapter gives up on an API server that does not answer (a drill cuts one off on purpose)."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tradestack.adapters.kube import Cluster, KubeError

pytestmark = pytest.mark.unit


@pytest.fixture
def silent_server():
    """Accepts TCP connections and never says a word: not even the TLS handshake is answered."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return
    threading.Thread(target=accept, daemon=True).start()
    yield server.getsockname()[1]
    server.close()
    for conn in held:
        conn.close()


@pytest.mark.timeout(60)
def test_an_api_server_that_never_answers_is_an_error_within_twice_the_timeout(silent_server, tmp_path):
    kubeconfig = tmp_path / "silent.kubeconfig"
    kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "https://127.0.0.1:{silent_server}", insecure-skip-tls-verify: true}}}}]
contexts: [{{name: c, context: {{cluster: c, user: u}}}}]
current-context: c
users: [{{name: u, user: {{token: t}}}}]
""")
    api = Cluster(kubeconfig, "silent", timeout=0.5)
    started = time.monotonic()
    with pytest.raises(KubeError, match="silent: list nodes: API server unreachable"):
        api.nodes()
    assert time.monotonic() - started < 2 * 0.5 + 1.0  # one retry, each bounded by the timeout
    api.close()
