"""Discovery without sockets: which hosts may run mDNS, instance names, seed parsing, and the seed
discoverer's retries (an event loop, no network)."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from handoffd.discovery import DiscoveryEvent, PeerSeen
from handoffd.discovery.mdns import MdnsDiscovery, check_mdns_host, instance_name
from handoffd.testing import async_wait_for


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
            await async_wait_for(lambda: len(events) >= 6, 15, what="retries")
            later = [e.address for e in events[2:] if isinstance(e, PeerSeen)]
            assert set(later) == {"127.0.0.6:2"}
            known.add("127.0.0.6:2")
            count = len(events)
            await asyncio.sleep(0.05)
            assert len(events) <= count + 1  # at most one round was already in flight
        finally:
            await seeds.close()

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_without_a_key_mdns_stays_on_loopback() -> None:
    from handoffd.discovery.mdns import mdns_refusal
    from handoffd.discovery.mdns_gate import own_network

    assert mdns_refusal("127.0.0.1", keyed=False) is None
    assert mdns_refusal("10.1.2.3", keyed=True) is None
    refusal = mdns_refusal("10.1.2.3", keyed=False)
    assert refusal is not None and "mDNS off" in refusal and "--key-file" in refusal
    assert own_network("127.0.0.77") == ipaddress.IPv4Network("127.0.0.0/8")
    with pytest.raises(ValueError, match="not the address of any interface"):
        own_network("192.0.2.250")
