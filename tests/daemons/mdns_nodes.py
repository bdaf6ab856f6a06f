"""In-process mDNS discovery nodes for test_mdns and test_security_mdns: each on its own
127.0.0.N with a random port (loopback only), a unique cluster per test, every started node closed
even when a later one fails to start."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable

from handoffd.discovery import DiscoveryEvent, PeerGone, PeerSeen
from handoffd.discovery.mdns import MdnsDiscovery
from handoffd.testing import async_wait_for, loopback_hosts

WAIT_S = 15.0  # bound on every discovery wait: a few announcement rounds on a loaded machine


class Node:
    def __init__(self, name: str, cluster: str, host: str, port: int | None = None) -> None:
        port = port or random.randint(20000, 60000)
        self.events: list[DiscoveryEvent] = []
        self.address = f"{host}:{port}"
        self.discovery = MdnsDiscovery(name, cluster, host, port, self.events.append)

    def seen(self) -> dict[str | None, str]:
        return {e.name: e.address for e in self.events if isinstance(e, PeerSeen)}

    def gone(self) -> set[str]:
        return {e.name for e in self.events if isinstance(e, PeerGone)}


async def started(*nodes: Node) -> list[Node]:
    done: list[Node] = []
    try:
        for node in nodes:
            await node.discovery.start()
            done.append(node)
    except BaseException:
        await close_all(done)
        raise
    return list(nodes)


async def start_nodes(specs: list[tuple[str, str]]) -> list[Node]:
    """One started node per (name, cluster), each on its own loopback address."""
    hosts = loopback_hosts(len(specs))
    return await started(*(Node(n, c, h) for (n, c), h in zip(specs, hosts, strict=True)))


async def close_all(nodes: list[Node]) -> None:
    for node in nodes:
        await node.discovery.close()


async def wait_for(condition: Callable[[], object], what: str) -> None:
    await async_wait_for(condition, WAIT_S, what=what)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
