"""mDNS discovery on loopback only: each node on its own 127.0.0.N, a unique cluster per test."""

from __future__ import annotations

import asyncio

import pytest
from mdns_nodes import close_all, start_nodes, unique, wait_for

pytestmark = pytest.mark.timeout(60)


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
