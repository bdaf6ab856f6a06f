"""The daemon's side of the local client socket (``LocalListener``) on its short ways: a read that is
one request whole is delivered without the connection's buffer and ``take``, under the same
limits; a small two-frame reply goes in one ``send`` of ``pack``'s bytes, and a part the socket did
not take is finished in order. A reply bound at once (``Replies``'s ``encode``) is the same
frames as the prepared one, and a big one still goes to the thread."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import select
import socket
from typing import Any

import pytest

from handoffd.daemon import replies
from handoffd.daemon.replies import Replies
from handoffd.protocol import messages as m
from handoffd.protocol.codec import Codec
from handoffd.transport import local_socket

pytestmark = pytest.mark.timeout(60)

SECRET = b"s" * 32


class Loop:
    """The loop's readers and writers, called by the test."""

    def __init__(self) -> None:
        self.readers: dict[int, Any] = {}
        self.writers: dict[int, Any] = {}

    def add_reader(self, fd: int, cb: Any, *args: Any) -> None:
        self.readers[fd] = (cb, args)

    def remove_reader(self, fd: int) -> None:
        self.readers.pop(fd, None)

    def add_writer(self, fd: int, cb: Any, *args: Any) -> None:
        self.writers[fd] = (cb, args)

    def remove_writer(self, fd: int) -> None:
        self.writers.pop(fd, None)

    def run(self, table: dict[int, Any]) -> None:
        for cb, args in list(table.values()):
            cb(*args)


class Side:
    """A listener with one open connection, its client end a plain blocking socket."""

    def __init__(self, max_frames: int = 10, max_frame: int = 1 << 20) -> None:
        self.loop = Loop()
        self.got: list[tuple[bytes, list[bytes]]] = []
        self.drains = 0
        address = f"test-shortcuts-{os.getpid()}-{random.getrandbits(32)}"
        self.listener = local_socket.LocalListener(
            address,
            SECRET,
            self.loop,  # type: ignore[arg-type]
            lambda conn, frames: self.got.append((conn, frames)),
            self._drained,
            max_frames=max_frames,
            max_frame=max_frame,
        )
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(local_socket.socket_name(address))
        sock.settimeout(10)
        self.loop.run(self.loop.readers)  # accept: the nonce is sent
        theirs = sock.recv(local_socket.NONCE)
        ours = os.urandom(local_socket.NONCE)
        sock.sendall(ours + local_socket._proof(SECRET, b"client", theirs, ours))
        self.loop.run(self.loop.readers)
        assert sock.recv(local_socket.PROOF) == local_socket._proof(SECRET, b"server", ours, theirs)
        self.sock = sock
        (self.conn,) = self.listener._conns.values()

    def _drained(self) -> None:
        self.drains += 1

    def read(self) -> None:
        """One wake-up of the connection's reader."""
        cb, args = self.loop.readers[self.conn.sock.fileno()]
        cb(*args)

    def close(self) -> None:
        self.listener.close()
        self.sock.close()


def _wire(frames: list[Any]) -> bytes:
    return b"".join(bytes(p) for p in local_socket.pack(frames))


