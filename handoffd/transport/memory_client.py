"""A client's connection to a node on an in-process ``MemoryNetwork``: ``ControlClient``'s contract
(``send``, ``recv``, ``request``, ``close``, ``disconnected``) without sockets, so the cluster tier
runs whole clusters and their ``Client`` in one process in milliseconds.

The client is synchronous and lives in another thread than the nodes' event loop: requests enter the
node's loop with ``call_soon_threadsafe`` and arrive on its listening side, as a DEALER's would on a
ROUTER (so admission treats them as client requests); replies come back through the network to this
endpoint's queue. Kills and partitions of the network apply to the client's address too; random
drops do not (the network's seeded generator stays the nodes' own, so a failing test replays).
Nothing is authenticated: the network is an object inside this process.
"""

from __future__ import annotations

import itertools
import queue
import time
from collections.abc import Sequence

from handoffd.errors import ConnectionError, Timeout
from handoffd.transport.memory import MemoryNetwork, MemoryTransport

_IDS = itertools.count(1)
_LIVENESS_POLL = 0.05  # seconds between checks that the node is still there while waiting


class MemoryControlClient:
    """A blocking request/reply endpoint to the node at ``address`` on ``network``."""

    def __init__(self, network: MemoryNetwork, address: str, *, connect_timeout: float = 2.0):
        self.network = network
        self.address = address
        self.connected = False
        self.disconnected = False  # the node went away after we connected
        self._me = f"client-{next(_IDS)}.mem"
        self._conn = b"\0" + self._me.encode()  # how the node sees us: a listening-side routing id
        self._replies: queue.SimpleQueue[list[bytes]] = queue.SimpleQueue()
        self._closed = False
        if self._target() is None:
            raise ConnectionError(
                f"no handoffd node at {network.url(address)} (in-process network {network.id}); "
                "is it started, or was it stopped or killed?"
            )
        network.nodes[self._me] = self
        self.connected = True

    # -- the network's side (Endpoint) ----------------------------------------------------------

    @property
    def accepting(self) -> bool:
        return not self._closed

    def _deliver(self, source: str, conn: bytes, frames: list[bytes], listening: bool) -> None:
        self._replies.put(frames)

    # -- ControlClient's contract ---------------------------------------------------------------

    def _target(self) -> MemoryTransport | None:
        target, _ = self.network._route(self._me, self.address)
        return target if isinstance(target, MemoryTransport) else None

    def send(self, frames: Sequence[bytes | memoryview]) -> None:
        """Hand one request to the node's loop; raises ConnectionError if it is not there."""
        target = self._target()
        copied = [bytes(frame) for frame in frames]
        if target is None or not target.deliver_threadsafe(self._me, self._conn, copied):
            self.disconnected = True
            raise ConnectionError(
                f"cannot send to {self.network.url(self.address)}: the node is stopped, killed "
                "or cut off by a partition"
            )

    def recv(self, timeout: float) -> list[bytes] | None:
        """The next reply's frames, or None if none came within ``timeout`` seconds (at once when
        the node is gone, as ZeroMQ's disconnect event makes ``ControlClient`` return)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                return self._replies.get(timeout=max(0.0, min(left, _LIVENESS_POLL)))
            except queue.Empty:
                pass
            if self._target() is None:
                self.disconnected = True
                return None
            if time.monotonic() >= deadline:
                return None

    def request(self, frames: Sequence[bytes | memoryview], timeout: float) -> list[bytes]:
        self.send(frames)
        reply = self.recv(timeout)
        if reply is None:
            raise Timeout(
                f"the node at {self.network.url(self.address)} did not answer within {timeout}s"
            )
        return reply

    def close(self) -> None:
        """Detach from the network; idempotent."""
        self._closed = True
        if self.network.nodes.get(self._me) is self:
            del self.network.nodes[self._me]

    def __enter__(self) -> MemoryControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["MemoryControlClient"]
