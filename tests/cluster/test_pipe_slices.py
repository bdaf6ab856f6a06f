"""A large message on a worker's pipe is read in slices (issue 19: no stall past ~100 ms): the
parent's ``Reader`` never blocks on one still being written, takes at most ``SLICE`` bytes of
it per call, and returns it whole and exact once all of it came; the message after it is intact."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pickle
import select
import socket
import struct
import termios
import threading
from multiprocessing.connection import Connection

import pytest

from handoffd.testing import async_wait_for, wait_for
from handoffd.worker import _pipe

pytestmark = pytest.mark.timeout(60)


def readable(sock: socket.socket) -> int:
    """Bytes waiting to be read on ``sock``."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4))[0]


def test_a_large_message_comes_in_slices_without_blocking(monkeypatch: pytest.MonkeyPatch) -> None:
    # Slices smaller than the daemon's: a message of 64 of them, and a socket whose default buffer
    # holds more than one when the reader comes late.
    monkeypatch.setattr(_pipe, "SLICE", 32 << 10)
    ours, theirs = socket.socketpair()
    reader = _pipe.Reader(ours.fileno())
    writer = Connection(os.dup(theirs.fileno()))
    size = 64 * _pipe.SLICE + 12345
    big = os.urandom(size)
    sent = threading.Event()
    try:
        writer.send_bytes(b"small first")
        reader.fill()
        assert reader.next() == b"small first"
        assert reader.next() is None  # nothing more: no wait

        def write() -> None:
            writer.send_bytes(big)
            writer.send_bytes(b"after")
            sent.set()

        thread = threading.Thread(target=write, daemon=True)
        thread.start()
        # The writer fills the socket before we first read (as on a loaded machine, where the
        # reader comes late): fill() takes the message's start with its header into the buffer,
        # then next() one slice on top of what fill() held.
        wait_for(
            lambda: readable(ours) >= 3 * _pipe.SLICE // 2, 30, what="the writer filled the socket"
        )
        calls = 0
        got = None
        while got is None:
            select.select([ours], [], [], 5)  # readable (as the loop would wait)
            reader.fill()
            before = reader.have + len(reader.buf)  # held already (fill() read it)
            got = reader.next()
            calls += 1
            if got is None:  # one slice from the socket per call at most
                assert reader.have + len(reader.buf) - before <= _pipe.SLICE
            assert calls < 10_000
        assert calls >= 3  # several calls, none blocking for the whole message
        assert bytes(got) == big
        sent.wait(30)
        reader.fill()
        assert reader.next() == b"after"
    finally:
        writer.close()
        reader.close()
        ours.close()
        theirs.close()


def test_a_large_message_is_written_without_blocking_the_loop() -> None:
    """The parent's ``Writer``: sending a 48 MiB job input to a worker that is not reading yet
    returns at once (a blocking ``send_bytes`` held the daemon's loop ~1.1 s for 600 MiB); the
    loop's writer callback writes the rest as the worker reads, in order, framed as
    ``Connection`` frames it (the worker reads with ``recv_bytes``)."""
    ours, theirs = socket.socketpair()
    worker_end = Connection(os.dup(theirs.fileno()))
    big = os.urandom(1 << 20) * 48

    async def body() -> list[bytes]:
        loop = asyncio.get_running_loop()
        writer = _pipe.Writer(ours.fileno(), loop)
        try:
            writer.send(b"job header")
            writer.send(pickle.PickleBuffer(big))  # as the pool sends large inputs
            writer.send(b"after")
            assert writer.watching and writer.written < writer.queued  # nobody read: it waits
            got = await loop.run_in_executor(
                None, lambda: [worker_end.recv_bytes() for _ in range(3)]
            )
            await async_wait_for(lambda: not writer.watching, what="the writer callback removed")
            assert writer.written == writer.queued
            return got
        finally:
            writer.close()

    try:
        got = asyncio.run(body())
        assert got == [b"job header", big, b"after"]
    finally:
        worker_end.close()
        ours.close()
        theirs.close()


