"""The ZeroMQ transport's CPU per message: two ``ZmqTransport``s on 127.0.0.1 in one process, one
sends bursts of small multi-part messages (a body and two opaque frames, as a report or a log
batch), the other answers each with a one-part reply (an ack). Prints the process's CPU
microseconds per message sent or received (both sides share the process, ZeroMQ's I/O threads
included) for ``--rounds`` rounds. Process CPU, not wall time: on a loaded machine it is the
steadier figure; compare builds in alternating pairs (issue 13, helper perf13e). Usage::

    .venv/bin/python bench/bench_transport.py [--messages 20000] [--burst 32] [--rounds 5]
    /work/main/.venv/bin/python bench/bench_transport.py   # (from /work/main: its build)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from handoffd.config import Limits
from handoffd.transport.zmq_transport import ZmqTransport


async def one_round(messages: int, burst: int) -> float:
    got = 0
    acked = 0
    done = asyncio.Event()

    def on_b(conn: bytes, frames: list[bytes], listening: bool) -> None:
        nonlocal got
        got += 1
        b.reply(conn, [b"ack"])

    def on_a(conn: bytes, frames: list[bytes], listening: bool) -> None:
        nonlocal acked
        acked += 1
        if acked == messages:
            done.set()

    limits = Limits(max_messages_per_s_per_peer=10**9)  # the rate bound is not measured here
    a = ZmqTransport("127.0.0.1", 0, limits=limits)
    b = ZmqTransport("127.0.0.1", 0, limits=limits)
    await a.start(on_a)
    await b.start(on_b)
    try:
        a.send(b.address, [b"hello"])  # the connection up before the clock starts
        while acked < 1:
            await asyncio.sleep(0.001)
        got, acked = 0, 0
        body, opaque = b"b" * 200, [b"v" * 40, b"w" * 300]
        started = time.process_time()
        for i in range(0, messages, burst):
            for _ in range(min(burst, messages - i)):
                a.send(b.address, [body, *opaque])
            await asyncio.sleep(0)
        await asyncio.wait_for(done.wait(), 60)
        return 1e6 * (time.process_time() - started) / (2 * messages)
    finally:
        await a.close()
        await b.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--burst", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    cells = [asyncio.run(one_round(args.messages, args.burst)) for _ in range(args.rounds)]
    shown = ", ".join(f"{c:.1f}" for c in cells)
    print(f"CPU per message {statistics.median(cells):.1f} us (median; rounds {shown})")


if __name__ == "__main__":
    main()
