"""ZeroMQ transport: one ROUTER to receive, one DEALER per peer to send, optional CURVE.

Why plain (sync) sockets driven by ``loop.add_reader(sock.FD)`` instead of ``zmq.asyncio``: every
wake-up drains a socket with NOBLOCK until EAGAIN (capped for fairness), so there is no Future per
message (DESIGN.md section 5: ~4x less CPU unbatched), and no socket call can ever block the loop.

The ZeroMQ FD is edge-triggered and any operation on a socket (a send included) may consume the
edge. So after a send on a socket we also read from (the ROUTER after ``reply``, a DEALER after
``send``), the socket is marked dirty and re-drained on the next loop iteration; a send made
within a drain is checked (ZMQ_EVENTS) once at the drain's end instead, and re-drained only if a
message waits (``_sent_on``); a capped drain re-schedules itself the same way.

DEALERs use ``IMMEDIATE=1`` so nothing is queued for a dead peer and delivered stale after it
comes back. The price is that the first messages to a new peer (before its TCP and CURVE handshake
completes) would fail; they wait in a small per-peer queue, retried with backoff until
``connect_timeout``, then dropped and counted. Replies that reach our DEALERs (a peer used
``reply``) are delivered with ``conn`` = the peer's address and ``listening`` False, and ``reply`` to
such a conn sends through that DEALER, matching ``MemoryTransport``.

Outbound DEALERs are bounded (an attacker who can name addresses must not exhaust our fds): an LRU
of at most ``Limits.max_peer_sockets`` (the least recently used is closed to open another), and
``close_idle`` closes those unused for ``Limits.peer_idle_s`` unless they lead to a live member.

With CURVE, the ROUTER is a CURVE server and a ZAP handler on the same loop admits only clients
presenting the cluster public key, so a peer or client without the key is refused during the
handshake, before any message is read.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection
from typing import Any

import zmq
from zmq.utils import z85

from handoffd.config import Limits
from handoffd.transport import handshakes, local_socket
from handoffd.transport.base import (
    Frames,
    Handler,
    Transport,
    TransportStats,
    join_address,
    split_address,
    tcp_endpoint,
)
from handoffd.transport.keys import CurveKeys, answer_zap

log = logging.getLogger("handoffd.transport")

BULK = 1  # I/O thread affinity (bit mask) of the ROUTER and of DEALERs that carry data
CONTROL = 2  # ... of DEALERs to probe ports: pings and acks never queue behind a big value

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
DRAIN_CAP = 512  # messages per socket per wake-up, so one busy peer cannot starve the rest
# Seconds of handling per socket per wake-up: the messages of a batch not handled by then are kept
# (``_backlog``) and handled first on the next loop iteration, in order, before anything new is
# read from that socket; timers and other sockets run in between.
DRAIN_SECONDS = 0.04
# Plain ints: zmq.EVENTS and zmq.POLLIN are enums, and enum arithmetic costs a call per drain.
_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)
_SEND: Any = zmq.backend.Socket.send  # the compiled send: not pyzmq's Python layer per part
_NOBLOCK, _MORE = int(zmq.NOBLOCK), int(zmq.NOBLOCK | zmq.SNDMORE)
KEEP_BYTES = 64 * 1024  # opaque frames this large are received without a copy (see _read_batch)


class _Peer:
    __slots__ = (
        "address",
        "sock",
        "pending",
        "deadline",
        "delivered",
        "retry_delay",
        "conn",
        "last_used",
        "monitor",
    )

    def __init__(self, address: str, sock: zmq.Socket[Any], deadline: float, now: float) -> None:
        self.address = address
        self.conn = address.encode()
        self.sock = sock
        self.pending: deque[Frames] = deque()  # waiting for the first connection to complete
        self.deadline = deadline  # give up on ``pending`` after this loop time
        self.delivered = False  # a send succeeded once: later EAGAINs mean dead or full, not new
        self.retry_delay = 0.001
        self.last_used = now  # loop time of our last send through it (close_idle)
        self.monitor: zmq.Socket[Any] | None = None  # until its first handshake succeeds


def send_parts(sock: zmq.Socket[Any], frames: Frames) -> None:
    """``sock.send_multipart(frames, zmq.NOBLOCK, copy=False)``, cheaper: each part straight to
    the compiled send, copied unless it is KEEP_BYTES or more (pyzmq's copy_threshold, so the
    same parts go zero-copy as before). ``send_multipart`` adds a Python type check and a sugar
    ``send`` per part, and its non-copying path builds a memoryview to find a small part is to
    be copied after all: ~30 us for a 3-part message against ~7 us. zmq.Again (the peer's queue
    is full) can only come from the first part: a message is queued whole or not at all."""
    for part in frames:  # a TypeError before any part went: never half a message in the pipe
        if type(part) is not bytes and type(part) is not memoryview:
            memoryview(part)
    last = len(frames) - 1
    for i, part in enumerate(frames):
        _SEND(sock, part, _MORE if i < last else _NOBLOCK, len(part) < KEEP_BYTES)


class ZmqTransport(Transport):
    """ROUTER bound on ``host:port`` (port 0 picks one) plus a cached DEALER per peer."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        curve: CurveKeys | None = None,
        limits: Limits | None = None,
        connect_timeout: float = 1.0,
        reconnect_ivl: float = 0.1,
        reconnect_ivl_max: float = 2.0,
        local_clients: bool = True,
    ) -> None:
        self.local_clients = local_clients and curve is not None and local_socket.enabled()
        self._local: local_socket.LocalListener | None = None  # clients on this host (start)
        self.limits = limits if limits is not None else Limits()
        self.stats = TransportStats()
        self.curve = curve
        self._cluster_public = z85.decode(curve.public) if curve is not None else b""
        self.connect_timeout = connect_timeout
        self._reconnect_ms = (int(reconnect_ivl * 1000), int(reconnect_ivl_max * 1000))
        # Two I/O threads: one for data (BULK), one for our pings (CONTROL). A value of hundreds
        # of MiB is CURVE-boxed whole by the I/O thread that sends it (~1-2 s for 600 MiB): on one
        # thread our pings and their acks waited behind it and a peer was declared DEAD.
        self._ctx: zmq.Context[Any] = zmq.Context(io_threads=2)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handler: Handler | None = None
        self._peers: OrderedDict[str, _Peer] = OrderedDict()  # least recently used first
        self._peers_by_conn: dict[bytes, _Peer] = {}
        self._drains: dict[zmq.Socket[Any], Callable[[], None]] = {}
        self._dirty: set[zmq.Socket[Any]] = set()
        self._backlog: dict[zmq.Socket[Any], list[list[Any]]] = {}  # read, not handled yet
        self._check_scheduled = False
        self._draining = False  # a drain delivers: its sends are checked at its end (_sent_on)
        self._sent: set[zmq.Socket[Any]] = set()
        self._rate_counts: dict[bytes, int] = {}
        self._rate_window = 0.0
        self._closed = False
        # Told of each failed handshake (direction, where, why): handshakes.py.
        self.on_handshake_failed: Callable[[str, str, str], None] | None = None
        self._inbound_watch: handshakes.InboundWatch | None = None
        self._responder: Any = None
        self._zap: zmq.Socket[Any] | None = None
        try:
            if curve is not None:
                self._zap = self._ctx.socket(zmq.REP)
                self._zap.linger = 0
                self._zap.bind(ZAP_ENDPOINT)  # before the ROUTER accepts anyone
            self._router = self._make_router(host, port)
        except BaseException:
            self._ctx.destroy(linger=0)
            raise
        self.host = host
        endpoint = self._router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.port = int(endpoint.rsplit(":", 1)[1])
        self.address = join_address(host, self.port)

    def _make_router(self, host: str, port: int) -> zmq.Socket[Any]:
        sock = self._ctx.socket(zmq.ROUTER)
        sock.linger = 0
        sock.setsockopt(zmq.AFFINITY, BULK)
        # Unroutable replies raise EHOSTUNREACH (caught). No ROUTER_HANDOVER: nothing of ours sets
        # a routing id, and with it a connection presenting another's id would take its replies.
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.rcvhwm = self.limits.max_queue
        sock.sndhwm = self.limits.max_queue
        sock.setsockopt(
            zmq.MAXMSGSIZE, max(self.limits.max_frame_bytes, self.limits.max_body_bytes)
        )
        if ":" in host:
            sock.setsockopt(zmq.IPV6, 1)
        if self.curve is not None:
            sock.curve_secretkey = self.curve.secret
            sock.curve_publickey = self.curve.public
            sock.curve_server = True
        try:
            sock.bind(tcp_endpoint(host, port if port else "*"))
        except zmq.ZMQError:
            sock.close(linger=0)
            raise
        return sock

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self, handler: Handler) -> None:
        if self._closed:
            raise RuntimeError("transport is closed")
        self._loop = asyncio.get_running_loop()
        self._handler = handler
        if self._zap is not None:
            self._watch(self._zap, self._drain_zap)
        self._watch(self._router, self._drain_router)
        monitor = self._router.get_monitor_socket(handshakes.INBOUND_EVENTS)
        self._inbound_watch = handshakes.InboundWatch(monitor, self._handshake_failed)
        self._watch(monitor, self._inbound_watch.drain)
        if self.local_clients:
            assert self.curve is not None
            try:
                self._local = local_socket.LocalListener(
                    self.address,
                    self.curve.secret,
                    self._loop,
                    self._deliver_local,
                    self._drained,
                    max_frames=self.limits.max_frames + 1,  # body + opaque frames
                    max_frame=max(self.limits.max_frame_bytes, self.limits.max_body_bytes),
                    max_queue=self.limits.max_queue,
                )
            except OSError as exc:  # the name is taken (by whom, we cannot tell): TCP serves
                log.warning("no local client socket for %s: %s", self.address, exc)

    def _handshake_failed(self, direction: str, where: str, why: str) -> None:
        self.stats.count(f"handshake_failed_{direction}")
        if self.on_handshake_failed is not None:
            self.on_handshake_failed(direction, where, why)

    def _drain_peer_monitor(self, peer: _Peer) -> None:
        monitor = peer.monitor
        if monitor is None:
            return
        if handshakes.drain_outbound(monitor, peer.address, self._handshake_failed):
            self._stop_peer_monitor(peer)  # the handshake succeeded, or failed and was reported

    def _stop_peer_monitor(self, peer: _Peer) -> None:
        monitor, peer.monitor = peer.monitor, None
        if monitor is not None:
            self._unwatch(monitor)
            try:
                peer.sock.disable_monitor()
            except zmq.ZMQError:
                pass
            monitor.close(linger=0)

    def _watch(self, sock: zmq.Socket[Any], drain: Callable[[], None]) -> None:
        assert self._loop is not None
        self._drains[sock] = drain
        self._loop.add_reader(sock.FD, drain)
        self._mark_dirty(sock)  # anything that arrived before the reader was added

    def _unwatch(self, sock: zmq.Socket[Any]) -> None:
        if self._drains.pop(sock, None) is not None and self._loop is not None:
            self._loop.remove_reader(sock.FD)
        self._dirty.discard(sock)
        self._backlog.pop(sock, None)

    async def refuses(self, address: str, timeout: float = 1.0) -> bool:
        try:
            host, port = split_address(address)
        except ValueError:
            return False
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except ConnectionRefusedError:
            return True
        except (OSError, TimeoutError):
            return False  # unreachable, filtered or slow: a partition looks like this
        writer.close()  # it listens (alive, or stopped): not gone
        return False

    def probe_responder(self, name: str, on_ping: Callable[[str, Any], None]) -> Any:
        from handoffd.transport.responder import ProbeResponder

        assert self._loop is not None, "start the transport first"
        responder = ProbeResponder(
            self.host,
            name,
            curve=self.curve,
            limits=self.limits,
            on_ping=on_ping,
            call_soon_threadsafe=self._loop.call_soon_threadsafe,
        )
        responder.start()
        self._responder = responder
        return responder

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._responder is not None:
            self._responder.close()  # before the context is terminated: term waits for it
        if self._local is not None:
            self._local.close()
        for address in list(self._peers):
            self.forget(address)
        monitor = self._inbound_watch.sock if self._inbound_watch is not None else None
        for sock in (self._router, self._zap, monitor):
            if sock is not None:
                self._unwatch(sock)
                sock.close(linger=0)
        self._ctx.term()

    # -- edge-triggered FD bookkeeping -------------------------------------------------------

    def _mark_dirty(self, sock: zmq.Socket[Any]) -> None:
        self._dirty.add(sock)
        if not self._check_scheduled and self._loop is not None:
            self._check_scheduled = True
            self._loop.call_soon(self._check_dirty)

    def _sent_on(self, sock: zmq.Socket[Any]) -> None:
        """A send on ``sock`` (one we also read from) may have taken the FD's edge: it processes
        the socket's commands, so what arrived meanwhile would never wake us. Sent from within
        a drain (its handlers, its ``on_drained``), the socket is checked once when the drain
        ends (``_check_sent``); otherwise it is re-drained on the next loop iteration."""
        if self._draining:
            self._sent.add(sock)
        else:
            self._mark_dirty(sock)

    def _check_sent(self) -> None:
        """ZMQ_EVENTS of each socket sent on during the drain just ended: it processes the
        commands too, and if nothing waits the next arrival signals the FD anew (as after a
        drain that found nothing), so only a socket with a message waiting is re-drained. One
        check per socket per drain, where each drain's sends cost a callback (and often a loop
        turn) that mostly found nothing."""
        sent, self._sent = self._sent, set()
        dirty = self._dirty
        for sock in sent:
            if sock in dirty:
                continue
            try:
                if not int(sock.getsockopt(_EVENTS)) & _POLLIN:
                    continue
            except zmq.ZMQError:
                pass  # (closed meanwhile: _check_dirty skips it; else the drain reports it)
            self._mark_dirty(sock)

    def _check_dirty(self) -> None:
        self._check_scheduled = False
        dirty, self._dirty = self._dirty, set()
        for sock in dirty:
            drain = self._drains.get(sock)
            if drain is not None:
                drain()

    # -- receiving ---------------------------------------------------------------------------

    def _read_batch(self, sock: zmq.Socket[Any], opaque: int) -> list[list[Any]]:
        """Messages ready on ``sock``. Frames from index ``opaque`` on (the opaque frames after the
        body) of KEEP_BYTES or more are kept where libzmq received them, as read-only memoryviews
        over the message (a 1 MiB value is not copied once more into a bytes object); the rest
        come as bytes."""
        batch: list[list[Any]] = []
        recv = sock.recv
        # One ZMQ_EVENTS check (half the wake-ups find nothing: the FD also fires for sends), then
        # read until zmq.Again, every part as a Frame whose ``more`` says if another follows: no
        # getsockopt per message or part (ZMQ_EVENTS runs libzmq's command processing and its
        # fork check, a getpid; each getsockopt is a call through pyzmq). A receive that finds
        # nothing processes the commands as ZMQ_EVENTS does, so the edge-triggered FD re-arms.
        try:
            if not int(sock.getsockopt(_EVENTS)) & _POLLIN:
                return batch
            for _ in range(DRAIN_CAP):
                frame = recv(zmq.NOBLOCK, copy=False)
                parts: list[Any] = [frame.bytes]
                while frame.more:  # the other parts arrived with the first
                    frame = recv(zmq.NOBLOCK, copy=False)
                    if len(parts) >= opaque and len(frame) >= KEEP_BYTES:
                        parts.append(frame.buffer.toreadonly())
                    else:
                        parts.append(frame.bytes)
                batch.append(parts)
            self._mark_dirty(sock)  # capped: come back on the next iteration (no edge will fire)
        except zmq.Again:
            pass
        except zmq.ZMQError as exc:
            log.warning("receive failed on %s: %s", self.address, exc)
        return batch

    def _batch(self, sock: zmq.Socket[Any], opaque: int) -> list[list[Any]]:
        """What was left of the last batch (``DRAIN_SECONDS``), else the next batch read."""
        left = self._backlog.pop(sock, None)
        if left is None:
            return self._read_batch(sock, opaque)
        # Read the socket again next iteration: the edge of what arrived meanwhile may have
        # woken this drain, which reads nothing new.
        self._mark_dirty(sock)
        return left

    def _over(self, sock: zmq.Socket[Any], batch: list[list[Any]], at: int, until: float) -> bool:
        """Handled up to ``batch[at]``: past ``until``, keep the rest for the next iteration."""
        if time.monotonic() < until or at + 1 >= len(batch):
            return False
        self._backlog[sock] = batch[at + 1 :]
        self._mark_dirty(sock)
        return True

    def _drain_router(self) -> None:
        if self._closed:
            return
        batch = self._batch(self._router, 2)  # routing id, body
        if not batch:
            return
        until = time.monotonic() + DRAIN_SECONDS
        assert self._loop is not None
        now = self._loop.time()
        if now - self._rate_window >= 1.0:
            self._rate_window = now
            self._rate_counts.clear()
        counts, max_rate = self._rate_counts, self.limits.max_messages_per_s_per_peer
        max_parts = self.limits.max_frames + 2  # routing id + body + opaque frames
        self._draining = True
        try:
            for at, frames in enumerate(batch):
                conn = frames[0]
                seen = counts.get(conn, 0) + 1
                counts[conn] = seen
                if seen > max_rate:
                    self._drop("rate_limited")
                elif len(frames) < 2 or len(frames) > max_parts:
                    self._drop("frame_count")
                else:
                    self._deliver(conn, frames[1:], True)
                    if self._over(self._router, batch, at, until):
                        break
            self._drained()
        finally:
            self._draining = False
        if self._sent:
            self._check_sent()

    def _deliver_local(self, conn: bytes, frames: list[bytes]) -> None:
        """A request from a client on this host (``local_socket``): admitted as the ROUTER's."""
        assert self._loop is not None
        now = self._loop.time()
        if now - self._rate_window >= 1.0:
            self._rate_window = now
            self._rate_counts.clear()
        seen = self._rate_counts.get(conn, 0) + 1
        self._rate_counts[conn] = seen
        if seen > self.limits.max_messages_per_s_per_peer:
            self._drop("rate_limited")
        else:
            self._deliver(conn, frames, True)

    def _drain_dealer(self, peer: _Peer) -> None:
        if self._closed or self._peers.get(peer.address) is not peer:
            return
        max_parts = self.limits.max_frames + 1
        batch = self._batch(peer.sock, 1)  # body
        if not batch:
            return
        until = time.monotonic() + DRAIN_SECONDS
        self._draining = True
        try:
            for at, frames in enumerate(batch):
                if not frames or len(frames) > max_parts:
                    self._drop("frame_count")
                else:
                    self._deliver(peer.conn, frames, False)
                    if self._over(peer.sock, batch, at, until):
                        break
            self._drained()
        finally:
            self._draining = False
        if self._sent:
            self._check_sent()

    def _drained(self) -> None:
        on_drained = self.on_drained
        if on_drained is not None:
            try:
                on_drained()
            except Exception:
                self.stats.handler_errors += 1
                log.exception("transport drain handler failed")

    def _deliver(self, conn: bytes, frames: list[bytes], listening: bool) -> None:
        self.stats.received += 1
        try:
            self._handler(conn, frames, listening)  # type: ignore[misc]
        except Exception:
            self.stats.handler_errors += 1
            log.exception("transport handler failed on a message from %r", conn)

    def _drop(self, reason: str) -> None:
        self.stats.dropped += 1
        self.stats.count(reason)

    def _drain_zap(self) -> None:
        """Answer ZAP requests: admit CURVE clients whose public key is the cluster key."""
        if self._zap is not None and self.curve is not None and not self._closed:
            answer_zap(self._zap, self._cluster_public, lambda: self._drop("auth_refused"))

    # -- sending -----------------------------------------------------------------------------

    def send(self, address: str, frames: Frames, control: bool = False) -> bool:
        if self._closed or self._loop is None:
            return self._fail("not_running")
        peer = self._peers.get(address)
        if peer is None:
            peer = self._connect(address, CONTROL if control else BULK)
            if peer is None:
                return self._fail("bad_address")
        else:
            self._peers.move_to_end(address)
            peer.last_used = self._loop.time()
        if peer.pending:
            return self._queue(peer, frames)
        try:
            send_parts(peer.sock, frames)
        except zmq.Again:  # (a refused send processes the commands too: _sent_on)
            self._sent_on(peer.sock)
            if not peer.delivered and self._loop.time() < peer.deadline:
                return self._queue(peer, frames)
            return self._fail("unreachable_or_full")
        except (zmq.ZMQError, TypeError, ValueError) as exc:
            log.warning("send to %s failed: %s", address, exc)
            return self._fail("send_error")
        peer.delivered = True
        self.stats.sent += 1
        self._sent_on(peer.sock)
        return True

    def reply(self, conn: bytes, frames: Frames) -> bool:
        if self._closed or self._loop is None:
            return self._fail("not_running")
        if conn[:1] == local_socket.CONN_MARK:
            if self._local is not None and self._local.reply(conn, frames):
                self.stats.sent += 1
                return True
            return self._fail("reply_unroutable")
        peer = self._peers_by_conn.get(conn)
        if peer is not None:  # a reply that reached our DEALER to that peer
            return self.send(peer.address, frames)
        try:
            send_parts(self._router, [conn, *frames])
        except zmq.ZMQError as exc:  # EHOSTUNREACH (client gone) or EAGAIN (its queue is full)
            log.debug("reply to %r dropped: %s", conn, exc)
            self._sent_on(self._router)
            return self._fail("reply_unroutable")
        except (TypeError, ValueError) as exc:
            log.warning("reply to %r failed: %s", conn, exc)
            return self._fail("send_error")
        self.stats.sent += 1
        self._sent_on(self._router)
        return True

    def forget(self, address: str) -> None:
        self._close_peer(address, "forgotten")

    def _close_peer(self, address: str, reason: str) -> None:
        """Close the DEALER to ``address``; messages still waiting for it count as ``reason``."""
        peer = self._peers.pop(address, None)
        if peer is None:
            return
        self._peers_by_conn.pop(peer.conn, None)
        self._stop_peer_monitor(peer)
        if peer.pending:
            self.stats.send_failures += len(peer.pending)
            self.stats.count(reason)
            peer.pending.clear()
        self._unwatch(peer.sock)
        peer.sock.close(linger=0)

    def close_idle(self, keep: Collection[str]) -> int:
        if self._loop is None:
            return 0
        horizon = self._loop.time() - self.limits.peer_idle_s
        idle = []
        for address, peer in self._peers.items():  # least recently used first
            if peer.last_used > horizon:
                break
            if address not in keep:
                idle.append(address)
        for address in idle:
            self._close_peer(address, "forgotten")
            self.stats.count("idle_closed")
        return len(idle)

    @property
    def peer_sockets(self) -> int:
        """Outbound connections open now (at most ``Limits.max_peer_sockets``)."""
        return len(self._peers)

    def _fail(self, reason: str) -> bool:
        self.stats.send_failures += 1
        self.stats.count(reason)
        return False

    def _connect(self, address: str, affinity: int = 0) -> _Peer | None:
        """A DEALER to ``address`` on the I/O thread(s) ``affinity`` (a bit mask; 0: any)."""
        assert self._loop is not None
        try:
            host, port = split_address(address)
        except ValueError:
            return None
        while len(self._peers) >= max(1, self.limits.max_peer_sockets):
            # The least recently used goes: a live peer's is reopened on its next send.
            self._close_peer(next(iter(self._peers)), "evicted_unsent")
            self.stats.count("evicted")
        try:
            sock = self._ctx.socket(zmq.DEALER)
        except zmq.ZMQError as exc:  # EMFILE: out of fds or of libzmq's socket slots
            log.warning("cannot open a socket to %s: %s", address, exc)
            return None
        sock.linger = 0
        sock.setsockopt(zmq.AFFINITY, affinity)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.CONNECT_TIMEOUT, int(self.connect_timeout * 1000))
        sock.setsockopt(zmq.RECONNECT_IVL, self._reconnect_ms[0])
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, self._reconnect_ms[1])
        sock.setsockopt(zmq.IPV6, 1)
        sock.sndhwm = self.limits.max_queue
        sock.rcvhwm = self.limits.max_queue
        sock.setsockopt(
            zmq.MAXMSGSIZE, max(self.limits.max_frame_bytes, self.limits.max_body_bytes)
        )
        if self.curve is not None:
            sock.curve_secretkey = self.curve.secret
            sock.curve_publickey = self.curve.public
            sock.curve_serverkey = self.curve.public
        try:
            sock.connect(tcp_endpoint(host, port))
        except zmq.ZMQError as exc:
            log.warning("cannot connect to %s: %s", address, exc)
            sock.close(linger=0)
            return None
        now = self._loop.time()
        peer = _Peer(address, sock, now + self.connect_timeout, now)
        watched = sum(1 for p in self._peers.values() if p.monitor is not None)
        if watched < handshakes.MAX_OUTBOUND_WATCHED:
            peer.monitor = sock.get_monitor_socket(handshakes.OUTBOUND_EVENTS)
        self._peers[address] = peer
        self._peers_by_conn[peer.conn] = peer
        self._watch(sock, lambda: self._drain_dealer(peer))
        if peer.monitor is not None:
            self._watch(peer.monitor, lambda: self._drain_peer_monitor(peer))
        return peer

    def _queue(self, peer: _Peer, frames: Frames) -> bool:
        if len(peer.pending) >= self.limits.max_pending_per_peer:
            return self._fail("pending_full")
        if not peer.pending:
            assert self._loop is not None
            self._loop.call_later(peer.retry_delay, self._flush, peer)
        peer.pending.append(list(frames))
        return True

    def _flush(self, peer: _Peer) -> None:
        if self._closed or self._peers.get(peer.address) is not peer or not peer.pending:
            return
        sock, pending = peer.sock, peer.pending
        try:
            while pending:
                send_parts(sock, pending[0])
                pending.popleft()
                peer.delivered = True
                self.stats.sent += 1
        except zmq.Again:
            pass
        except zmq.ZMQError as exc:
            log.warning("send to %s failed: %s", peer.address, exc)
            pending.popleft()
            self._fail("send_error")
        self._sent_on(sock)
        if not pending:
            return
        assert self._loop is not None
        if peer.delivered or self._loop.time() >= peer.deadline:
            log.debug(
                "peer %s unreachable: dropping %d queued messages", peer.address, len(pending)
            )
            self.stats.send_failures += len(pending)
            self.stats.count("connect_timeout")
            pending.clear()
            return
        peer.retry_delay = min(peer.retry_delay * 2, 0.05)
        self._loop.call_later(peer.retry_delay, self._flush, peer)


__all__ = ["ZmqTransport", "tcp_endpoint", "ZAP_ENDPOINT", "DRAIN_CAP"]
