"""The local client socket (``transport/local_socket.py``) against another local user, with real
daemons: nobody (uid 65534) squatting the daemon's abstract socket name before it starts gets not
one byte from root's client, which falls back to ZeroMQ and runs its DAG; nobody dialing a running
daemon's local socket is closed before the daemon sends anything (no nonce, nothing read)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_security_local import NobodyProcess, _add, needs_root, one_function_dag, run_as_nobody

import handoffd
from handoffd.testing import free_port, wait_for
from handoffd.transport import local_socket

pytestmark = pytest.mark.timeout(180)

# nobody binds the daemon-to-be's abstract name and records what each connection sends it.
SQUATTER = """
import socket
from handoffd.transport import local_socket
address = sys.argv[1]
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.bind(local_socket.socket_name(address))
sock.listen(16)
print("ready", flush=True)
while True:
    conn, _ = sock.accept()
    conn.settimeout(2.0)
    try:
        conn.sendall(os.urandom(local_socket.NONCE))  # what a daemon says first
    except OSError:
        pass  # the client may have closed already: it checks our uid before reading
    got = b""
    try:
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            got += chunk
    except OSError:
        pass
    print("got", len(got), flush=True)
    conn.close()
"""

# nobody dials a running daemon's local socket and reports what it read before EOF.
DIALER = """
import socket
from handoffd.transport import local_socket
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.settimeout(10.0)
sock.connect(local_socket.socket_name(sys.argv[1]))
try:
    sock.sendall(os.urandom(local_socket.NONCE + local_socket.PROOF))
except OSError:
    pass
got = b""
try:
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    eof = True
except socket.timeout:
    eof = False
except OSError:
    eof = True
print(json.dumps({"read": len(got), "eof": eof}))
"""


class Squatter(NobodyProcess):
    """nobody's listener on the abstract name of ``address``."""

    def __init__(self, address: str) -> None:
        super().__init__(SQUATTER, [address], "nobody's squatter listening")

    def received(self) -> list[int]:
        return [int(line.split()[1]) for line in self.lines if line.startswith("got ")]


@needs_root
def test_a_squatted_local_socket_gets_nothing_and_the_client_uses_zeromq(daemons: Any) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    squatter = Squatter(address)
    try:
        daemon = daemons.start(cpu=1, port=port)
        wait_for(lambda: "no local client socket" in daemon.log(), 30, what="the daemon's warning")
        with handoffd.connect(daemon.address, timeout=10) as client:
            assert client.execute(one_function_dag(_add, 2, 3)) == {"f": 5}
        # The client dialed the squatter (it holds the name), saw another uid, and closed
        # before it sent anything: not even its nonce.
        wait_for(lambda: squatter.received(), 10, what="the squatter's connection ending")
        assert squatter.received() and all(n == 0 for n in squatter.received()), squatter.lines
        assert daemon.alive()
    finally:
        squatter.close()


@needs_root
def test_another_user_dialing_the_local_socket_is_closed_unanswered(
    daemons: Any, tmp_path: Path
) -> None:
    daemon = daemons.start(cpu=1)
    with handoffd.connect(daemon.address) as client:  # the socket is up, root's client uses it
        assert client.execute(one_function_dag(_add, 1, 1)) == {"f": 2}
    assert "no local client socket" not in daemon.log()
    report = run_as_nobody(DIALER, daemon.address)
    assert report == {"read": 0, "eof": True}, report
    assert local_socket.enabled()
    with handoffd.connect(daemon.address) as client:
        assert client.execute(one_function_dag(_add, 2, 2)) == {"f": 4}
    assert daemon.alive()
