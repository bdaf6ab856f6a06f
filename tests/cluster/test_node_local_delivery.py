"""What a node sends itself: delivered without the network, one callback per loop turn."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from handoffd.protocol import messages as m
from handoffd.testing import ThreadedCluster

pytestmark = pytest.mark.timeout(120)


def test_messages_to_ourselves_in_one_turn_are_delivered_in_order_then_fed_as_one_batch():
    """The owner's scheduler gets one batch for everything our own executor said in a loop turn
    (as for a transport's drain), after every message of it was routed, in the order sent."""
    with ThreadedCluster([{"cpu": 1}]) as cluster:
        (node,) = cluster.nodes
        seen: list[Any] = []

        async def body() -> list[Any]:
            route, flush = node._route, node.owner.flush

            def routed(msg: Any, *rest: Any) -> None:
                seen.append(msg.request_id)
                route(msg, *rest)

            def flushed() -> None:
                seen.append("flush")
                flush()

            node._route, node.owner.flush = routed, flushed
            try:
                for i in range(3):
                    assert node.send(node.address, m.Ok(i))
                assert seen == []  # not before the next loop turn
                for _ in range(3):
                    await asyncio.sleep(0)
            finally:
                del node._route, node.owner.flush  # the class's methods again
            return seen

        assert cluster.call(body) == [0, 1, 2, "flush"]
