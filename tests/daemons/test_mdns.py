"""mDNS discovery on loopback only: each node on its own 127.0.0.N, a unique cluster per test."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable

import pytest

from handoffd.discovery import DiscoveryEvent, PeerGone, PeerSeen
from handoffd.discovery.mdns import MdnsDiscovery, check_mdns_host, instance_name

pytestmark = pytest.mark.timeout(60)


def loopback_hosts(n: int) -> list[str]:
    return [f"127.0.0.{i}" for i in random.sample(range(2, 251), n)]


async def wait_for(condition: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Node:
    def __init__(self, name: str, cluster: str, host: str, port: int) -> None:
        self.events: list[DiscoveryEvent] = []
        self.address = f"{host}:{port}"
        self.discovery = MdnsDiscovery(name, cluster, host, port, self.events.append)

    def seen(self) -> dict[str | None, str]:
        return {e.name: e.address for e in self.events if isinstance(e, PeerSeen)}

    def gone(self) -> set[str]:
        return {e.name for e in self.events if isinstance(e, PeerGone)}


async def start_nodes(specs: list[tuple[str, str]]) -> list[Node]:
    hosts = loopback_hosts(len(specs))
    nodes = [
        Node(n, c, h, random.randint(20000, 60000)) for (n, c), h in zip(specs, hosts, strict=True)
    ]
    started: list[Node] = []
    try:
        for node in nodes:
            await node.discovery.start()
            started.append(node)
    except BaseException:
        await close_all(started)
        raise
    return nodes


async def close_all(nodes: list[Node]) -> None:
    for node in nodes:
        await node.discovery.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_two_nodes_see_each_other_and_the_goodbye() -> None:
    asyncio.run(asyncio.wait_for(two_nodes(), 45))


async def two_nodes() -> None:
    cluster = unique("t2")
    a, b = await start_nodes([(unique("a"), cluster), (unique("b"), cluster)])
    try:
        name_a, name_b = a.discovery.name, b.discovery.name
        await wait_for(lambda: name_b in a.seen() and name_a in b.seen(), what="mutual PeerSeen")
        assert a.seen()[name_b] == b.address and b.seen()[name_a] == a.address
        assert name_a not in a.seen()  # never ourselves
        await b.discovery.close()
        await wait_for(lambda: name_b in a.gone(), what="PeerGone after a clean close")
    finally:
        await close_all([a, b])


def test_three_nodes_and_another_cluster_is_ignored() -> None:
    asyncio.run(asyncio.wait_for(three_nodes(), 45))


async def three_nodes() -> None:
    cluster = unique("t3")
    nodes = await start_nodes(
        [
            (unique("a"), cluster),
            (unique("b"), cluster),
            (unique("c"), cluster),
            (unique("x"), unique("other")),
        ]
    )
    *ours, stranger = nodes
    try:
        names = {n.discovery.name for n in ours}
        for node in ours:
            want = names - {node.discovery.name}
            await wait_for(lambda node=node, want=want: want <= set(node.seen()), what="all peers")
        # The stranger announced itself before the others finished: by now it was resolved and
        # dropped, and it saw none of ours either.
        await wait_for(lambda: all(n.discovery.ignored_other_cluster for n in ours), what="ignore")
        for node in ours:
            assert stranger.discovery.name not in node.seen()
            assert {node.seen()[n.discovery.name] for n in ours if n is not node} == {
                n.address for n in ours if n is not node
            }
        assert not (names & set(stranger.seen()))
    finally:
        await close_all(nodes)


def test_refuses_anything_but_a_local_ipv4_host() -> None:
    for bad in ("0.0.0.0", "::1", "224.0.0.251", "example.com", "192.0.2.77"):
        with pytest.raises(ValueError):
            MdnsDiscovery("n", "c", bad, 7788, lambda e: None)
    assert str(check_mdns_host("127.0.0.9")) == "127.0.0.9"


def test_instance_names_are_dns_safe_and_bounded() -> None:
    assert instance_name("node.1", "prod") == "node-1-prod"
    long_a = instance_name("n" * 80, "c1")
    long_b = instance_name("n" * 80, "c2")
    assert len(long_a.encode()) <= 63 and long_a != long_b


# ------------------------------------------------------------------ static seeds (no multicast)


def test_parse_seed_accepts_addresses_and_names_with_clear_errors() -> None:
    from handoffd.discovery.seeds import parse_seed, parse_seeds

    assert parse_seed(" 127.0.0.1:7788 ") == "127.0.0.1:7788"
    assert parse_seed("[::1]:7000") == "[::1]:7000"
    assert parse_seed("Node-1.lan:80") == "node-1.lan:80"
    for bad, needle in [
        ("127.0.0.1", "no port"),
        ("127.0.0.1:", "port"),
        ("127.0.0.1:99999", "1..65535"),
        ("127.0.0.1:x", "not a number"),
        ("::1:7000", "brackets"),
        ("bad_host!:7", "neither"),
        ("", "empty"),
        ("999.1.1.1:7", "neither"),
    ]:
        with pytest.raises(ValueError, match=needle):
            parse_seed(bad)
    assert parse_seeds(["127.0.0.2:1"], env="127.0.0.3:2, 127.0.0.2:1,") == [
        "127.0.0.2:1",
        "127.0.0.3:2",
    ]


def test_seed_discovery_retries_until_membership_knows_the_seed() -> None:
    from handoffd.discovery.seeds import SeedDiscovery

    async def scenario() -> None:
        events: list[DiscoveryEvent] = []
        known: set[str] = set()
        seeds = SeedDiscovery(
            ["127.0.0.5:1", "127.0.0.6:2"], events.append, known.__contains__, 0.01
        )
        await seeds.start()
        try:
            assert [e.address for e in events if isinstance(e, PeerSeen)] == [
                "127.0.0.5:1",
                "127.0.0.6:2",
            ]
            known.add("127.0.0.5:1")  # joined; the other seed starts later
            await wait_for(lambda: len(events) >= 6, what="retries")
            later = [e.address for e in events[2:] if isinstance(e, PeerSeen)]
            assert set(later) == {"127.0.0.6:2"}
            known.add("127.0.0.6:2")
            count = len(events)
            await asyncio.sleep(0.05)
            assert len(events) <= count + 1  # at most one round was already in flight
        finally:
            await seeds.close()

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_every_socket_is_bound_to_the_node_address_or_the_group_only() -> None:
    """The network rule, checked on the sockets themselves: zeroconf sends only from our 127.0.0.N
    (bound there, multicast interface set there); the one other socket is bound to the mDNS group
    address (so no unicast to any address reaches it), a member on loopback only, with
    IP_MULTICAST_ALL off (no group traffic from another interface). No 0.0.0.0 socket."""
    import socket

    from handoffd.discovery.mdns_gate import IP_MULTICAST_ALL

    async def scenario() -> None:
        (node,) = await start_nodes([(unique("s"), unique("sock"))])
        try:
            engine = node.discovery._zc.zeroconf.engine  # type: ignore[union-attr]
            host = node.address.rpartition(":")[0]
            assert engine.senders, "zeroconf has no sending socket"
            for wrapped in engine.senders:
                sock = wrapped.sock
                assert sock.getsockname() == (host, 5353)
                interface = sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, 4)
                assert socket.inet_ntoa(interface) == host
            sender_fds = {w.sock.fileno() for w in engine.senders}
            others = [w.sock for w in engine.readers if w.sock.fileno() not in sender_fds]
            assert len(others) == 1, others
            assert others[0].getsockname() == ("224.0.0.251", 5353)
            assert others[0].getsockopt(socket.IPPROTO_IP, IP_MULTICAST_ALL) == 0
        finally:
            await close_all([node])

    asyncio.run(asyncio.wait_for(scenario(), 30))
