"""The worker's reads of its pipe (``worker._inbox``): one read per message or batch of messages,
no system call to look for a message already buffered, large and long-framed messages whole."""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from handoffd.worker import _inbox, _pipe
from handoffd.worker._inbox import Inbox


class Counting:
    """A socket whose reads are counted (``recv_into`` is the only read ``Inbox`` makes; its
    ``waiting`` looks with a poll of the descriptor first)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reads = 0

    def recv_into(self, *args: object) -> int:
        self.reads += 1
        return self.sock.recv_into(*args)  # type: ignore[arg-type]

    def fileno(self) -> int:
        return self.sock.fileno()


@pytest.fixture
def pipe():
    ours, theirs = socket.socketpair()
    counting = Counting(ours)
    yield Inbox(counting), counting, theirs  # type: ignore[arg-type]
    ours.close()
    theirs.close()


def test_a_message_is_one_read_and_a_buffered_one_none(pipe):
    inbox, counting, parent = pipe
    parent.sendall(_pipe.framed(b"job one", b"cancel"))  # a job and a cancel behind it
    assert inbox.next() == b"job one"
    assert counting.reads == 1  # Connection.recv_bytes: two (length, then body)
    assert inbox.waiting() and counting.reads == 1  # poll(0) before: one call
    assert inbox.next() == b"cancel" and counting.reads == 1
    assert not inbox.waiting() and counting.reads == 1  # the pipe is empty: a poll, no read
    parent.sendall(_pipe.framed(b"late"))
    assert inbox.waiting() and counting.reads == 2  # what the look found stays buffered
    assert inbox.next() == b"late" and counting.reads == 2


def test_a_message_arriving_in_parts_counts_as_waiting_and_is_read_whole(pipe):
    inbox, _, parent = pipe
    whole = _pipe.framed(b"x" * 1000)
    parent.sendall(whole[:10])
    assert inbox.waiting()  # as poll(0) said: readable, and the rest is on its way
    later = threading.Timer(0.05, parent.sendall, (whole[10:],))
    later.start()
    try:
        assert inbox.next() == b"x" * 1000  # blocks until the rest is here
    finally:
        later.join()


def test_large_messages_come_whole_in_a_buffer_of_their_own(pipe):
    inbox, _, parent = pipe
    big = bytes(range(256)) * (_pipe.LARGE // 256 + 3)
    sender = threading.Thread(target=parent.sendall, args=(_pipe.framed(b"head", big, b"tail"),))
    sender.start()
    try:
        assert inbox.next() == b"head"
        out = inbox.next()
        assert isinstance(out, bytearray) and out == big
        small = inbox.next()
        assert type(small) is bytes and small == b"tail"
    finally:
        sender.join()


def test_the_long_framing_is_understood(pipe):
    inbox, _, parent = pipe
    parent.sendall(struct.pack("!i", -1) + struct.pack("!Q", 5) + b"hello")
    assert inbox.next() == b"hello"


def test_eof_ends_both_the_wait_and_the_look(pipe):
    inbox, _, parent = pipe
    parent.sendall(_pipe.framed(b"last"))
    parent.shutdown(socket.SHUT_WR)
    assert inbox.next() == b"last"
    with pytest.raises(EOFError):
        inbox.waiting()
    with pytest.raises(EOFError):
        inbox.next()


def test_a_lone_message_skips_the_buffer_and_what_is_not_one_still_goes_through_it(
    pipe, monkeypatch
):
    inbox, counting, parent = pipe
    cuts: list[int] = []
    real_cut = _inbox.cut
    monkeypatch.setattr(_inbox, "cut", lambda *a: cuts.append(1) or real_cut(*a))
    parent.sendall(_pipe.framed(b"job"))
    got = inbox.next()
    assert got == b"job" and type(got) is bytes and not inbox.buf and not cuts
    parent.sendall(_pipe.framed(b""))  # an empty message: header only
    assert inbox.next() == b""
    parent.sendall(_pipe.framed(b"two", b"three"))  # more than one: buffered, then cut
    assert inbox.next() == b"two" and inbox.next() == b"three" and len(cuts) == 3
    whole = _pipe.framed(b"y" * 100)
    parent.sendall(whole[:50])  # the first read holds part of a message only
    later = threading.Timer(0.05, parent.sendall, (whole[50:],))
    later.start()
    try:
        assert inbox.next() == b"y" * 100
    finally:
        later.join()
    assert counting.reads == 5 and not inbox.buf
