"""Codec and ZmqTransport throughput on this machine (loopback only).

    .venv/bin/python bench/bench_codec.py

Reference (DESIGN.md section 5): asyncio ROUTER/DEALER small round trips ~7-11k/s one at a time,
20-40k/s with 100 in flight; PUSH/PULL of small msgpack messages 140-260k/s.
"""

from __future__ import annotations

import asyncio
import time

from handoffd.protocol import codec
from handoffd.protocol.messages import (
    ALIVE,
    DispatchItem,
    DispatchTasks,
    InputRef,
    MemberState,
    Ping,
    TaskReport,
    TasksReported,
)
from handoffd.transport.zmq_transport import ZmqTransport


def rate(label: str, count: int, seconds: float, unit: str = "msg/s") -> None:
    print(f"{label:<58} {count / seconds:>12,.0f} {unit}")


def bench_codec() -> None:
    member = MemberState(
        "node-1", "127.0.0.1:7788", "default", 3, ALIVE,
        {"cpu": 8.0, "memory": 16000.0, "gpu": 0.0}, {"cpu": 2.0, "memory": 9000.0, "gpu": 0.0}, 41,
    )  # fmt: skip
    ping = Ping(7, (member, member, member))
    inputs = tuple(
        InputRef("value", f"dep{i}", ("127.0.0.2:7788",), -1, "variadic", -1) for i in range(3)
    )
    items = tuple(
        DispatchItem(f"task-{i}", 1, {"cpu": 1.0}, "variadic", None, i, inputs) for i in range(100)
    )
    large = DispatchTasks("run-1", "127.0.0.1:7788", items)
    payloads = [b"p" * 200] * 100
    reports = TasksReported(
        "run-1",
        tuple(TaskReport(f"task-{i}", 1, "DONE", 8, i, "", "", "", "") for i in range(10)),
        {"cpu": 3.0, "memory": 9000.0},
        12,
    )
    for label, msg, frames, count in (
        ("Ping + 3 MemberStates", ping, (), 50_000),
        ("TasksReported, 10 reports (+10 frames)", reports, [b"v" * 8] * 10, 20_000),
        ("DispatchTasks, 100 items x 3 inputs (+100 frames)", large, payloads, 300),
    ):
        encoded = codec.encode(msg, sender="node-1", frames=frames)
        start = time.perf_counter()
        for _ in range(count):
            codec.encode(msg, sender="node-1", frames=frames)
        rate(f"encode {label}", count, time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(count):
            codec.decode(encoded)
        rate(f"decode {label}", count, time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(count):
            codec.decode(codec.encode(msg, sender="node-1", frames=frames))
        rate(
            f"encode+decode {label} ({len(encoded[0])} B body)", count, time.perf_counter() - start
        )
    assert not codec.stats.dropped


async def bench_transport() -> None:
    received = 0
    a = ZmqTransport("127.0.0.1", 0)
    b = ZmqTransport("127.0.0.1", 0)
    done = asyncio.Event()
    target = 0

    def on_b(conn: bytes, frames: list[bytes]) -> None:
        nonlocal received
        received += 1
        if received >= target:
            done.set()

    await a.start(lambda conn, frames: None)
    await b.start(on_b)
    try:
        frames = codec.encode(Ping(1, ()), sender="a")
        a.send(b.address, frames)
        target = 1
        await asyncio.wait_for(done.wait(), 10)
        for label, count, chunk in (("one-way small messages", 200_000, 1000),):
            received, target = 0, count
            done.clear()
            start = time.perf_counter()
            for i in range(count):
                a.send(b.address, frames)
                if i % chunk == 0:
                    await asyncio.sleep(0)
            await asyncio.wait_for(done.wait(), 60)
            rate(f"ZmqTransport {label}", count, time.perf_counter() - start)
    finally:
        await a.close()
        await b.close()

    for in_flight in (1, 100):
        await bench_round_trips(in_flight)


async def bench_round_trips(in_flight: int, count: int = 20_000) -> None:
    a = ZmqTransport("127.0.0.1", 0)
    b = ZmqTransport("127.0.0.1", 0)
    done = asyncio.Event()
    replies = sent = 0
    frames = codec.encode(Ping(1, ()), sender="a")

    def on_a(conn: bytes, got: list[bytes]) -> None:  # a reply came back: keep the window full
        nonlocal replies, sent
        replies += 1
        if sent < count:
            sent += 1
            a.send(b.address, frames)
        if replies >= count:
            done.set()

    await a.start(on_a)
    await b.start(lambda conn, got: b.send(a.address, got))
    try:
        start = time.perf_counter()
        for _ in range(in_flight):
            sent += 1
            a.send(b.address, frames)
        await asyncio.wait_for(done.wait(), 120)
        rate(f"ZmqTransport round trips, {in_flight} in flight", count, time.perf_counter() - start)
    finally:
        await a.close()
        await b.close()


if __name__ == "__main__":
    bench_codec()
    asyncio.run(bench_transport())
