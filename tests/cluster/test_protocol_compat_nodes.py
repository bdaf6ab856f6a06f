"""A node refuses a client and a peer of another protocol range at once, answering a
``ProtocolMismatch`` and logging it once (a Node on the in-memory network, the stranger's codec
speaking a newer range)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from handoffd.config import PROTOCOL_MAX, PROTOCOL_MIN, NodeConfig
from handoffd.protocol import messages as m
from handoffd.protocol import versions
from handoffd.protocol.codec import Codec, Mismatch
from handoffd.testing import async_wait_for
from handoffd.transport.memory import MemoryNetwork

pytestmark = pytest.mark.timeout(120)

OURS = (PROTOCOL_MIN, PROTOCOL_MAX)
NEWER = (PROTOCOL_MAX + 1, PROTOCOL_MAX + 2)  # a build that can no longer talk to this one


async def _node_and_stranger(network: MemoryNetwork, got: list[Any]) -> tuple[Any, Any]:
    from handoffd.daemon.node import Node

    node = Node(
        NodeConfig.for_tests("n1", capacity={"cpu": 1.0}, max_workers=1),
        transport=network.transport("n1:1"),
    )
    await node.start()
    stranger = network.transport("x:1")
    await stranger.start(
        lambda conn, frames, _listening: got.append(Codec(versions=NEWER).decode(frames))
    )
    return node, stranger


def test_a_node_answers_a_client_of_another_version_at_once_and_logs_it_once(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="handoffd.protocol")

    async def scenario() -> None:
        got: list[Any] = []
        node, client = await _node_and_stranger(MemoryNetwork(), got)
        try:
            other = Codec(versions=NEWER)
            for request_id in (1, 2):
                client.send("n1:1", other.encode(m.ListNodes(request_id), sender="client-x"))
            await async_wait_for(lambda: len(got) == 2, 10, what="two refusals")
            assert [d.msg for d in got] == [
                Mismatch("n1", *OURS, 0, True, f"n1 speaks protocol {versions.describe(*OURS)}")
            ] * 2
        finally:
            await node.stop(drain=False)

    asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records if "client-x" in r.getMessage()]
    assert lines == [
        f"client client-x speaks protocol {versions.describe(*NEWER)}, this daemon "
        f"{versions.describe(*OURS)}: refusing its requests (upgrade handoffd on this node)"
    ]


def test_a_peer_of_another_version_is_refused_membership_and_logged(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="handoffd.protocol")

    async def scenario() -> None:
        got: list[Any] = []
        node, peer = await _node_and_stranger(MemoryNetwork(), got)
        try:
            state = m.MemberState("p", "x:1", "default", 1, m.ALIVE, {"cpu": 8.0}, {}, 0, *NEWER)
            join = Codec(versions=NEWER).encode(m.PushPull((state,), True), sender="p")
            peer.send("n1:1", join)
            peer.send("n1:1", join)
            await async_wait_for(lambda: len(got) == 2, 10, what="the join refused")
            assert all(type(d.msg) is Mismatch and d.msg.told for d in got)
            assert [s.name for s in node.members()] == ["n1"]
        finally:
            await node.stop(drain=False)

    asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("peer p ")]
    assert lines == [
        f"peer p speaks protocol {versions.describe(*NEWER)}, this daemon "
        f"{versions.describe(*OURS)}: not admitted to membership (upgrade handoffd on this node)"
    ]
