"""Both builds of the local socket's two-frame cut and join (``transport.local_frames``: compiled,
and its .py through ``pure_build``) on each end of a real local socket: each build's listener
serves each build's client, the key proven both ways, a request and its reply the same frames
whatever their shapes, a wrong key refused, a malformed message closing the connection.
(test_local_socket_framing.py holds the two builds to each other and to ``take``/``pack``.)"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from pure_build import check_builds, pure

from handoffd.transport import local_frames, local_socket

pytestmark = pytest.mark.timeout(60)

PURE_FRAMES = pure(local_frames, "local_frames_ends_pure")
# a second copy of local_socket whose two-frame shortcuts are the .py's
PURE_SOCKET = pure(local_socket, "local_socket_ends_pure")
PURE_SOCKET._small = PURE_FRAMES.small
PURE_SOCKET._whole = PURE_FRAMES.whole
SOCKETS = {"imported": local_socket, "pure": PURE_SOCKET}
KEY = b"k" * 32


def test_the_builds_are_the_compiled_one_and_the_py() -> None:
    check_builds(local_frames, PURE_FRAMES)
    assert local_socket._whole is local_frames.whole and local_socket._small is local_frames.small


class Served:
    """A listener of one build on its own loop thread, answering each request with its frames
    reversed (``reply`` from the loop, as a daemon's)."""

    def __init__(self, build: Any, address: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.got: list[list[bytes]] = []
        ready = threading.Event()

        def deliver(conn: bytes, frames: list[bytes]) -> None:
            self.got.append(frames)
            self.listener.reply(conn, frames[::-1])

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.listener = build.LocalListener(
                address, KEY, self.loop, deliver, lambda: None, max_frames=4, max_frame=1 << 20
            )
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def close(self) -> None:
        def stop() -> None:
            self.listener.close()
            self.loop.stop()

        self.loop.call_soon_threadsafe(stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(params=[(a, b) for a in sorted(SOCKETS) for b in sorted(SOCKETS)])
def served(request: pytest.FixtureRequest) -> Iterator[tuple[Served, Any, str]]:
    listening, dialing = request.param
    address = f"127.0.0.1:{40000 + os.getpid() % 20000}-{listening}-{dialing}"
    server = Served(SOCKETS[listening], address)
    try:
        yield server, SOCKETS[dialing], address
    finally:
        server.close()


def test_each_builds_client_and_listener_exchange_the_same_frames(
    served: tuple[Served, Any, str],
) -> None:
    server, build, address = served
    with build.LocalClient(address, KEY, connect_timeout=5) as client:
        shapes: list[list[bytes]] = [
            [b"head", b"payload"],  # a one-task execute's: the two-frame shortcuts both ways
            [b"h" * 300, b""],
            [b"one"],
            [b"a", b"b" * 70_000, b"c"],  # a big frame sent apart
            [b"x" * (300 * 1024), b"y"],  # a big message read into its own buffer
        ]
        for frames in shapes:
            assert client.request(frames, 10) == frames[::-1]
        assert server.got == shapes
        assert not client.disconnected


def test_a_wrong_key_is_refused_by_each_build(served: tuple[Served, Any, str]) -> None:
    server, build, address = served
    with pytest.raises(build.LocalRefused):
        build.LocalClient(address, b"w" * 32, connect_timeout=5)
    assert server.listener.refused == 1


def test_a_malformed_message_closes_the_connection_in_each_build(
    served: tuple[Served, Any, str],
) -> None:
    server, build, address = served
    with build.LocalClient(address, KEY, connect_timeout=5) as client:
        assert client.request([b"fine", b"x"], 10) == [b"x", b"fine"]
        client._sock.sendall((9).to_bytes(4, "big") + b"\0" * 72)  # 9 frames: over the limit
        assert client.recv(10) is None and client.disconnected
    assert server.listener.refused == 1 and server.got == [[b"fine", b"x"]]
