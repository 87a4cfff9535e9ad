"""A host's supervised programs, asked of its supervisord over the XML-RPC unix socket.

`supervisorctl status` is a Python process per question: about 0.35 s of CPU each, so one steady-state
check of an 18-host stack cost six CPU-seconds, taken from the stack before and after every drill and in
every wait for a restarted program. Where the socket is reachable as a file, `program_states` asks it directly;
on a remote host, `remote_query` runs this same module there with the host's own `python3` (the standard
library only: nothing of tradestack need be installed on the host), about a tenth of supervisorctl's cost.
"""

from __future__ import annotations

import configparser
import http.client
import json
import socket
import sys
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


def socket_of(conf: Path) -> Path:
    """The unix socket a supervisord configuration serves (as `supervisorctl -c conf` finds it)."""
    parser = configparser.RawConfigParser(strict=False)
    parser.read(conf)
    url = parser.get("supervisorctl", "serverurl", fallback="")
    if url.startswith("unix://"):
        return Path(url.removeprefix("unix://"))
    return Path(parser.get("unix_http_server", "file", fallback=str(Path(conf).parent / "supervisor.sock")))


def remote_query(conf: str, timeout: float = 5.0) -> tuple[list[str], str]:
    """argv and standard input that print a host's `program_states` as JSON, run on that host."""
    return ["python3", "-", conf, str(timeout)], Path(__file__).read_text()


def parse_remote(stdout: str) -> dict[str, str]:
    """What `remote_query` printed; empty when it printed nothing readable (no python3, no supervisord)."""
    try:
        states = json.loads(stdout)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in states.items()} if isinstance(states, dict) else {}


if __name__ == "__main__":  # run on a host by remote_query
    print(json.dumps(program_states(socket_of(Path(sys.argv[1])), float(sys.argv[2]))))
