"""A socket's batch is handled for at most ``DRAIN_SECONDS`` per loop iteration (issue 19, item 7):
the rest is handled on the next iterations, in order and before anything newer, with other
callbacks running in between; two peers' messages each keep their order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from zmq_nodes import Nodes, run

from handoffd.testing import async_wait_for
from handoffd.transport import zmq_transport


class Ticks:
    """Counts loop iterations: one call_soon chain, one step per iteration."""

    def __init__(self) -> None:
        self.n = 0
        self.on = True
        asyncio.get_running_loop().call_soon(self.step)

    def step(self) -> None:
        self.n += 1
        if self.on:
            asyncio.get_running_loop().call_soon(self.step)


def connected(hellos: list[bytes], a: Any, b: Any) -> Any:
    """Sends b a hello from a; b's handler appends each hello's conn to ``hellos``."""
    had = len(hellos)
    assert a.send(b.address, [b"hello"])
    return async_wait_for(lambda: len(hellos) > had, what="connection up")


@pytest.mark.parametrize("side", ["router", "dealer"])
def test_a_capped_batch_goes_on_next_iteration_in_order(
    monkeypatch: pytest.MonkeyPatch, side: str
) -> None:
    monkeypatch.setattr(zmq_transport, "DRAIN_SECONDS", 0.0)  # one message per iteration
    count = 300

    async def body(nodes: Nodes) -> None:
        seen: list[tuple[int, int]] = []  # (message, loop iteration it was handled in)
        hellos: list[bytes] = []
        ticks: Ticks | None = None

        def handle(conn: bytes, frames: list[Any], listening: bool) -> None:
            if frames[0] == b"hello":
                hellos.append(conn)
                return
            assert ticks is not None
            seen.append((int.from_bytes(frames[0], "big"), ticks.n))

        a = await nodes.start(handle)
        b = await nodes.start(handle)
        await connected(hellos, a, b)
        ticks = Ticks()
        if side == "router":  # a's DEALER -> b's ROUTER
            for i in range(count):
                assert a.send(b.address, [i.to_bytes(4, "big")])
        else:  # b replies on its ROUTER -> a's DEALER
            conn = hellos[0]
            for i in range(count):
                assert b.reply(conn, [i.to_bytes(4, "big")])
        await async_wait_for(lambda: len(seen) == count, what="all handled")
        ticks.on = False
        assert [i for i, _ in seen] == list(range(count))
        # Without the cap a batch (up to DRAIN_CAP = 512) is handled in one iteration.
        assert len({t for _, t in seen}) > count // 2, len({t for _, t in seen})

    run(body)


def test_two_peers_each_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zmq_transport, "DRAIN_SECONDS", 0.0)
    count = 200

    async def body(nodes: Nodes) -> None:
        hellos: list[bytes] = []
        inbox: list[bytes] = []

        def handle(conn: bytes, frames: list[Any], listening: bool) -> None:
            (hellos if frames[0] == b"hello" else inbox).append(frames[0])

        b = await nodes.start(handle)
        senders = [await nodes.start(), await nodes.start()]
        for a in senders:
            await connected(hellos, a, b)
        for i in range(count):
            for k, a in enumerate(senders):
                assert a.send(b.address, [bytes([k]) + i.to_bytes(4, "big")])
        await async_wait_for(lambda: len(inbox) == 2 * count, what="all handled")
        for k in range(2):
            got = [int.from_bytes(f[1:], "big") for f in inbox if f[0] == k]
            assert got == list(range(count))

    run(body)
