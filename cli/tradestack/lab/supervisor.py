"""A lab host's supervised programs, asked of its supervisord over the XML-RPC unix socket.

`supervisorctl status` is a Python process per question: about 0.35 s of CPU each, so one steady-state
check of an 18-host lab cost six CPU-seconds, taken from the stack before and after every drill and in
every wait for a restarted program. The socket is a file on the hosts' shared filesystem, so no namespace
needs entering either.
"""

from __future__ import annotations

import http.client
import socket
import xmlrpc.client
from pathlib import Path

UNRESPONSIVE = {"supervisord": "unresponsive"}


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str, timeout: float):
        super().__init__()
        self._path, self._timeout = path, timeout

    def make_connection(self, host: object) -> http.client.HTTPConnection:
        return _UnixConnection(self._path, self._timeout)


def program_states(sock: Path, timeout: float = 10.0) -> dict[str, str]:
    """Program -> state in lower case, as `supervisorctl status` names them (`group:name` when they differ).
    Empty when no supervisord listens (not deployed, or the host crashed); `{"supervisord": "unresponsive"}`
    when one holds the socket but never answers (a frozen host)."""
    proxy = xmlrpc.client.ServerProxy("http://localhost", transport=_UnixTransport(str(sock), timeout))
    try:
        infos = proxy.supervisor.getAllProcessInfo()
    except TimeoutError:
        return dict(UNRESPONSIVE)
    except (OSError, xmlrpc.client.Error, http.client.HTTPException):
        return {}
    return {(i["name"] if i["group"] == i["name"] else f"{i['group']}:{i['name']}"): str(i["statename"]).lower()
            for i in infos}
