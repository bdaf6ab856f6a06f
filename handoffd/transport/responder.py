"""Answer SWIM probes off the event loop, so a busy node cannot be declared DEAD (issue 19).

A daemon's loop runs the owner's scheduler, the executor and every message; when it is busy (a
20,000-task submission, a big value, CPU starved by other processes) a Ping waits behind that work
and the prober suspects, then declares DEAD, a live node. Here a thread owns a second ROUTER (the
*probe port*, gossiped as ``MemberState.probe_port``): a Ping arriving there is answered with an
``Ack`` at once, from the thread, carrying our own state (a snapshot the loop publishes); the Ping's
piggybacked updates are then handed to the loop, which merges them as it merges any gossip. The
thread only reads Pings and writes Acks; it never touches membership state.

The thread holds the GIL only to decode a Ping and encode an Ack; a loop busy in Python code gives
it the GIL within the interpreter's switch interval (5 ms). Peers that do not know a probe port
(older builds) keep pinging the main address, answered by the loop as before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import zmq
from zmq.utils import z85

from handoffd.config import Limits
from handoffd.protocol import codec as codec_mod
from handoffd.protocol import messages as m
from handoffd.transport.base import join_address, tcp_endpoint
from handoffd.transport.keys import CurveKeys, zap_answer

log = logging.getLogger("handoffd.transport")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # libzmq's fixed ZAP address, per context
POLL_MS = 100  # how often the thread looks at its stop flag while idle
MAX_PING_BYTES = 64 * 1024  # a Ping with more piggyback than this is not answered here


class ProbeResponder:
    """``on_ping(sender, ping)`` is called on the loop (``call_soon_threadsafe``) after the Ack was
    sent, so the updates a Ping carries are merged there. ``publish(state)`` sets what the Acks say
    about us (our MemberState; a reference swap, safe across threads)."""

    def __init__(
        self,
        host: str,
        name: str,
        *,
        curve: CurveKeys | None,
        limits: Limits,
        on_ping: Callable[[str, m.Ping], None],
        call_soon_threadsafe: Callable[..., Any],
    ) -> None:
        self.name = name
        self._on_ping = on_ping
        self._call_soon = call_soon_threadsafe
        self._codec = codec_mod.Codec(
            Limits(max_body_bytes=min(limits.max_body_bytes, MAX_PING_BYTES), max_frames=0)
        )
        self._me: m.MemberState | None = None
        self._stop = threading.Event()
        self.answered = 0  # Pings acked by the thread
        self.dropped = 0  # anything else that arrived here
        # A context of its own, with its own ZAP handler in this thread: a new connection's CURVE
        # handshake must not wait for the loop's handler (the loop may be the busy one).
        self._ctx: zmq.Context[Any] = zmq.Context(io_threads=1)
        self._cluster_public = z85.decode(curve.public) if curve is not None else b""
        self._zap: zmq.Socket[Any] | None = None
        if curve is not None:
            self._zap = self._ctx.socket(zmq.REP)
            self._zap.linger = 0
            self._zap.bind(ZAP_ENDPOINT)
        sock = self._ctx.socket(zmq.ROUTER)
        sock.linger = 0
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.rcvhwm = sock.sndhwm = 1000
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_PING_BYTES)
        if ":" in host:
            sock.setsockopt(zmq.IPV6, 1)
        if curve is not None:
            sock.curve_secretkey = curve.secret
            sock.curve_publickey = curve.public
            sock.curve_server = True
        try:
            sock.bind(tcp_endpoint(host, "*"))
        except zmq.ZMQError:
            sock.close(linger=0)
            if self._zap is not None:
                self._zap.close(linger=0)
            self._ctx.term()
            raise
        self._sock = sock
        self.port = int(sock.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])
        self.address = join_address(host, self.port)
        self._thread = threading.Thread(target=self._run, name=f"{name}-probes", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def publish(self, me: m.MemberState) -> None:
        self._me = me

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
        self._sock.close(linger=0)
        if self._zap is not None:
            self._zap.close(linger=0)
        self._ctx.term()

    def _run(self) -> None:
        sock, zap = self._sock, self._zap
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        if zap is not None:
            poller.register(zap, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if not poller.poll(POLL_MS):
                    continue
                if zap is not None:
                    self._authenticate(zap)
                while True:
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._answer(frames)
        except zmq.ZMQError as exc:  # the context was terminated under us: we are closing
            if not self._stop.is_set():
                log.warning("probe responder of %s stopped: %s", self.name, exc)
        except Exception:  # noqa: BLE001 - the loop's own answer path still works without us
            log.exception("probe responder of %s failed", self.name)

    def _authenticate(self, zap: zmq.Socket[Any]) -> None:
        """ZAP: admit CURVE clients holding the cluster key (as ZmqTransport._drain_zap)."""
        while True:
            try:
                request = zap.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            answer = zap_answer(request, self._cluster_public)
            if answer is None:
                continue
            reply, admitted = answer
            if not admitted:
                self.dropped += 1
            zap.send_multipart(reply)

    def _answer(self, frames: list[bytes]) -> None:
        if len(frames) != 2:
            self.dropped += 1
            return
        conn, body = frames
        decoded = self._codec.decode([body])
        me = self._me
        if (
            decoded is None
            or type(decoded.msg) is not m.Ping
            or me is None
            or decoded.envelope.sender == self.name
        ):
            self.dropped += 1
            return
        ping: m.Ping = decoded.msg
        ack = m.Ack(ping.probe_id, (me,))
        reply = self._codec.encode(ack, sender=self.name, incarnation=me.incarnation)
        try:
            self._sock.send_multipart([conn, *reply], zmq.NOBLOCK)
        except zmq.ZMQError:
            self.dropped += 1
            return
        self.answered += 1
        self._call_soon(self._on_ping, decoded.envelope.sender, ping)
