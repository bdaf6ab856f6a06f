"""Crashes are told from partitions with real daemons on loopback (daemon/fencing.py,
``ZmqTransport.refuses``): of three daemons, two are killed with SIGKILL at once. The survivor
reaches 1 of 3, but the killed daemons' ports refuse connections (their host is up, nothing
listens), so they leave its quorum base within seconds -- not after the fence's cap
(dead_reap_after, 60 s) -- and it runs a DAG on its own."""

from __future__ import annotations

import time

import pytest

import handoffd
from handoffd.protocol.messages_swim import DescribeHealth
from handoffd.testing import DaemonCluster, wait_for

pytestmark = pytest.mark.timeout(180)


def cube(x: int) -> int:
    return x * x * x


def test_the_survivor_of_two_kills_at_once_goes_on_long_before_the_cap() -> None:
    with DaemonCluster() as cluster:
        first = cluster.start()
        others = [cluster.start(seeds=[first.address]) for _ in range(2)]
        with handoffd.connect(first.address, timeout=10) as client:

            def health() -> tuple[int, int, str]:
                reply = client._ask_node(first.address, lambda rid: DescribeHealth(rid), 5.0)
                return reply.reachable, reply.base, reply.fenced

            wait_for(lambda: health() == (3, 3, ""), 60, what="a base of 3, all reachable")
            for daemon in others:
                daemon.kill()
            killed = time.monotonic()
            wait_for(lambda: health() == (1, 1, ""), 45, what="the killed out of the base")
            assert time.monotonic() - killed < 45  # the cap is 60 s: the refusals did it
            dag = handoffd.DAG().add_function(handoffd.Function(id="c", code=cube, kwargs={"x": 3}))
            assert client.execute(dag, timeout=60) == {"c": 27}
        assert first.alive(), first.log()
