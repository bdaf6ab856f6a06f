"""Clients on the daemon's own machine: a Unix socket read by the event loop (issue 13, W3).

A request over ZeroMQ wakes four threads besides the two that do the work: the client's ZeroMQ
I/O thread, the daemon's, and the same two for the reply (each a mailbox write and a wake-up).
A client on the daemon's host skips them: the daemon also listens on an abstract Unix socket
named after its address (``socket_name``), read by its loop (``LocalListener``, wired into
``ZmqTransport``) and written by the client's own thread (``LocalClient``). The abstract namespace
belongs to the network namespace, so a client reaches only the daemon that owns that address
where it dialed it.

Who may use it is what the TCP path admits, no more: only a keyed daemon listens (keyless ones
take TCP only), both ends check with ``SO_PEERCRED`` that the other runs as their own user (an
impostor that bound the name first is not read from), and each proves it holds the cluster key
(HMAC-SHA256 over both sides' nonces; the key never crosses). A client without the key, or with
another key, or another user, is closed and falls back to ZeroMQ, which says what was wrong.
``HANDOFFD_LOCAL_SOCKET=0`` turns the path off on either side.

Framing: a message is a 4-byte frame count, one 8-byte length per frame, then the frames; the
daemon applies the limits its ROUTER applies (frames per message, bytes per frame) and closes a
connection that sends a malformed message.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import itertools
import logging
import os
import select
import socket
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from handoffd.errors import ConnectionError, Timeout
from handoffd.transport import local_frames

if TYPE_CHECKING:  # a client imports this module and runs no event loop
    import asyncio

log = logging.getLogger("handoffd.transport")

ENV = "HANDOFFD_LOCAL_SOCKET"  # "0": neither clients nor daemons use the Unix socket
NONCE = 32
PROOF = 32
CHUNK = 256 * 1024
SLICE = 16 << 20  # bytes read from one connection per wake-up of the loop
MAX_CONNECTIONS = 1024
CONN_MARK = b"\x01"  # first byte of a local connection's id (ZeroMQ routing ids start with \0)
_COUNT = struct.Struct("!I")
_LEN = struct.Struct("!Q")
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
_IOV = 512  # buffers per sendmsg
_DONTWAIT = socket.MSG_DONTWAIT  # (the client's socket blocks: its sends and further reads not)
_TIMEVAL = struct.Struct("@ll")  # struct timeval: seconds, microseconds (SO_RCVTIMEO)
JOIN_BYTES = 64 * 1024  # frames smaller than this are copied into one buffer with their neighbours
SEND_STALL = 30.0  # seconds a client's send may wait for the daemon to read on
# Bytes a connection's sender may queue before it waits for the reader (SO_SNDBUF; the kernel caps
# it at net.core.wmem_max): a 5 MB submission or a big outcome crosses in a few wake-ups of the
# reader, not one per default 208 KB, each a switch between the client and the daemon's loop.
SEND_BUFFER = 4 << 20


def _big_send_buffer(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)


def enabled() -> bool:
    return os.environ.get(ENV, "1") != "0"


def socket_name(address: str) -> bytes:
    """The abstract socket name of the daemon listening at ``address`` (as it advertises it)."""
    return b"\0handoffd-client:" + address.encode()


def _proof(secret: bytes, role: bytes, first: bytes, second: bytes) -> bytes:
    return hmac.new(secret, role + first + second, hashlib.sha256).digest()


def peer_uid(sock: socket.socket) -> int:
    return _CRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size))[1]


def pack(frames: Sequence[Any]) -> list[Any]:
    """One message's buffers: the header, then the frames, a big one as it is (no copy), runs of
    small ones joined into one buffer (the same bytes: a 50,000-value outcome was 50,000 buffers,
    each a memoryview and a list entry on the loop, and 100 ``sendmsg`` calls)."""
    sizes = list(map(len, frames))
    if len(sizes) > 1 and max(sizes) < JOIN_BYTES:  # the usual: small frames, joined in one call
        whole = b"".join(frames)
        # (the len of a buffer of wider items counts items: each is at most its bytes, so the
        # sum is the joined bytes only if every len was)
        if len(whole) == sum(sizes):
            return [struct.pack(f"!I{len(sizes)}Q", len(sizes), *sizes), whole]
    sizes = [len(f) if type(f) is bytes else memoryview(f).nbytes for f in frames]
    out: list[Any] = [struct.pack(f"!I{len(sizes)}Q", len(sizes), *sizes)]
    small: list[Any] = []
    for frame, size in zip(frames, sizes, strict=True):
        if size < JOIN_BYTES:
            small.append(frame)
            continue
        if small:
            out.append(small[0] if len(small) == 1 else b"".join(small))
            small = []
        out.append(frame)
    if small:
        out.append(small[0] if len(small) == 1 else b"".join(small))
    return out


# A one-task execute's request and reply: two small frames, joined and cut in one pass
# (``local_frames``, compiled)
_small = local_frames.small
_whole = local_frames.whole


# ``take``: a message of at least _MANY frames averaging at most _SMALL bytes is cut from one copy
_MANY = 64
_SMALL = 1024


class Malformed(ValueError):
    pass


def _cut(data: bytearray, sizes: Sequence[int]) -> list[Any]:
    """The frames of the one message that is ``data`` (its header's ``sizes``): the body and
    every frame under ``KEEP_BYTES`` as bytes, the others as read-only views of ``data``."""
    at = 4 + 8 * len(sizes)
    frames: list[Any] = []
    with memoryview(data) as view:
        kept = view.toreadonly()  # (the views handed out are of this one, never released here)
        for i, size in enumerate(sizes):
            if i and size >= KEEP_BYTES:
                frames.append(kept[at : at + size])
            else:
                frames.append(bytes(view[at : at + size]))
            at += size
    return frames


def take(
    buf: bytearray, max_frames: int, max_frame: int
) -> tuple[list[list[bytes]], Malformed | None]:
    """The whole messages at the start of ``buf``, removed from it (what is left is the start of
    the next one), and the error of one that breaks the limits (the caller closes the
    connection after delivering those before it). One removal per call: a read holding many
    small messages is not moved once per message."""
    out: list[list[bytes]] = []
    error: Malformed | None = None
    at, have = 0, len(buf)
    with memoryview(buf) as view:
        while have - at >= 4:
            (count,) = _COUNT.unpack_from(buf, at)
            if count == 0 or count > max_frames:
                error = Malformed(f"{count} frames (at most {max_frames})")
                break
            head = at + 4 + 8 * count
            if have < head:
                break
            sizes = struct.unpack_from(f"!{count}Q", buf, at + 4)
            if max(sizes) > max_frame:
                error = Malformed(f"a frame of {max(sizes)} bytes (at most {max_frame})")
                break
            end = head + sum(sizes)
            if have < end:
                break
            frames = []
            if count >= _MANY and end - head <= _SMALL * count:
                # Many small frames (a big run's outcome: a value per task): one copy of them
                # all, each frame a slice of it, not a memoryview made per frame and copied.
                whole = bytes(view[head:end])
                head = 0
                for size in sizes:
                    frames.append(whole[head : head + size])
                    head += size
            else:
                for size in sizes:
                    frames.append(bytes(view[head : head + size]))
                    head += size
            out.append(frames)
            at = end
    if at:
        del buf[:at]
    return out, error


# A message of at least ``BIG`` bytes, and at most ``BIG_MAX``, that one read did not bring whole
# is received straight into a buffer of its size (``_Conn.big``), its frames past the body of
# ``KEEP_BYTES`` or more kept there as read-only views, as the ROUTER gives them
# (``zmq_transport._read_batch``): a W1 submission's ~450 KB piece was copied from the scratch into
# the connection's growing buffer, then once more into a bytes of its own, on the loop. The cap
# bounds what a connection's announced header commits before its bytes come.
BIG = CHUNK
BIG_MAX = SEND_BUFFER
KEEP_BYTES = 64 * 1024


class _Conn:
    __slots__ = ("id", "sock", "buf", "nonce", "open", "out", "queued", "big", "filled", "sizes")

    def __init__(self, conn_id: bytes, sock: socket.socket, nonce: bytes) -> None:
        self.id = conn_id
        self.sock = sock
        self.buf = bytearray()
        # A big message being received into its own buffer (``BIG``): the buffer, the bytes in
        # it so far, its frames' sizes (None: none under way).
        self.big: bytearray | None = None
        self.filled = 0
        self.sizes: tuple[int, ...] = ()
        self.nonce = nonce  # ours, sent at accept; the client's proof covers it
        self.open = False  # the client proved the key
        self.out: deque[memoryview] = deque()  # what the socket did not take yet
        self.queued = 0  # replies waiting in ``out`` (bounded as a ROUTER's send queue)


class LocalListener:
    """The daemon's side: accepts, authenticates, reads messages into ``deliver(conn, frames)``
    (then ``drained()`` once per wake-up, as a ZeroMQ drain) and writes ``reply``."""

    def __init__(
        self,
        address: str,
        secret: bytes,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[bytes, list[bytes]], None],
        drained: Callable[[], None],
        *,
        max_frames: int,
        max_frame: int,
        max_queue: int = 1000,
    ) -> None:
        self._secret = secret
        self._max_queue = max_queue
        self._loop = loop
        self._deliver = deliver
        self._drained = drained
        self._max_frames = max_frames
        self._max_frame = max_frame
        self._ids = itertools.count(1)
        self._conns: dict[bytes, _Conn] = {}
        self.refused = 0  # connections closed: another user, a wrong key, a malformed message
        # Reads land here first: recv(CHUNK) allocates (and faults in) 256 KiB per call, for a
        # request of a few hundred bytes (worker/_pipe.py's Reader does the same).
        self._scratch = memoryview(bytearray(CHUNK))
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(socket_name(address))
            sock.listen(64)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        loop.add_reader(sock.fileno(), self._accept)

    def close(self) -> None:
        for conn in list(self._conns.values()):
            self._drop(conn)
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE: the TCP path still serves
                log.warning("local client socket: accept failed: %s", exc)
                return
            try:
                uid = peer_uid(sock)
            except OSError:
                uid = -1
            if len(self._conns) >= MAX_CONNECTIONS or uid != os.getuid():
                self.refused += 1
                sock.close()
                continue
            sock.setblocking(False)
            _big_send_buffer(sock)
            nonce = os.urandom(NONCE)
            try:
                sock.send(nonce)  # an empty socket buffer takes 32 bytes
            except OSError:
                sock.close()
                continue
            conn = _Conn(CONN_MARK + next(self._ids).to_bytes(8, "big"), sock, nonce)
            self._conns[conn.id] = conn
            self._loop.add_reader(sock.fileno(), self._readable, conn)

    def _drop(self, conn: _Conn) -> None:
        if self._conns.pop(conn.id, None) is None:
            return
        self._loop.remove_reader(conn.sock.fileno())
        if conn.out:
            self._loop.remove_writer(conn.sock.fileno())
        conn.sock.close()

    def _readable(self, conn: _Conn) -> None:
        if conn.big is not None:
            self._fill(conn)
            return
        sock, buf, got, scratch = conn.sock, conn.buf, 0, self._scratch
        if conn.open and not buf:
            # Most reads of an open connection are one request whole (a one-task execute's
            # two frames): cut out of the scratch, without the buffer's round trip and take()
            try:
                n = sock.recv_into(scratch, CHUNK)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._drop(conn)
                return
            if not n:
                self._drop(conn)
                return
            one = _whole(scratch, n)
            if (
                one is not None
                and self._max_frames >= 2
                and max(len(one[0]), len(one[1])) <= self._max_frame
            ):
                self._deliver(conn.id, one)
                self._drained()
                return
            if n >= 12 and self._start_big(conn, scratch, n):
                return
            buf += scratch[:n]
            got = n
            if n < CHUNK:  # (the rest, if any, is the general read's below: it comes next)
                self._messages(conn)
                return
        try:
            while got < SLICE:
                n = sock.recv_into(scratch, CHUNK)
                if not n:
                    self._drop(conn)
                    break
                buf += scratch[:n]
                got += n
                if n < CHUNK:
                    break
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._drop(conn)
        if not conn.open and not self._handshake(conn):
            return
        self._messages(conn)

    def _start_big(self, conn: _Conn, start: Any, n: int) -> bool:
        """Receive the message that starts ``start[:n]`` (the scratch of a read that began at a
        message's start, or what ``take`` left in the connection's buffer) into a buffer of its
        own when it is ``BIG`` and not whole yet: False (``take`` reads it from the connection's
        buffer as before) for anything else, a header over the limits or not all there yet
        among it (``take`` refuses or waits for it)."""
        (count,) = _COUNT.unpack_from(start)
        head = 4 + 8 * count
        if count == 0 or count > self._max_frames or head > n:
            return False
        sizes = struct.unpack_from(f"!{count}Q", start, 4)
        end = head + sum(sizes)
        if end <= n or end < BIG or end > BIG_MAX or max(sizes) > self._max_frame:
            return False
        big = bytearray(end)
        big[:n] = start[:n]
        conn.big, conn.filled, conn.sizes = big, n, sizes
        self._fill(conn)
        return True

    def _fill(self, conn: _Conn) -> None:
        """Read on into ``conn.big`` (no further than its message's end, at most ``SLICE`` bytes a
        wake-up), and deliver its message once whole."""
        big = conn.big
        assert big is not None
        end, got = len(big), 0
        with memoryview(big) as view:
            try:
                while conn.filled < end and got < SLICE:
                    n = conn.sock.recv_into(view[conn.filled :], end - conn.filled)
                    if not n:
                        self._drop(conn)
                        return
                    conn.filled += n
                    got += n
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._drop(conn)
                return
        if conn.filled < end:
            return
        frames = _cut(big, conn.sizes)
        conn.big, conn.filled, conn.sizes = None, 0, ()
        self._deliver(conn.id, frames)
        self._drained()

    def _messages(self, conn: _Conn) -> None:
        buf = conn.buf
        messages, error = take(buf, self._max_frames, self._max_frame)
        for frames in messages:
            self._deliver(conn.id, frames)
        if error is not None:
            log.warning("local client connection closed: a malformed message (%s)", error)
            self.refused += 1
            self._drop(conn)
        if messages:
            self._drained()
        if len(buf) >= 12 and conn.id in self._conns and self._start_big(conn, buf, len(buf)):
            del buf[:]  # (moved into the message's own buffer)

    def _handshake(self, conn: _Conn) -> bool:
        """The client's nonce and proof: answer with ours and open, or close."""
        if conn.id not in self._conns or len(conn.buf) < NONCE + PROOF:
            return False
        theirs, proof = bytes(conn.buf[:NONCE]), bytes(conn.buf[NONCE : NONCE + PROOF])
        del conn.buf[: NONCE + PROOF]
        if not hmac.compare_digest(proof, _proof(self._secret, b"client", conn.nonce, theirs)):
            self.refused += 1
            self._drop(conn)
            return False
        conn.open = True
        self._write(conn, [_proof(self._secret, b"server", theirs, conn.nonce)])
        return True

    def reply(self, conn_id: bytes, frames: Sequence[Any]) -> bool:
        conn = self._conns.get(conn_id)
        if conn is None or not conn.open or conn.queued >= self._max_queue:
            return False  # gone, or not reading: dropped as a full ROUTER queue drops it
        if not conn.out:
            whole = _small(frames)  # a one-task execute's outcome: one buffer, one send
            if whole is not None:
                try:
                    sent = conn.sock.send(whole)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                except OSError:
                    self._drop(conn)
                    return False
                if sent < len(whole):
                    self._write(conn, [memoryview(whole)[sent:]])
                return conn.id in self._conns
        self._write(conn, pack(frames))
        return conn.id in self._conns

    def _write(self, conn: _Conn, parts: list[Any]) -> None:
        if conn.out:  # behind what waits: keep the order
            conn.out.extend(memoryview(p).cast("B") for p in parts)
            conn.queued += 1
            return
        try:
            sent = conn.sock.sendmsg(parts) if len(parts) <= _IOV else 0
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._drop(conn)
            return
        for part in parts:
            view = memoryview(part).cast("B")
            if sent >= view.nbytes:
                sent -= view.nbytes
                continue
            conn.out.append(view[sent:])
            sent = 0
        if conn.out:
            conn.queued = 1
            self._loop.add_writer(conn.sock.fileno(), self._writable, conn)

    def _writable(self, conn: _Conn) -> None:
        out = conn.out
        try:
            sent = conn.sock.sendmsg(list(itertools.islice(out, _IOV)))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(conn)
            return
        while out and sent >= out[0].nbytes:
            sent -= out.popleft().nbytes
        if out and sent:
            out[0] = out[0][sent:]
        if not out:
            conn.queued = 0
            self._loop.remove_writer(conn.sock.fileno())


class LocalRefused(OSError):
    """The local socket cannot be used for this daemon (none, another user, another key)."""


class LocalClient:
    """The client's side: ``transport.client.Connection``'s contract over the Unix socket,
    read and written by the calling thread. Raises ``OSError`` (``LocalRefused`` among them)
    when the path is not there: the caller dials ZeroMQ instead."""

    def __init__(self, address: str, secret: bytes, *, connect_timeout: float = 2.0) -> None:
        self.address = address
        self.disconnected = False
        self._buf = bytearray()
        self._ready: deque[list[bytes]] = deque()  # replies read, not yet returned
        self._scratch = memoryview(bytearray(CHUNK))  # reads land here (see LocalListener)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(connect_timeout)
            sock.connect(socket_name(address))
            if peer_uid(sock) != os.getuid():
                raise LocalRefused(f"{address}: the local socket belongs to another user")
            theirs = _recv_exact(sock, NONCE)
            ours = os.urandom(NONCE)
            sock.sendall(ours + _proof(secret, b"client", theirs, ours))
            proof = _recv_exact(sock, PROOF)
            if not hmac.compare_digest(proof, _proof(secret, b"server", ours, theirs)):
                raise LocalRefused(f"{address}: the local socket did not prove our key")
            # Blocking from here, with no timeout of Python's (which polls before every send and
            # receive: two system calls more per request): a send never waits (MSG_DONTWAIT, a
            # full buffer waited for by our own poll), a reply's read waits in the kernel for as
            # long as SO_RCVTIMEO says (``recv``), further reads do not (MSG_DONTWAIT).
            sock.setblocking(True)
            _big_send_buffer(sock)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        # A send waits for room at most this long: a daemon whose loop stopped reading is
        # given up on (ConnectionError, then failover) as ZeroMQ's reply timeout would.
        self._stall = max(connect_timeout, SEND_STALL)
        self._waits = 0.0  # the socket's SO_RCVTIMEO in seconds (0: none set)
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN)
        self._room = select.poll()
        self._room.register(sock.fileno(), select.POLLOUT)

    def send(self, frames: Sequence[bytes | memoryview]) -> None:
        # One system call for the whole message where it fits: each write may wake the daemon's
        # loop, which would then read a message in part and sleep again.
        # A small two-frame request (a one-task execute's) is pack()'s bytes in one buffer,
        # built without its per-frame loop
        whole = _small(frames)
        packed = pack(frames) if whole is None else [whole]
        if len(packed) <= _IOV:
            # Most requests leave whole in the first call: no views made for the partial case.
            try:
                sent = self._sock.sendmsg(packed, (), _DONTWAIT)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self.disconnected = True
                raise ConnectionError(
                    f"cannot send to the daemon at {self.address}: {exc}"
                ) from None
            total = 0
            for part in packed:
                total += len(part) if type(part) is bytes else memoryview(part).nbytes
            if sent == total:
                return
        else:
            sent = 0
        parts = [memoryview(p).cast("B") for p in packed]
        while parts and sent >= parts[0].nbytes:
            sent -= parts.pop(0).nbytes
        if parts and sent:
            parts[0] = parts[0][sent:]
        deadline = 0.0
        try:
            while parts:
                try:
                    sent = self._sock.sendmsg(parts[:_IOV], (), _DONTWAIT)
                except (BlockingIOError, InterruptedError):
                    deadline = deadline or time.monotonic() + self._stall
                    left = deadline - time.monotonic()
                    if left <= 0 or not self._room.poll(int(left * 1000) + 1):
                        if time.monotonic() >= deadline:
                            raise TimeoutError(f"no room for {self._stall:g}s") from None
                    continue
                deadline = 0.0  # it reads: a stall counts from the next full buffer
                while parts and sent >= parts[0].nbytes:
                    sent -= parts.pop(0).nbytes
                if parts and sent:
                    parts[0] = parts[0][sent:]
        except OSError as exc:
            self.disconnected = True
            raise ConnectionError(f"cannot send to the daemon at {self.address}: {exc}") from None

    def recv(self, timeout: float) -> list[bytes] | None:
        """The next reply's frames, or None if none came within ``timeout`` seconds (at once when
        the daemon closed the connection: it is gone)."""
        buf = self._buf
        deadline = time.monotonic() + timeout
        if not buf and not self._ready and timeout > 0:
            # A request's reply, nothing read ahead (the usual wait): one read that waits in the
            # kernel, for at most ``timeout`` (SO_RCVTIMEO, set again only when it changes), not
            # a poll and then a read (a system call and a release and retake of the GIL less)
            sock = self._sock
            if timeout != self._waits:
                whole, part = divmod(timeout, 1.0)
                wait = _TIMEVAL.pack(int(whole), min(999_999, int(part * 1e6) + 1))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, wait)
                self._waits = timeout
            scratch = self._scratch
            try:
                n = sock.recv_into(scratch, CHUNK)
            except (BlockingIOError, InterruptedError, TimeoutError):
                n = -1  # (the wait ran out: the loop below says so, or reads on)
            except OSError:
                n = 0
            if not n:
                self.disconnected = True
                return None
            if n > 0:
                one = _whole(scratch, n)
                if one is not None:
                    return one
                buf += scratch[:n]
        while True:
            if self._ready:
                return self._ready.popleft()
            if buf:  # a reply read in part, or several replies in one read
                messages, _ = take(buf, 1 << 30, 1 << 62)
                if messages:
                    self._ready.extend(messages)
                    continue
            left = deadline - time.monotonic()
            if left <= 0 or not self._poll.poll(max(0, int(left * 1000) + 1)):
                if time.monotonic() >= deadline:
                    return None
                continue
            scratch = self._scratch
            try:
                n = self._sock.recv_into(scratch, CHUNK, _DONTWAIT)
            except (BlockingIOError, InterruptedError, TimeoutError):
                continue
            except OSError:
                n = 0
            if not n:
                self.disconnected = True
                return None
            if not buf:
                # A request's reply: nothing read ahead, and most reads are that one message
                # whole (the frames take() would cut, without the buffer's round trip)
                one = _whole(scratch, n)
                if one is not None:
                    return one
            buf += scratch[:n]

    def request(self, frames: Sequence[bytes | memoryview], timeout: float) -> list[bytes]:
        self.send(frames)
        reply = self.recv(timeout)
        if reply is None:
            raise Timeout(f"the daemon at {self.address} did not answer within {timeout}s")
        return reply

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> LocalClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        data = sock.recv(n - len(out))
        if not data:
            raise LocalRefused("the daemon closed the local socket")
        out += data
    return out


__all__ = ["LocalClient", "LocalListener", "LocalRefused", "enabled", "socket_name"]