def _recv(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        data = sock.recv(n - len(out))
        assert data
        out += data
    return out


def test_a_request_read_whole_is_delivered_without_the_buffer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    side = Side()
    takes: list[int] = []
    real = local_socket.take

    def counting(buf: bytearray, *args: Any) -> Any:
        takes.append(len(buf))
        return real(buf, *args)

    monkeypatch.setattr(local_socket, "take", counting)
    try:
        for i in range(3):
            frames = [b"body-%d" % i, b"payload" * (i + 1)]
            side.sock.sendall(_wire(frames))
            side.read()
            assert side.got[-1] == (side.conn.id, frames)
        assert side.drains == 3  # a drain after each wake-up that delivered
        assert takes == []  # each read was its request whole
        assert not side.conn.buf
    finally:
        side.close()


@pytest.mark.parametrize("seed", range(6))
def test_requests_cut_anywhere_come_out_whole_and_in_order(seed: int) -> None:
    rng = random.Random(seed)
    side = Side()
    try:
        sent = []
        for i in range(40):
            count = rng.choice([1, 2, 2, 2, 3])
            sent.append([bytes([i]) * rng.randrange(0, 300) for _ in range(count)])
        stream = b"".join(_wire(f) for f in sent)
        at = 0
        while at < len(stream):
            step = rng.choice([1, 7, 20, 200, 5000])
            side.sock.sendall(stream[at : at + step])
            at += step
            side.read()
        assert [frames for _, frames in side.got] == sent
        assert not side.conn.buf
    finally:
        side.close()


@pytest.mark.parametrize(
    ("max_frames", "max_frame", "frames"),
    [(10, 100, [b"a", b"b" * 101]), (10, 100, [b"a" * 101, b"b"]), (1, 100, [b"a", b"b"])],
)
def test_a_request_over_the_limits_closes_the_connection_on_the_short_way_too(
    max_frames: int, max_frame: int, frames: list[bytes]
) -> None:
    side = Side(max_frames, max_frame)
    try:
        side.sock.sendall(_wire(frames))
        side.read()
        assert side.got == []
        assert side.listener.refused == 1 and not side.listener._conns
        assert side.sock.recv(10) == b""  # closed
    finally:
        side.close()


class Sock:
    """A connection's socket that counts its sends and takes at most ``room`` bytes of the next
    one (then everything)."""

    def __init__(self, real: socket.socket, room: int = -1) -> None:
        self.real = real
        self.room = room
        self.calls: list[str] = []

    def fileno(self) -> int:
        return self.real.fileno()

    def send(self, data: Any) -> int:
        self.calls.append("send")
        if self.room >= 0:
            data, self.room = memoryview(data)[: self.room], -1
        return self.real.send(data)

    def sendmsg(self, parts: Any) -> int:
        self.calls.append("sendmsg")
        if self.room >= 0:
            room, self.room = self.room, -1
            return self.real.send(b"".join(bytes(p) for p in parts)[:room])
        return self.real.sendmsg(parts)

    def close(self) -> None:
        self.real.close()


def test_a_small_reply_is_one_send_of_packs_bytes() -> None:
    side = Side()
    try:
        sock = side.conn.sock = Sock(side.conn.sock)  # type: ignore[assignment]
        frames = [b"head" * 10, b"value" * 20]
        assert side.listener.reply(side.conn.id, frames)
        want = _wire(frames)
        assert _recv(side.sock, len(want)) == want
        assert sock.calls == ["send"]
        # Anything else still goes pack()'s way: three frames, a big one
        for other in ([b"a", b"b", b"c"], [b"h", b"v" * local_socket.JOIN_BYTES]):
            assert side.listener.reply(side.conn.id, other)
            want = _wire(other)
            assert _recv(side.sock, len(want)) == want
        assert sock.calls == ["send", "sendmsg", "sendmsg"]
    finally:
        side.close()


@pytest.mark.parametrize("room", [0, 1, 19, 20, 45])
def test_a_reply_the_socket_takes_in_part_is_finished_in_order(room: int) -> None:
    side = Side()
    try:
        side.conn.sock = Sock(side.conn.sock, room)  # type: ignore[assignment]
        first, second = [b"head" * 10, b"value" * 20], [b"next", b"one"]
        assert side.listener.reply(side.conn.id, first)
        assert side.listener.reply(side.conn.id, second)  # behind what waits
        for _ in range(10):
            if not side.loop.writers:
                break
            side.loop.run(side.loop.writers)
        assert not side.loop.writers and not side.conn.out and side.conn.queued == 0
        want = _wire(first) + _wire(second)
        assert _recv(side.sock, len(want)) == want
    finally:
        side.close()


def _outcome(request_id: int, n: int = 1) -> m.RunOutcome:
    placement = {f"t{i}": "a" for i in range(n)}
    return m.RunOutcome(
        request_id, "run", "DONE", {"DONE": n}, placement, "a", 1, (), None, ("t0",), (), True
    )


def test_a_reply_encoded_at_once_is_the_prepared_ones_frames(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(replies, "BIG_ENTRIES", 100)
    codec = Codec()
    prepared: list[int] = []
    direct: list[int] = []
    sent: list[tuple[bytes, list[Any]]] = []

    def prepare(msg: Any, frames: Any) -> Any:
        prepared.append(msg.request_id)
        return lambda piece: codec.encode(msg, sender="a", frames=frames or (), piece=piece)

    def encode(msg: Any, frames: Any) -> list[Any]:
        direct.append(msg.request_id)
        return codec.encode(msg, sender="a", frames=frames or ())

    async def go() -> None:
        out = Replies(prepare, lambda conn, frames: sent.append((conn, frames)), encode=encode)
        out.reply(b"c", _outcome(1), [b"v"])
        out.reply(b"c", _outcome(2, 500))  # big: prepared for the thread
        out.reply(b"c", _outcome(3), [b"w"])  # behind it: at once, queued
        for _ in range(500):
            if len(sent) == 3:
                break
            await asyncio.sleep(0.01)
        out.close()

    asyncio.run(go())
    assert direct == [1, 3] and prepared == [2]
    assert [Codec().decode(f).msg.request_id for _, f in sent] == [1, 2, 3]  # type: ignore[union-attr]
    assert sent[0][1] == codec.encode(_outcome(1), sender="a", frames=[b"v"])


def test_a_connection_may_queue_a_big_reply_in_the_kernel() -> None:
    """The daemon's end of a connection takes a few MB before it waits for the client
    (``SEND_BUFFER``, capped by the kernel): a big outcome leaves in one write, not one wake-up
    of the loop per default 208 KB the client read."""
    with open("/proc/sys/net/core/wmem_max") as f:
        cap = min(local_socket.SEND_BUFFER, int(f.read()))
    side = Side()
    try:
        assert side.conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) >= cap
    finally:
        side.close()


def _big_message(rng: random.Random, size: int) -> list[bytes]:
    """A body, a few small frames and big ones (``KEEP_BYTES`` or more), ``size`` bytes or so."""
    # (a body of KEEP_BYTES or more, a big submission's head, stays bytes all the same)
    frames = [b"body-" + rng.randbytes(rng.choice([0, 150, local_socket.KEEP_BYTES + 1]))]
    while sum(map(len, frames)) < size:
        big = rng.random() < 0.5
        frames.append(rng.randbytes(rng.randrange(local_socket.KEEP_BYTES, 300_000) if big else 9))
    return frames


def _feed(side: Side, stream: bytes, steps: list[int], rng: random.Random) -> None:
    """Send ``stream`` in steps of ``steps``' sizes, as much as the socket takes, the listener
    reading all there is after each (one wake-up a read, as the loop would call it)."""
    side.sock.setblocking(False)
    at = 0
    while True:
        if at < len(stream):
            with contextlib.suppress(BlockingIOError):
                at += side.sock.send(stream[at : at + rng.choice(steps)])
        elif not select.select([side.conn.sock], [], [], 0)[0]:
            return
        while side.listener._conns and select.select([side.conn.sock], [], [], 0)[0]:
            side.read()


@pytest.mark.parametrize("seed", range(4))
def test_a_big_message_is_read_into_its_own_buffer_whatever_the_reads(seed: int) -> None:
    """A message of ``BIG`` bytes or more that one read does not bring whole is received into a
    buffer of its size: the same frames, the body and small ones as bytes, the big ones past the
    body as read-only views (as the ROUTER gives them), the messages around it untouched, and
    nothing left in the connection's buffer."""
    rng = random.Random(seed)
    side = Side(max_frames=64, max_frame=1 << 22)
    try:
        sent = [
            [b"before", b"x"],
            _big_message(rng, rng.choice([local_socket.BIG + 1, 700_000, 2_000_000])),
            [b"after", b"y" * 70_000],
        ]
        stream = b"".join(_wire(f) for f in sent)
        _feed(side, stream, [100, 5000, 300_000, 2_000_000], rng)
        assert [[bytes(f) for f in frames] for _, frames in side.got] == sent
        big = side.got[1][1]
        assert type(big[0]) is bytes
        for frame, want in zip(big[1:], sent[1][1:], strict=True):
            if len(want) >= local_socket.KEEP_BYTES:
                assert type(frame) is memoryview and frame.readonly
            else:
                assert type(frame) is bytes
        assert side.conn.big is None and not side.conn.buf
    finally:
        side.close()


def test_a_big_message_after_a_read_that_held_it_in_part_takes_no_copy_through_take(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A W1 submission's upload piece (~450 KB, two frames) sent whole: its first read fills the
    scratch, the rest is read straight into the message's buffer; ``take`` never sees it."""
    rng = random.Random(5)
    side = Side()
    takes: list[int] = []
    real = local_socket.take

    def counting(buf: bytearray, *args: Any) -> Any:
        takes.append(len(buf))
        return real(buf, *args)

    monkeypatch.setattr(local_socket, "take", counting)
    try:
        frames = [b"upload-chunk", rng.randbytes(449_064)]
        _feed(side, _wire(frames), [1 << 20], rng)
        (got,) = side.got
        assert got[1][0] == frames[0] and type(got[1][0]) is bytes
        assert bytes(got[1][1]) == frames[1] and type(got[1][1]) is memoryview
        assert takes == [] and side.drains == 1 and side.conn.big is None
    finally:
        side.close()


@pytest.mark.parametrize(
    ("max_frames", "max_frame", "sizes"),
    [(10, 1 << 20, [10, 2 << 20]), (1, 1 << 22, [10, 600_000])],
)
def test_a_big_message_over_the_limits_is_refused_as_before(
    max_frames: int, max_frame: int, sizes: list[int]
) -> None:
    """A header over the limits is not given a buffer: ``take`` refuses it and the connection
    closes, as for any message."""
    side = Side(max_frames, max_frame)
    try:
        frames = [b"b" * sizes[0], b"z" * sizes[1]]
        side.sock.setblocking(False)
        sent = side.sock.send(_wire(frames)[: local_socket.CHUNK + 10])
        assert sent > 4 + 8 * len(frames)
        side.read()
        assert side.got == [] and side.conn.big is None
        assert side.listener.refused == 1 and not side.listener._conns
    finally:
        side.close()


def test_a_connection_closed_amid_a_big_message_is_dropped() -> None:
    side = Side()
    try:
        wire = _wire([b"body", b"q" * 600_000])
        side.sock.setblocking(False)
        sent = side.sock.send(wire[:400_000])
        assert sent > 100
        side.read()
        assert side.conn.big is not None and side.conn.filled == sent and side.got == []
        side.sock.close()
        side.read()
        assert not side.listener._conns and side.got == []
    finally:
        side.close()
