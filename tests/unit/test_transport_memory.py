"""MemoryTransport: delivery, copies, and fault injection (drop, delay, partition, heal, kill)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from handoffd.transport.memory import MemoryNetwork, MemoryTransport


async def settle(rounds: int = 5) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


class Cluster:
    def __init__(self, seed: int = 1) -> None:
        self.network = MemoryNetwork(seed)
        self.inbox: dict[str, list[tuple[bytes, list[bytes]]]] = {}
        self.listening: dict[str, list[bool]] = {}  # per message: came in as a send (not a reply)
        self.nodes: dict[str, MemoryTransport] = {}

    async def add(self, address: str) -> MemoryTransport:
        transport = self.network.transport(address)
        inbox = self.inbox.setdefault(address, [])
        listening = self.listening.setdefault(address, [])

        def handler(conn: bytes, frames: list[bytes], on_listening: bool) -> None:
            inbox.append((conn, frames))
            listening.append(on_listening)

        await transport.start(handler)
        self.nodes[address] = transport
        return transport


def run(body: Callable[[Cluster], Awaitable[None]], seed: int = 1) -> None:
    async def main() -> None:
        cluster = Cluster(seed)
        try:
            await asyncio.wait_for(body(cluster), 30)
        finally:
            for transport in cluster.nodes.values():
                await transport.close()

    asyncio.run(main())


def test_delivery_copies_frames_and_reply_reaches_sender() -> None:
    async def body(c: Cluster) -> None:
        a, b = await c.add("a"), await c.add("b")
        buffer = bytearray(b"mutable")
        assert a.send("b", [memoryview(buffer)])
        buffer[:] = b"changed"
        await settle()
        conn, frames = c.inbox["b"][0]
        # A send arrives as on a listening socket, from a routing id (not a peer address) ...
        assert frames == [b"mutable"] and type(frames[0]) is bytes and conn == b"\0a"
        assert c.listening["b"] == [True]
        assert b.reply(conn, [b"pong"])
        await settle()
        # ... and its reply on the sender's outbound connection, from the replier's address.
        assert c.inbox["a"] == [(b"b", [b"pong"])] and c.listening["a"] == [False]
        assert a.reply(b"b", [b"again"])  # a reply to a reply goes as a send would
        await settle()
        assert c.inbox["b"][1] == (b"\0a", [b"again"]) and c.listening["b"] == [True, True]
        assert a.send("nobody", [b"x"]) is False

    run(body)


def test_drop_is_seeded_and_counted() -> None:
    def lost(seed: int) -> int:
        result: list[int] = []

        async def body(c: Cluster) -> None:
            a, _ = await c.add("a"), await c.add("b")
            c.network.drop("a", "b", 0.5)
            for _ in range(200):
                a.send("b", [b"x"])
            await settle()
            result.append(c.network.dropped)
            assert len(c.inbox["b"]) == 200 - c.network.dropped

        run(body, seed)
        return result[0]

    assert lost(7) == lost(7)
    assert 50 < lost(7) < 150


def test_delay() -> None:
    async def body(c: Cluster) -> None:
        a, _ = await c.add("a"), await c.add("b")
        c.network.delay("a", "b", 0.05)
        a.send("b", [b"late"])
        await settle()
        assert c.inbox["b"] == []
        await asyncio.sleep(0.2)  # a delay must have elapsed; only a lower bound is asserted
        assert c.inbox["b"] == [(b"\0a", [b"late"])]

    run(body)


def test_partition_and_heal() -> None:
    async def body(c: Cluster) -> None:
        a, _, x = await c.add("a"), await c.add("b"), await c.add("x")
        c.network.partition([["a", "b"], ["x"]])
        assert a.send("b", [b"1"])
        assert a.send("x", [b"2"]) is False
        assert x.send("a", [b"3"]) is False
        await settle()
        assert (
            [f for _, f in c.inbox["b"]] == [[b"1"]] and c.inbox["x"] == [] and c.inbox["a"] == []
        )
        c.network.heal()
        assert a.send("x", [b"4"]) and x.send("a", [b"5"])
        await settle()
        assert c.inbox["x"] == [(b"\0a", [b"4"])] and c.inbox["a"] == [(b"\0x", [b"5"])]

    run(body)


def test_partition_applies_to_messages_in_flight() -> None:
    async def body(c: Cluster) -> None:
        a, _ = await c.add("a"), await c.add("b")
        a.send("b", [b"in flight"])
        c.network.partition([["a"], ["b"]])
        await settle()
        assert c.inbox["b"] == []
        assert c.nodes["b"].stats.dropped == 1

    run(body)


def test_kill_and_revive() -> None:
    async def body(c: Cluster) -> None:
        a, b = await c.add("a"), await c.add("b")
        c.network.kill("b")
        assert a.send("b", [b"x"]) is False
        assert b.send("a", [b"y"]) is False
        await settle()
        assert c.inbox["a"] == [] and c.inbox["b"] == []
        c.network.revive("b")
        assert a.send("b", [b"z"])
        await settle()
        assert c.inbox["b"] == [(b"\0a", [b"z"])]

    run(body)


def test_handler_errors_are_contained_and_addresses_unique() -> None:
    async def body(c: Cluster) -> None:
        a = await c.add("a")
        b = c.network.transport("b")
        c.nodes["b"] = b
        calls: list[bytes] = []

        def handler(conn: bytes, frames: list[bytes], listening: bool) -> None:
            calls.append(frames[0])
            raise RuntimeError("bug")

        await b.start(handler)
        a.send("b", [b"1"])
        a.send("b", [b"2"])
        await settle()
        assert calls == [b"1", b"2"] and b.stats.handler_errors == 2
        with pytest.raises(ValueError):
            c.network.transport("a")

    run(body)


def test_memory_urls_name_a_live_network_and_refuse_anything_else():
    from handoffd.transport.memory import find_network

    network = MemoryNetwork(seed=1)
    url = network.url("a.mem:1")
    assert url == f"mem://{network.id}/a.mem:1"
    assert find_network(url) == (network, "a.mem:1")
    with pytest.raises(ValueError, match="expected mem://<network>/<address>"):
        find_network("mem://only-an-id")
    with pytest.raises(ValueError, match="expected mem://"):
        find_network("127.0.0.1:7788")
    gone = network.url("a.mem:1")
    del network
    import gc

    gc.collect()
    with pytest.raises(ValueError, match="no in-process network"):
        find_network(gone)
