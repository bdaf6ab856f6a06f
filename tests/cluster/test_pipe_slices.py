"""A large message on a worker's pipe is read in slices (issue 19: no stall past ~100 ms): the
parent's ``Reader`` never blocks on one still being written, takes at most ``SLICE`` bytes of
it per call, and returns it whole and exact once all of it came; the message after it is intact."""

from __future__ import annotations

import os
import select
import socket
import threading
from multiprocessing.connection import Connection

import pytest

from handoffd.worker import _pipe

pytestmark = pytest.mark.timeout(60)


def test_a_large_message_comes_in_slices_without_blocking() -> None:
    ours, theirs = socket.socketpair()
    reader = _pipe.Reader(ours.fileno())
    writer = Connection(os.dup(theirs.fileno()))
    size = 3 * _pipe.SLICE + 12345
    big = os.urandom(1 << 20) * (size >> 20) + os.urandom(size % (1 << 20))
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
        calls = 0
        got = None
        while got is None:
            select.select([ours], [], [], 5)  # readable (as the loop would wait)
            reader.fill()
            before = reader.have
            got = reader.next()
            calls += 1
            if got is None:
                assert reader.have - before <= _pipe.SLICE  # one slice per call at most
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
