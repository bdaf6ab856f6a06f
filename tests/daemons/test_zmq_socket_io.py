"""ZmqTransport's socket reads and writes: a burst read with one ZMQ_EVENTS check, parts sent straight
to the compiled send."""

from __future__ import annotations

import types
from typing import Any

import pytest
import zmq

from handoffd.transport.zmq_transport import KEEP_BYTES, ZmqTransport, send_parts


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


def test_send_parts_sends_through_the_compiled_send_and_never_half_a_message(
    monkeypatch: Any,
) -> None:
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    dealer = ctx.socket(zmq.DEALER)
    sugar: list[int] = []

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        sugar.append(1)  # pyzmq's Python layer: what send_parts goes around
        raise AssertionError("pyzmq's Python send layer used")

    try:
        router.bind("inproc://send-parts")
        dealer.connect("inproc://send-parts")
        monkeypatch.setattr(zmq.Socket, "send", counted)
        monkeypatch.setattr(zmq.Socket, "send_multipart", counted)
        big = b"b" * KEEP_BYTES
        send_parts(dealer, [b"body", memoryview(b"small"), big])
        with pytest.raises(TypeError):  # a part that is no buffer: nothing of it is sent
            send_parts(dealer, [b"half", 12345])  # type: ignore[list-item]
        send_parts(dealer, [b"next"])
        monkeypatch.undo()
        got = router.recv_multipart()
        assert got[1:] == [b"body", b"small", big]
        assert router.recv_multipart()[1:] == [b"next"]  # not glued to b"half"
        assert not sugar
    finally:
        dealer.close(linger=0)
        router.close(linger=0)
        ctx.term()


def _readable(fd: int) -> bool:
    import select

    return bool(select.select([fd], [], [], 0)[0])


def test_a_drain_s_sends_are_checked_once_at_its_end_and_rearm_the_fd() -> None:
    """A send processes the socket's commands, which may take the FD's edge of a message that
    arrived meanwhile. Outside a drain the socket is re-drained next iteration (as ever); within
    a drain it is noted, and the drain's end (``_check_sent``) schedules a drain of it only if a
    message waits (else that message would wait for an unrelated wake-up); with nothing waiting,
    the next arrival must make the FD readable again, or the skipped drain would lose it."""
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    dealer = ctx.socket(zmq.DEALER)
    try:
        router.bind("inproc://sent-on")
        dealer.connect("inproc://sent-on")
        fake = types.SimpleNamespace(_dirty=set(), _sent=set(), _draining=False, dirty=[])
        fake._mark_dirty = fake.dirty.append
        ZmqTransport._sent_on(fake, dealer)  # type: ignore[arg-type]
        assert fake.dirty == [dealer] and not fake._sent  # outside a drain: as before
        fake.dirty.clear()
        fake._draining = True
        dealer.send(b"hello")
        ZmqTransport._sent_on(fake, dealer)  # type: ignore[arg-type]
        assert fake._sent == {dealer} and not fake.dirty  # checked at the drain's end
        conn, body = router.recv_multipart()
        assert body == b"hello"
        router.send_multipart([conn, b"answer"])  # waits on the dealer, unread
        dealer.send(b"more")  # takes the edge of the answer: the FD says nothing of it now
        ZmqTransport._check_sent(fake)  # type: ignore[arg-type]
        assert fake.dirty == [dealer] and not fake._sent  # a drain is scheduled for the answer
        assert dealer.recv(zmq.NOBLOCK) == b"answer"
        fake.dirty.clear()
        conn, body = router.recv_multipart()
        assert body == b"more"
        dealer.send(b"again")  # nothing waits on the dealer now
        ZmqTransport._sent_on(fake, dealer)  # type: ignore[arg-type]
        ZmqTransport._check_sent(fake)  # type: ignore[arg-type]
        assert fake.dirty == []  # no drain scheduled
        assert not _readable(dealer.FD)
        router.recv_multipart()
        router.send_multipart([conn, b"later"])
        assert _readable(dealer.FD)  # the check re-armed the edge: the loop wakes for it
        assert dealer.recv(zmq.NOBLOCK) == b"later"
        fake._dirty.add(dealer)  # already to be drained: no check, no second one
        ZmqTransport._sent_on(fake, dealer)  # type: ignore[arg-type]
        ZmqTransport._check_sent(fake)  # type: ignore[arg-type]
        assert fake.dirty == []
    finally:
        dealer.close(linger=0)
        router.close(linger=0)
        ctx.term()
