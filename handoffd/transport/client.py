"""Synchronous request/reply client for ``handoffd.Client`` and ``handoffctl``.

One DEALER to one daemon's ROUTER. The constructor waits for the ZMTP handshake, watched through
the socket monitor, so failures are told apart and reported as the contract's exceptions:
nobody listening -> ``ConnectionError``; CURVE refused, or a key on one side only (a mechanism
mismatch) -> ``AuthenticationError``. With a key, the server must prove it holds that key (it is
the CURVE server key) before any of its messages is delivered, so an impostor on the address (a
local user who bound the port first) is never read from. Replies are returned as raw frames: the caller decodes them
and matches its request_id.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from typing import Any, Protocol

import zmq

from handoffd.errors import AuthenticationError, ConnectionError, Timeout
from handoffd.transport.base import split_address, tcp_endpoint
from handoffd.transport.keys import CurveKeys

_FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)
_WATCHED = zmq.EVENT_HANDSHAKE_SUCCEEDED | _FAILED | zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED
_START_HINT = "is it running? start one with `handoffd start`"


class Connection(Protocol):
    """What ``handoffd.Client`` needs of a connection to one daemon: ``ControlClient`` over ZeroMQ,
    ``MemoryControlClient`` (transport/memory_client.py) on an in-process network."""

    address: str
    disconnected: bool

    def send(self, frames: Sequence[bytes | memoryview]) -> None: ...

    def recv(self, timeout: float) -> list[bytes] | None: ...

    def close(self) -> None: ...


class ControlClient:
    """A blocking DEALER to the daemon at ``address``; raises on connect failure (see module doc)."""

    def __init__(
        self,
        address: str,
        *,
        curve: CurveKeys | None = None,
        connect_timeout: float = 2.0,
        local_key: str | None = None,
    ) -> None:
        self.address = address
        self.curve = curve
        self.local_key = local_key  # the local key's path when ``curve`` is the local key
        host, port = split_address(address)
        self._ctx: zmq.Context[Any] = zmq.Context()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.linger = 0
        self._sock.setsockopt(zmq.IPV6, 1)
        self._sock.setsockopt(zmq.RECONNECT_IVL, 50)
        self._sock.setsockopt(zmq.RECONNECT_IVL_MAX, 500)
        if curve is not None:
            self._sock.curve_secretkey = curve.secret
            self._sock.curve_publickey = curve.public
            self._sock.curve_serverkey = curve.public
        self._monitor = self._sock.get_monitor_socket(_WATCHED)
        self._monitor.linger = 0
        self._poller = zmq.Poller()
        self._poller.register(self._sock, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)
        self.connected = False
        self.disconnected = False  # the daemon hung up after the handshake
        try:
            self._sock.connect(tcp_endpoint(host, port))
            self._await_handshake(connect_timeout)
        except BaseException:
            self.close()
            raise

    def _await_handshake(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        tcp_seen = dropped_before_handshake = 0
        while not self.connected:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if not self._monitor.poll(max(1, int(left * 1000))):
                break
            event = _monitor_event(self._monitor.recv_multipart())
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.connected = True
            elif event == zmq.EVENT_CONNECTED:
                tcp_seen += 1
            elif event & _FAILED:
                raise AuthenticationError(self._auth_message(event))
            elif event == zmq.EVENT_DISCONNECTED:
                dropped_before_handshake += 1
                if dropped_before_handshake >= 3 and self.curve is not None:
                    # A CURVE server with another key cannot decrypt our HELLO and hangs up.
                    raise AuthenticationError(
                        self._auth_message(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
                    )
        if not self.connected:
            if tcp_seen:
                raise ConnectionError(
                    f"something at {self.address} accepted the connection but never completed the "
                    f"handoffd handshake within {timeout}s; is it a handoffd daemon?"
                )
            raise ConnectionError(
                f"no handoffd daemon answered at {self.address} within {timeout}s; {_START_HINT}"
            )

    def _auth_message(self, event: int) -> str:
        if self.curve is None:
            return (
                f"the daemon at {self.address} refused an unauthenticated connection: it requires "
                "a key. For a cluster started with --key-file pass --key-file (or key_file=) with "
                "its key file; for a keyless daemon of yours, connect without --allow-local-users "
                "(and HANDOFFD_ALLOW_LOCAL_USERS unset) to use your local key"
            )
        if self.local_key is not None:
            # Whatever answered could not prove it holds our local key: nothing it sent was read.
            return (
                f"the process at {self.address} did not prove it holds your local key "
                f"({self.local_key}): it is not a handoffd daemon of yours (another user's "
                "daemon, or not handoffd at all), or it runs with --key-file (pass --key-file) or "
                "with --allow-local-users (pass --allow-local-users, or set "
                "HANDOFFD_ALLOW_LOCAL_USERS=1, to connect without authentication), or it was "
                "started before that key file was replaced (restart it)"
            )
        if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            return (
                f"the daemon at {self.address} refused our cluster key; "
                "this key file belongs to another cluster"
            )
        return (
            f"CURVE handshake with {self.address} failed: the daemon runs without a key, or with "
            "another cluster's key; use the key file the daemon was started with"
        )

    def send(self, frames: Sequence[bytes | memoryview]) -> None:
        """Queue one request; raises ConnectionError if it cannot be queued."""
        try:
            self._sock.send_multipart(frames, zmq.NOBLOCK, copy=False)
        except zmq.ZMQError as exc:
            raise ConnectionError(f"cannot send to the daemon at {self.address}: {exc}") from None

    def recv(self, timeout: float) -> list[bytes] | None:
        """The next reply's frames, or None if none came within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            ready = dict(self._poller.poll(max(0, int(left * 1000))))
            if self._sock in ready:
                return self._sock.recv_multipart(zmq.NOBLOCK)
            if self._monitor in ready:
                event = _monitor_event(self._monitor.recv_multipart())
                if event == zmq.EVENT_DISCONNECTED:
                    # The daemon went away (crash: seen in ms): no reply is coming on this
                    # connection, so let the caller fail over now rather than at its deadline.
                    self.disconnected = True
                    return None
            if time.monotonic() >= deadline:
                return None

    def request(self, frames: Sequence[bytes | memoryview], timeout: float) -> list[bytes]:
        """Send ``frames`` and return the next reply; raises ``Timeout`` if none comes in time."""
        self.send(frames)
        reply = self.recv(timeout)
        if reply is None:
            raise Timeout(f"the daemon at {self.address} did not answer within {timeout}s")
        return reply

    def close(self) -> None:
        """Close the socket, the monitor and the context; idempotent."""
        if self._ctx.closed:
            return
        try:
            self._sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self._monitor.close(linger=0)
        self._sock.close(linger=0)
        self._ctx.term()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Connection", "ControlClient"]


def _monitor_event(frames: list[bytes]) -> zmq.Event:
    """The event of a zmq monitor message: ``zmq.utils.monitor.parse_monitor_message``'s first field,
    without importing that module (it loads zmq.asyncio and so asyncio: ~35 ms of a client's start)."""
    if len(frames) != 2 or len(frames[0]) != 6:
        raise RuntimeError(f"Invalid event message format: {frames}")
    return zmq.Event(struct.unpack("=hi", frames[0])[0])
