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


def dead_or_forgotten(node: Node, name: str) -> bool:
    """``name`` (a member ``node`` knew) is DEAD there, or was and has been reaped since."""
    return view(node).get(name, DEAD) == DEAD


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
            # Each side judges the other in its own time, so each is waited for on its own. A
            # side fenced as a minority (2 of the 4 it last knew alive: daemon/fencing.py) judges
            # nobody DEAD for up to fence_max (dead_reap_after). The other side may not be fenced
            # (the first far member it declared DEAD left its base before the second went
            # SUSPECT): it declares the far side DEAD at once and forgets them dead_reap_after
            # later, which can be before the fenced side's verdict.
            await async_wait_for(
                lambda: dead_or_forgotten(nodes[0], "m2"), 20, what="m0 sees the partition"
            )
            await async_wait_for(
                lambda: dead_or_forgotten(nodes[2], "m0"), 20, what="m2 sees the partition"
            )
            network.heal()
            await async_wait_for(
                lambda: all(view(n).get(f"m{j}") == ALIVE for n in nodes[:4] for j in range(4)),
                30,
                what="partition healed: all ALIVE again",
            )
        finally:
            for node in nodes:
                await node.stop(drain=False)

    asyncio.run(asyncio.wait_for(scenario(), 100))
