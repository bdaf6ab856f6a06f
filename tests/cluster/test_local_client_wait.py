"""A local client's wait for a reply (``LocalClient.recv``): one read that waits in the kernel for
at most the timeout (SO_RCVTIMEO, set again only when the timeout changes), then the general
reads for a reply that comes in parts; None once the timeout passed, never before it; a daemon
gone is said at once."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from handoffd.transport import local_socket

pytestmark = pytest.mark.timeout(60)


class Daemon:
    """A bare daemon end: proves the key to one client, then sends what the test says."""

    def __init__(self) -> None:
        self.secret = os.urandom(32)
        self.address = f"wait-{os.getpid()}-{id(self)}:1"
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(local_socket.socket_name(self.address))
        self.server.listen(1)
        self.conn: socket.socket | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.server.accept()
        ours = os.urandom(local_socket.NONCE)
        conn.sendall(ours)
        got = local_socket._recv_exact(conn, local_socket.NONCE + local_socket.PROOF)
        conn.sendall(local_socket._proof(self.secret, b"server", got[: local_socket.NONCE], ours))
        self.conn = conn

    def client(self) -> local_socket.LocalClient:
        client = local_socket.LocalClient(self.address, self.secret, connect_timeout=5)
        self.thread.join(5)
        assert self.conn is not None
        return client

    def later(self, seconds: float, data: bytes) -> None:
        conn = self.conn
        assert conn is not None

        def send() -> None:
            time.sleep(seconds)
            conn.sendall(data)

        threading.Thread(target=send, daemon=True).start()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.server.close()


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    made = Daemon()
    try:
        yield made
    finally:
        made.close()


def reply(*frames: bytes) -> bytes:
    return b"".join(bytes(p) for p in local_socket.pack(list(frames)))


def timeouts(client: local_socket.LocalClient) -> float:
    raw = client._sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)
    seconds, micros = local_socket._TIMEVAL.unpack(raw[: local_socket._TIMEVAL.size])
    return seconds + micros / 1e6  # type: ignore[no-any-return]


def test_a_reply_that_comes_while_waiting_is_read_whole(daemon: Daemon) -> None:
    with daemon.client() as client:
        assert client._sock.gettimeout() is None  # (Python polls nothing)
        daemon.later(0.2, reply(b"head", b"value"))
        assert client.recv(30) == [b"head", b"value"]
        assert 30.0 <= timeouts(client) < 30.02  # the wait the kernel bounds (in its ticks)
        daemon.later(0.0, reply(b"one") + reply(b"two", b"2") + reply(b"x" * 70_000, b""))
        got = [client.recv(30) for _ in range(3)]
        assert got == [[b"one"], [b"two", b"2"], [b"x" * 70_000, b""]]
        assert not client.disconnected


def test_a_reply_in_parts_is_read_on_until_whole(daemon: Daemon) -> None:
    with daemon.client() as client:
        data = reply(b"h" * 300, b"v" * 5000)
        daemon.later(0.0, data[:7])
        daemon.later(0.3, data[7:])
        assert client.recv(30) == [b"h" * 300, b"v" * 5000]


@pytest.mark.parametrize("wait", [0.3, 0.05])
def test_no_reply_is_none_once_the_timeout_passed_and_not_before(
    daemon: Daemon, wait: float
) -> None:
    with daemon.client() as client:
        for _ in range(2):  # (the second with the socket's wait already set)
            start = time.monotonic()
            assert client.recv(wait) is None
            assert time.monotonic() - start >= wait
            assert not client.disconnected
        daemon.later(0.0, reply(b"late"))  # a reply after a timeout is read by the next wait
        assert client.recv(30) == [b"late"]


def test_a_changed_timeout_is_the_kernels_next_wait(daemon: Daemon) -> None:
    with daemon.client() as client:
        assert client.recv(0.1) is None
        assert 0.1 <= timeouts(client) < 0.12
        start = time.monotonic()
        assert client.recv(0.4) is None
        assert time.monotonic() - start >= 0.4 and 0.4 <= timeouts(client) < 0.42
        assert client.recv(0) is None  # no wait at all: nothing set, nothing read


def test_a_daemon_gone_is_said_at_once(daemon: Daemon) -> None:
    with daemon.client() as client:
        assert daemon.conn is not None
        conn: Any = daemon.conn
        threading.Timer(0.1, conn.close).start()
        start = time.monotonic()
        assert client.recv(30) is None and client.disconnected
        assert time.monotonic() - start < 20
