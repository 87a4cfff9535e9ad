"""BIRD's control socket read as birdc reads it: a reply's lines with their codes, ended by its final line."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from tradestack.lab import routing

pytestmark = pytest.mark.unit

# what BIRD 2.0.12 answered in a lab edge namespace (sent below in pieces, as a busy daemon may)
REPLY = (b"2002-Name       Proto      Table      State  Since         Info\n"
         b"1002-device1    Device     ---        up     07:01:49.730  \n"
         b" kernel1    Kernel     master4    up     07:01:49.730  \n"
         b" n_ix       BGP        ---        up     07:01:53.492  Established   \n"
         b" n_s_hk1    BGP        ---        start  07:13:16.004  Active        Socket: Connection refused\n"
         b" n_s_wit    BGP        ---        up     07:01:53.989  Established   \n"
         b"0000 \n")


def _bird(path: Path, asked: list[bytes]) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn, server:
            conn.sendall(b"0001 BIRD 2.0.12 ready.\n")
            asked.append(conn.recv(1024))
            for i in range(0, len(REPLY), 50):
                conn.sendall(REPLY[i:i + 50])
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_the_protocols_table_is_read_whole_through_the_control_socket(tmp_path):
    (tmp_path / "edge").mkdir()
    control = tmp_path / "edge" / "bird.ctl"
    asked: list[bytes] = []
    served = _bird(control, asked)
    rows = routing.show_protocols(control, timeout=5)
    served.join(5)
    assert asked == [b"show protocols\n"]
    assert [r[0] for r in rows] == ["Name", "device1", "kernel1", "n_ix", "n_s_hk1", "n_s_wit"]
    assert rows[4][5] == "Active"


def test_established_counts_the_bgp_sessions_of_every_instance(tmp_path):
    for name in ("edge", "carrier"):
        (tmp_path / name).mkdir()
        _bird(tmp_path / name / "bird.ctl", [])
    assert routing.established(tmp_path) == 4


def test_a_bird_that_does_not_answer_has_no_sessions(tmp_path):
    (tmp_path / "gone").mkdir()
    (tmp_path / "gone" / "bird.ctl").touch()  # its socket file left behind, nobody listening
    assert routing.show_protocols(tmp_path / "gone" / "bird.ctl", timeout=1) == []
    assert routing.established(tmp_path) == 0
