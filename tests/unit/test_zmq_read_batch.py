"""ZmqTransport._read_batch: a burst is read with one ZMQ_EVENTS check, not one per message."""

from __future__ import annotations

import types
from typing import Any

import zmq

from handoffd.transport.zmq_transport import KEEP_BYTES, ZmqTransport


class Counting:
    """A socket whose getsockopt calls are counted (each ZMQ_EVENTS is a getpid in libzmq)."""

    def __init__(self, sock: zmq.Socket[Any]) -> None:
        self.sock = sock
        self.getsockopts = 0

    def getsockopt(self, option: int) -> Any:
        self.getsockopts += 1
        return self.sock.getsockopt(option)

    def recv(self, *args: Any, **kwargs: Any) -> Any:
        return self.sock.recv(*args, **kwargs)


def test_a_burst_is_read_with_one_events_check_and_big_frames_kept() -> None:
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    dealer = ctx.socket(zmq.DEALER)
    try:
        router.bind("inproc://read-batch")
        dealer.connect("inproc://read-batch")
        big = b"v" * KEEP_BYTES
        for i in range(20):
            dealer.send_multipart([b"body%d" % i, b"small", big])
        fake = types.SimpleNamespace(address="test", dirty=[])
        fake._mark_dirty = fake.dirty.append
        counting = Counting(router)
        batch: list[list[Any]] = []
        while len(batch) < 20:  # inproc delivers at once; more than one wake-up is fine
            batch += ZmqTransport._read_batch(fake, counting, 2)  # type: ignore[arg-type]
        assert [parts[1] for parts in batch] == [b"body%d" % i for i in range(20)]
        assert all(len(parts) == 4 and parts[2] == b"small" for parts in batch)
        assert all(isinstance(parts[3], memoryview) and parts[3] == big for parts in batch)
        assert all(parts[3].readonly for parts in batch)
        assert counting.getsockopts <= 2, counting.getsockopts  # not one (or four) per message
        assert ZmqTransport._read_batch(fake, counting, 2) == []  # type: ignore[arg-type]
        assert not fake.dirty  # under DRAIN_CAP: no come-back scheduled
    finally:
        dealer.close(linger=0)
        router.close(linger=0)
        ctx.term()
