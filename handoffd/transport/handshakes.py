"""Failed ZeroMQ handshakes, seen through socket monitors: a node refused by a keyed peer (or
refusing one) says so instead of running alone in silence.

A CURVE handshake between sockets with different keys, or between a CURVE and a plain socket,
fails inside libzmq: no message ever arrives, no ZAP request is made. Only the sockets' monitors
see it: the connecting DEALER (``HANDSHAKE_FAILED_*`` for the peer address it dials) and the
listening ROUTER (``ACCEPTED`` with the connection's fd, then ``HANDSHAKE_FAILED_*`` with the same
fd; the remote address is read from the fd at ``ACCEPTED``). ``ZmqTransport`` watches both and calls
its ``on_handshake_failed(direction, where, why)``; the node warns once per peer.
"""

from __future__ import annotations

import os
import socket
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

FAILED = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
OUTBOUND_EVENTS = FAILED | zmq.EVENT_HANDSHAKE_SUCCEEDED
INBOUND_EVENTS = (
    FAILED | zmq.EVENT_ACCEPTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
)
MAX_TRACKED = 1024  # accepted connections remembered until their handshake ends
# Outbound connections watched at once (a monitor costs two more fds): the outbound sockets stay
# bounded by Limits.max_peer_sockets plus this, whatever addresses a peer makes us dial.
MAX_OUTBOUND_WATCHED = 8

Report = Callable[[str, str, str], None]  # (direction "inbound"|"outbound", where, why)


def why(event: int, value: int) -> str:
    """What a failed handshake means for the operator."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return "its key is not this cluster's"
    if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return "one side uses a cluster key and the other none"
    if value == zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
        return "the two sides use different keys"
    return "the handshake failed (different keys, or a key on one side only)"


def remote_host(fd: int) -> str | None:
    """The remote IP of connection ``fd`` (a duplicate is inspected, ZeroMQ's own fd untouched);
    None if it is already gone."""
    try:
        dup = os.dup(fd)
    except OSError:
        return None
    try:
        with socket.socket(fileno=dup) as sock:
            peer = sock.getpeername()
    except OSError:
        return None
    return str(peer[0]) if isinstance(peer, tuple) else None


def events(monitor: zmq.Socket[Any]) -> list[tuple[int, int]]:
    """Every (event, value) waiting on a monitor socket, without blocking."""
    out: list[tuple[int, int]] = []
    while True:
        try:
            message = recv_monitor_message(monitor, zmq.NOBLOCK)
        except zmq.Again:
            return out
        except zmq.ZMQError:
            return out
        out.append((int(message["event"]), int(message["value"])))


class InboundWatch:
    """The listening socket's monitor: reports refused connections by remote address.

    A failure event carries an error code, not the connection's fd; the failed connection is
    closed right after it (``DISCONNECTED`` with its fd), so a failure is paired with the next
    disconnection of an accepted connection."""

    def __init__(self, monitor: zmq.Socket[Any], report: Report) -> None:
        self.sock = monitor
        self._report = report
        self._hosts: OrderedDict[int, str | None] = OrderedDict()  # fd -> remote host
        self._failures: list[str] = []  # why, for failures not yet paired with a disconnection

    def drain(self) -> None:
        for event, value in events(self.sock):
            if event == zmq.EVENT_ACCEPTED:
                self._hosts[value] = remote_host(value)
                while len(self._hosts) > MAX_TRACKED:
                    self._hosts.popitem(last=False)
            elif event & FAILED:
                self._failures.append(why(event, value))
                del self._failures[:-MAX_TRACKED]
            elif event == zmq.EVENT_DISCONNECTED:
                host = self._hosts.pop(value, None)
                if self._failures:
                    self._report("inbound", host or "an unknown address", self._failures.pop(0))


def drain_outbound(monitor: zmq.Socket[Any], address: str, report: Report) -> bool:
    """Report a failed handshake with ``address``; True once the handshake succeeded or failed
    (either says all there is to say: stop watching)."""
    for event, value in events(monitor):
        if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            return True
        if event & FAILED:
            report("outbound", address, why(event, value))
            return True
    return False
