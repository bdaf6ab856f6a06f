"""A message's path between two daemons outside its handler, in this process (issue 13).

    .venv/bin/python bench/msg_path.py [--exchanges 2000] [--window 4] [--rounds 3]
    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python bench/msg_path.py \\
        --exchanges N --rounds 1        # at two N: instructions = the difference over the messages

W1's traffic between its two daemons as shapes, over real ``ZmqTransport``s on 127.0.0.1 and
one asyncio loop: ``a`` (the owner) sends a message to ``b`` with ``send`` (a dispatch: a body
and one opaque frame), and ``b``'s handler answers each with two messages sent back with
``send`` (its ledger answer and its report), up to ``--window`` exchanges in flight, as d1 and
d0 keep a few dispatches outstanding. Each message is a real ``ReplicaAcked`` encoded and
decoded by a ``Codec`` as a node does, so a message's path is: the sender's encode and send, the
receiver's wake-up, drain (``_read_batch``), decode and the handler's call. Prints, per message,
the loop turns (``BaseEventLoop._run_once``), the callbacks run (``Handle._run``), the
``ZMQ_EVENTS`` checks (each a ``getsockopt`` and, in libzmq, a ``getpid``), and the process CPU (both transports and their ZeroMQ I/O threads share the process); under callgrind
the difference of two ``--exchanges`` over the difference of their messages is the path's
instructions a message (the I/O threads' included).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from asyncio import base_events, events
from typing import Any

import zmq

from handoffd.config import Limits
from handoffd.protocol import messages as m
from handoffd.protocol.codec import Codec
from handoffd.transport.zmq_transport import ZmqTransport

_EVENTS = int(zmq.EVENTS)
counts = {"turns": 0, "callbacks": 0, "events": 0}


def _count_turns() -> None:
    run_once, run = base_events.BaseEventLoop._run_once, events.Handle._run
    getsockopt = zmq.Socket.getsockopt

    def counted_get(self: Any, option: int) -> Any:
        if option == _EVENTS:
            counts["events"] += 1
        return getsockopt(self, option)

    def counted_once(self: Any) -> None:
        counts["turns"] += 1
        run_once(self)

    def counted_run(self: Any) -> None:
        counts["callbacks"] += 1
        run(self)

    base_events.BaseEventLoop._run_once = counted_once  # type: ignore[method-assign]
    events.Handle._run = counted_run  # type: ignore[method-assign]
    zmq.Socket.getsockopt = counted_get  # type: ignore[method-assign]


async def one_round(exchanges: int, window: int) -> tuple[float, float, float, float]:
    codec = Codec()
    limits = Limits(max_messages_per_s_per_peer=10**9)  # the rate bound is not measured here
    a = ZmqTransport("127.0.0.1", 0, limits=limits)
    b = ZmqTransport("127.0.0.1", 0, limits=limits)
    state = {"sent": 0, "answers": 0}
    done = asyncio.Event()
    payload = b"p" * 600
    dispatch = m.ReplicaAcked("r" * 22, 1, 0, False)

    def send_one() -> None:
        state["sent"] += 1
        a.send(b.address, codec.encode(dispatch, sender="d0", frames=[payload]))

    def on_b(conn: bytes, frames: list[Any], listening: bool) -> None:
        decoded = codec.decode(frames)
        assert decoded is not None
        seq = decoded.msg.seq
        for i in (0, 1):
            answer = m.ReplicaAcked("r" * 22, 1, seq * 2 + i, False)
            b.send(a.address, codec.encode(answer, sender="d1"))

    def on_a(conn: bytes, frames: list[Any], listening: bool) -> None:
        decoded = codec.decode(frames)
        assert decoded is not None
        state["answers"] += 1
        if state["answers"] % 2 == 0:  # an exchange done: the next goes
            if state["sent"] < exchanges:
                send_one()
            elif state["answers"] == 2 * exchanges:
                done.set()

    await a.start(on_a)
    await b.start(on_b)
    try:
        a.send(b.address, codec.encode(dispatch, sender="d0"))  # both connections up first
        while state["answers"] < 2:
            await asyncio.sleep(0.001)
        state.update(sent=0, answers=0)
        turns, callbacks, checks = counts["turns"], counts["callbacks"], counts["events"]
        started = time.process_time()
        for _ in range(min(window, exchanges)):
            send_one()
        await asyncio.wait_for(done.wait(), 120)
        cpu = time.process_time() - started
        messages = 3 * exchanges
        return (
            (counts["turns"] - turns) / messages,
            (counts["callbacks"] - callbacks) / messages,
            (counts["events"] - checks) / messages,
            1e6 * cpu / messages,
        )
    finally:
        await a.close()
        await b.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--exchanges", type=int, default=2000)
    parser.add_argument("--window", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    _count_turns()
    cells = [asyncio.run(one_round(args.exchanges, args.window)) for _ in range(args.rounds)]
    turns = statistics.median(c[0] for c in cells)
    callbacks = statistics.median(c[1] for c in cells)
    checks = statistics.median(c[2] for c in cells)
    cpu = statistics.median(c[3] for c in cells)
    print(
        f"per message (median of {args.rounds}): loop turns {turns:.3f}, callbacks "
        f"{callbacks:.3f}, ZMQ_EVENTS checks {checks:.3f}, CPU {cpu:.1f} us"
    )


if __name__ == "__main__":
    main()
