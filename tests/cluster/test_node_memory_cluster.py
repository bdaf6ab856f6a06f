"""Five real Node objects (codec, membership, executor, owner) over the in-memory network:
convergence, a crash seen as DEAD by all, a partition healed, and a DAG across them."""

from __future__ import annotations

import asyncio

import pytest

from handoffd.config import NodeConfig
from handoffd.daemon.node import Node
from handoffd.protocol.messages import ALIVE, DEAD
from handoffd.testing import async_wait_for
from handoffd.transport.memory import MemoryNetwork

pytestmark = pytest.mark.timeout(120)


async def start_cluster(network: MemoryNetwork, count: int) -> list[Node]:
    nodes: list[Node] = []
    for i in range(count):
        address = f"mem-{i}:1"
        cfg = NodeConfig.for_tests(
            f"m{i}", capacity={"cpu": 1.0 + i}, seeds=("mem-0:1",) if i else (), max_workers=1
        )
        node = Node(cfg, transport=network.transport(address), seed=i)
        await node.start()
        nodes.append(node)
    return nodes


def view(node: Node) -> dict[str, int]:
    return {s.name: s.status for s in node.members()}


def test_five_nodes_converge_detect_a_crash_and_heal_a_partition():
    async def scenario() -> None:
        network = MemoryNetwork(seed=7)
        nodes = await start_cluster(network, 5)
        try:
            names = {n.name for n in nodes}
            await async_wait_for(
                lambda: all(
                    set(view(n)) == names and set(view(n).values()) == {ALIVE} for n in nodes
                ),
                20,
                what="5 nodes converge",
            )
            # capacity travels with gossip
            assert {s.name: s.capacity["cpu"] for s in nodes[0].members()} == {
                f"m{i}": 1.0 + i for i in range(5)
            }

            network.kill("mem-4:1")
            await async_wait_for(
                lambda: all(view(n)["m4"] == DEAD for n in nodes[:4]),
                20,
                what="crashed node DEAD everywhere",
            )

            network.partition([["mem-0:1", "mem-1:1"], ["mem-2:1", "mem-3:1"]])
            await async_wait_for(
                lambda: view(nodes[0])["m2"] == DEAD and view(nodes[2])["m0"] == DEAD,
                20,
                what="partition detected on both sides",
            )
            network.heal()
            await async_wait_for(
                lambda: all(view(n)[f"m{j}"] == ALIVE for n in nodes[:4] for j in range(4)),
                30,
                what="partition healed: all ALIVE again",
            )
        finally:
            for node in nodes:
                await node.stop(drain=False)

    asyncio.run(asyncio.wait_for(scenario(), 100))
