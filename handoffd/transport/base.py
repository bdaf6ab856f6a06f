"""The transport seam: the daemon talks to peers and clients only through this interface.

Two implementations share it: ``ZmqTransport`` (ROUTER to receive, one DEALER per peer to send,
optional CURVE) and ``MemoryTransport`` (in-process, with fault injection, for cluster tests).
Sends never block and never raise: a message that cannot be queued is dropped, counted and
reported as ``False`` -- SWIM and the scheduler already retry, and a blocked loop would stall gossip.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

#: (connection id, frames, listening); called on the event loop, in batches per wake-up.
#: ``listening`` is True for a message that came in on our listening socket (a connection someone
#: opened to us: a client, or a peer sending to us) and False for one that came back on a connection
#: we opened to a peer. The daemon admits client requests only on the former (docs/security.md): a
#: peer we merely connected to (a seed, an mDNS find) has proved nothing about itself.
Handler = Callable[[bytes, list[bytes], bool], None]
#: ``mem://<network id>/<node address>``: a node on an in-process ``MemoryNetwork`` (memory.py)
MEMORY_SCHEME = "mem://"
Frames = Sequence["bytes | memoryview"]


@dataclass
class TransportStats:
    sent: int = 0  # messages handed to the network
    received: int = 0  # messages delivered to the handler
    dropped: int = 0  # inbound messages dropped (limits, rate, faults)
    send_failures: int = 0  # outbound messages that could not be queued
    handler_errors: int = 0  # exceptions raised by the handler (logged, never fatal)
    # drop/failure reason -> count; also "evicted" / "idle_closed": outbound connections closed
    # to stay within Limits.max_peer_sockets / unused for Limits.peer_idle_s
    reasons: dict[str, int] = field(default_factory=dict)

    def count(self, reason: str) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + 1


class Transport(ABC):
    """Peer-to-peer messaging: ``send`` to a peer's address, ``reply`` to a connection."""

    address: str  # "host:port" actually bound (port 0 -> the chosen port)
    stats: TransportStats
    #: Called after each batch of handler calls (the messages one wake-up drained, or the one a
    #: delivery carried): a receiver may hold work back across the batch and finish it here
    #: (the owner feeds a drain's reports to its scheduler as one batch, daemon.owner).
    on_drained: Callable[[], None] | None = None

    @abstractmethod
    async def start(self, handler: Handler) -> None:
        """Start receiving; ``handler(conn, frames)`` runs on the event loop for each message."""

    @abstractmethod
    def send(self, address: str, frames: Frames, control: bool = False) -> bool:
        """Queue ``frames`` to the peer at ``address``; never blocks or raises; False if dropped.
        ``control``: failure-detection traffic (SWIM pings to probe ports), kept off the I/O path
        that carries bulk data where the transport has more than one."""

    @abstractmethod
    def reply(self, conn: bytes, frames: Frames) -> bool:
        """Send ``frames`` back to connection ``conn`` (as given to the handler); False if dropped."""

    @abstractmethod
    def forget(self, address: str) -> None:
        """Close the connection to a peer (dead or left); a later send reconnects."""

    def close_idle(self, keep: Collection[str]) -> int:
        """Close outbound connections unused for ``Limits.peer_idle_s``, except those to addresses
        in ``keep`` (live members); returns how many were closed. Nothing to do by default."""
        return 0

    async def refuses(self, address: str, timeout: float = 1.0) -> bool:
        """True if the host of ``address`` answers that nothing listens there: the process is
        gone while its host is up -- a crash, which a partition never looks like (it times out
        or is unreachable). False when we cannot tell (daemon/fencing.py uses it)."""
        return False

    def probe_responder(self, name: str, on_ping: Callable[[str, Any], None]) -> Any:
        """A started ``transport.responder.ProbeResponder`` answering Pings off the loop on a port
        of its own, or None where probes are answered on the loop (the in-memory network)."""
        return None

    @abstractmethod
    async def close(self) -> None:
        """Stop receiving and close every socket; idempotent."""


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` -> (host, port); raises ValueError if malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"not a host:port address: {address!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


def join_address(host: str, port: int) -> str:
    """(host, port) -> ``"host:port"``, with IPv6 literals bracketed."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def tcp_endpoint(host: str, port: int | str) -> str:
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"