def test_small_messages_to_a_full_pipe_wait_their_turn_in_order() -> None:
    """Small messages (the job path: one write each while nothing waits) to a worker that does
    not read yet: what the pipe does not take, in part or whole, waits behind it in order, and the
    worker reads every message whole and in order once it reads."""
    ours, theirs = socket.socketpair()
    worker_end = Connection(os.dup(theirs.fileno()))
    messages = [os.urandom(1000 + i) for i in range(3000)]  # ~4.5 MB: more than the pipe holds

    async def body() -> list[bytes]:
        loop = asyncio.get_running_loop()
        writer = _pipe.Writer(ours.fileno(), loop)
        try:
            for message in messages:
                writer.send(message)
            assert writer.watching and 0 < writer.written < writer.queued
            got = await loop.run_in_executor(
                None, lambda: [worker_end.recv_bytes() for _ in messages]
            )
            await async_wait_for(lambda: not writer.watching, what="the writer callback removed")
            assert writer.written == writer.queued
            return got
        finally:
            writer.close()

    try:
        assert asyncio.run(body()) == messages
    finally:
        worker_end.close()
        ours.close()
        theirs.close()


def test_a_reply_and_its_small_value_framed_in_one_write_read_back_as_two_messages() -> None:
    """What a worker writes for a small value (``framed``): the parent reads the reply and the
    value apart, from one read, and a ``send_bytes`` reader (the other framing) agrees."""
    ours, theirs = socket.socketpair()
    reader = _pipe.Reader(ours.fileno())
    try:
        reply, value = pickle.dumps([(1, 1, True)]), b"v" * 100
        theirs.sendall(_pipe.framed(reply, value) + _pipe.framed(b""))
        reader.fill()
        assert [reader.next(), reader.next(), reader.next()] == [reply, value, b""]
        assert reader.next() is None
        other = Connection(os.dup(ours.fileno()))
        theirs.sendall(_pipe.framed(b"x" * 70000, b"y"))
        assert (other.recv_bytes(), other.recv_bytes()) == (b"x" * 70000, b"y")
        other.close()
    finally:
        reader.close()
        ours.close()
        theirs.close()


def test_a_read_of_one_small_message_keeps_it_whole_ahead_of_the_buffer() -> None:
    ours, theirs = socket.socketpair()
    reader = _pipe.Reader(ours.fileno())
    try:
        theirs.sendall(_pipe.framed(b"reply"))
        reader.fill()
        assert reader.whole == b"reply" and not reader.buf  # kept as read: no append, no cut
        theirs.sendall(_pipe.framed(b"next", b"after"))  # read before the first was taken
        reader.fill()
        assert reader.whole == b"reply" and reader.buf  # behind it, in the buffer
        got = [reader.next(), reader.next(), reader.next(), reader.next()]
        assert got == [b"reply", b"next", b"after", None]
        assert type(got[0]) is bytes
        theirs.sendall(_pipe.framed(b"x" * (_pipe.LARGE + 10)))  # large: a bytearray, as before
        out = reader.next(wait=True)
        assert isinstance(out, bytearray) and out == b"x" * (_pipe.LARGE + 10)
        assert reader.whole is None
        theirs.sendall(_pipe.framed(b"late"))
        assert reader.next(wait=True) == b"late"  # a blocking read goes through the buffer
    finally:
        reader.close()
        ours.close()
        theirs.close()


def test_the_reader_cuts_small_messages_in_order_around_a_large_one() -> None:
    ours, theirs = socket.socketpair()
    try:
        big = bytes(range(256)) * (_pipe.LARGE // 256 + 1)
        theirs.sendall(_pipe.framed(b"one", b"", b"two"))
        theirs.sendall(_pipe.framed(big, b"three"))
        reader = _pipe.Reader(ours.fileno())
        got: list[bytes | bytearray] = []
        while len(got) < 5:
            reader.fill()
            message = reader.next(wait=True)
            got.append(message)
        assert got == [b"one", b"", b"two", big, b"three"]
        assert [type(g) for g in got] == [bytes, bytes, bytes, bytearray, bytes]
        assert reader.next() is None and not reader.buf
        reader.close()
    finally:
        ours.close()
        theirs.close()
