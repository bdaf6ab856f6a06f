"""In-process transport for whole-cluster tests in milliseconds (memberlist's mock network).

A ``MemoryNetwork`` connects ``MemoryTransport``s by arbitrary address strings. Delivery is
``loop.call_soon`` (or ``call_later`` with an injected delay), frames are copied to ``bytes`` on
send like the wire would, and faults come from a seeded ``random.Random`` so a failing test
replays. Direction is kept as on ZeroMQ: ``send`` arrives on the receiver's "listening socket"
(``listening`` True, ``conn`` = ``b"\\0"`` + the sender's address, like a libzmq routing id) and a
``reply`` to such a conn arrives on the sender's "outbound connection" (``listening`` False, ``conn``
= the replier's address, as ``ZmqTransport`` gives a DEALER's peer); a reply to that goes back as a
``send`` would.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import weakref
from collections.abc import Iterable
from typing import Protocol

from handoffd.transport.base import MEMORY_SCHEME, Frames, Handler, Transport, TransportStats

log = logging.getLogger("handoffd.transport")

SCHEME = MEMORY_SCHEME
_NETWORKS: weakref.WeakValueDictionary[str, MemoryNetwork] = weakref.WeakValueDictionary()
_IDS = itertools.count(1)


class Endpoint(Protocol):
    """What the network delivers to: a node's transport, or a client's endpoint
    (``handoffd.transport.memory_client``)."""

    @property
    def accepting(self) -> bool: ...

    def _deliver(self, source: str, conn: bytes, frames: list[bytes], listening: bool) -> None: ...


def find_network(url: str) -> tuple[MemoryNetwork, str]:
    """``mem://<id>/<address>`` -> (the network, the node address); ValueError if malformed or the
    network is gone."""
    if not url.startswith(SCHEME) or "/" not in url[len(SCHEME) :]:
        raise ValueError(f"not an in-memory address: {url!r} (expected mem://<network>/<address>)")
    network_id, _, address = url[len(SCHEME) :].partition("/")
    network = _NETWORKS.get(network_id)
    if network is None:
        raise ValueError(f"no in-process network {network_id!r} in this process (address {url!r})")
    return network, address


class MemoryNetwork:
    """The shared medium, with fault injection; every fault is per directed link (a -> b)."""

    def __init__(self, seed: int = 0) -> None:
        self.id = f"net{next(_IDS)}"
        _NETWORKS[self.id] = self
        self.rng = random.Random(seed)
        self.nodes: dict[str, Endpoint] = {}
        self._drop: dict[tuple[str, str], float] = {}
        self._delay: dict[tuple[str, str], float] = {}
        self._group_of: dict[str, int] | None = None  # address -> partition group; None: healed
        self._killed: set[str] = set()
        self.dropped = 0  # messages lost to faults

    def transport(self, address: str) -> MemoryTransport:
        """A new transport attached at ``address``."""
        return MemoryTransport(self, address)

    def url(self, address: str) -> str:
        """The address a ``Client`` in this process connects to for the node at ``address``."""
        return f"{SCHEME}{self.id}/{address}"

    def drop(self, a: str, b: str, prob: float, *, both: bool = True) -> None:
        """Lose each message a -> b (and b -> a if ``both``) with probability ``prob``."""
        self._drop[(a, b)] = prob
        if both:
            self._drop[(b, a)] = prob

    def delay(self, a: str, b: str, seconds: float, *, both: bool = True) -> None:
        """Deliver messages a -> b (and b -> a if ``both``) ``seconds`` late."""
        self._delay[(a, b)] = seconds
        if both:
            self._delay[(b, a)] = seconds

    def partition(self, groups: Iterable[Iterable[str]]) -> None:
        """Only addresses in the same group can talk; unlisted addresses form one more group."""
        group_of: dict[str, int] = {}
        for index, group in enumerate(groups):
            for address in group:
                group_of[address] = index
        self._group_of = group_of

    def heal(self) -> None:
        """Remove partitions, drops and delays (killed nodes stay dead; see ``revive``)."""
        self._group_of = None
        self._drop.clear()
        self._delay.clear()

    def kill(self, address: str) -> None:
        """The node at ``address`` stops sending and receiving, as if its process died."""
        self._killed.add(address)

    def revive(self, address: str) -> None:
        self._killed.discard(address)

    def is_killed(self, address: str) -> bool:
        return address in self._killed

    def _route(self, source: str, target: str) -> tuple[Endpoint | None, float]:
        """The receiving endpoint (None: unreachable) and the delivery delay."""
        if source in self._killed or target in self._killed:
            return None, 0.0
        node = self.nodes.get(target)
        if node is None or not node.accepting:
            return None, 0.0
        if self._group_of is not None and self._group_of.get(source, -1) != self._group_of.get(
            target, -1
        ):
            return None, 0.0
        return node, self._delay.get((source, target), 0.0)

    def _lost(self, source: str, target: str) -> bool:
        prob = self._drop.get((source, target))
        if prob and self.rng.random() < prob:
            self.dropped += 1
            return True
        return False


class MemoryTransport(Transport):
    """Same contract as ``ZmqTransport``; unreachable means ``send`` returns False at once."""

    def __init__(self, network: MemoryNetwork, address: str) -> None:
        if address in network.nodes:
            raise ValueError(f"address {address!r} is already attached to this network")
        self.network = network
        self.address = address
        self.stats = TransportStats()
        self._handler: Handler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn = address.encode()  # how receivers of our replies see us
        self._routing_id = b"\0" + self._conn  # how receivers of our sends see us
        network.nodes[address] = self

    async def start(self, handler: Handler) -> None:
        self._loop = asyncio.get_running_loop()
        self._handler = handler

    @property
    def accepting(self) -> bool:
        return self._handler is not None

    def deliver_threadsafe(self, source: str, conn: bytes, frames: list[bytes]) -> bool:
        """A client's request from another thread, arriving on our listening side; False if we
        are not running (the client then reports that nobody answered)."""
        loop = self._loop
        if self._handler is None or loop is None or loop.is_closed():
            return False
        try:
            loop.call_soon_threadsafe(self._deliver, source, conn, frames, True)
        except RuntimeError:  # the loop closed in between
            return False
        return True

    def send(self, address: str, frames: Frames, control: bool = False) -> bool:
        return self._transmit(address, frames, True)

    def reply(self, conn: bytes, frames: Frames) -> bool:
        # A conn from our listening side is the peer's routing id: the answer goes back on the
        # connection it opened (its outbound side); one from our outbound side is a peer address.
        listening = not conn.startswith(b"\0")
        try:
            address = (conn if listening else conn[1:]).decode()
        except UnicodeDecodeError:
            return self._fail("reply_unroutable")
        return self._transmit(address, frames, listening)

    async def refuses(self, address: str, timeout: float = 1.0) -> bool:
        """A stopped or crashed node refuses; a killed one (its host down), one behind a partition
        or one every message to is dropped cannot be told from a slow one."""
        net = self.network
        if self.address in net._killed or address in net._killed:
            return False
        group_of = net._group_of
        if group_of is not None and group_of.get(self.address, -1) != group_of.get(address, -1):
            return False
        if net._drop.get((self.address, address), 0.0) >= 1.0:
            return False
        node = net.nodes.get(address)
        return node is None or not node.accepting

    def forget(self, address: str) -> None:
        """Nothing is cached per peer in memory; kept for the interface."""

    async def close(self) -> None:
        self._handler = None
        if self.network.nodes.get(self.address) is self:
            del self.network.nodes[self.address]

    def _transmit(self, address: str, frames: Frames, listening: bool) -> bool:
        if self._handler is None or self._loop is None:
            return self._fail("not_running")
        target, delay = self.network._route(self.address, address)
        if target is None:
            return self._fail("unreachable")
        self.stats.sent += 1
        if self.network._lost(self.address, address):
            return True  # lost in flight: the sender cannot know
        copied = [bytes(frame) for frame in frames]
        conn = self._routing_id if listening else self._conn
        if delay > 0:
            self._loop.call_later(delay, target._deliver, self.address, conn, copied, listening)
        else:
            self._loop.call_soon(target._deliver, self.address, conn, copied, listening)
        return True

    def _deliver(self, source: str, conn: bytes, frames: list[bytes], listening: bool) -> None:
        # Re-checked at delivery: a kill or partition applies to messages already in flight.
        handler = self._handler
        if handler is None or self.network._route(source, self.address)[0] is not self:
            self.stats.dropped += 1
            self.stats.count("lost_in_flight")
            return
        self.stats.received += 1
        try:
            handler(conn, frames, listening)
        except Exception:
            self.stats.handler_errors += 1
            log.exception("handler failed on a message from %r", conn)
        if self.on_drained is not None:  # one message per delivery: a batch of one
            try:
                self.on_drained()
            except Exception:
                self.stats.handler_errors += 1
                log.exception("drain handler failed after a message from %r", conn)

    def _fail(self, reason: str) -> bool:
        self.stats.send_failures += 1
        self.stats.count(reason)
        return False


__all__ = ["MemoryNetwork", "MemoryTransport"]
