"""Crashes are told from partitions (daemon/fencing.py, ``Transport.refuses``), on an in-process
cluster of 5 (MemoryNetwork): three nodes stopped at once leave the base of the survivors as soon
as their addresses are seen refusing (a probe round or two), not after the fence's cap; the minority
side of a partition stays fenced past the old cap (dead_reap_after / 4) until the heal (the nodes'
clock the test's, ``DrivenClock``: the watch past the old cap advanced, not slept)."""

from __future__ import annotations

from dataclasses import replace

import pytest

import handoffd
from handoffd.config import MembershipConfig
from handoffd.testing import DrivenClock, ThreadedCluster, wait_for

pytestmark = pytest.mark.timeout(180)


def square(x: int) -> int:
    return x * x


def one_task() -> handoffd.DAG:
    return handoffd.DAG().add_function(handoffd.Function(id="a", code=square, kwargs={"x": 6}))


def test_the_survivors_of_three_crashes_at_once_go_on_without_waiting_for_the_cap() -> None:
    membership = replace(MembershipConfig.for_tests(), dead_reap_after=120.0)  # cap: 120 s
    with ThreadedCluster([{"cpu": 1}] * 5, membership=membership) as cluster:

        def fenced() -> list[bool]:
            return cluster.run(lambda: [n.quorum.fenced for n in cluster.nodes[:2]])

        wait_for(
            lambda: cluster.run(lambda: [len(n.quorum.base) for n in cluster.nodes]) == [5] * 5,
            30,
            what="every base holds 5",
        )
        for index in (2, 3, 4):
            cluster.crash(index)
        # At risk (2 of 5), they ask the crashed nodes' addresses, which refuse: those leave the
        # base within a probe round or two, long before the cap (without the refusals they stay
        # fenced for 120 s). They may be fenced for a moment meanwhile.
        survivors = set(cluster.names()[:2])
        wait_for(
            lambda: (
                cluster.run(lambda: [n.quorum.base for n in cluster.nodes[:2]]) == [survivors] * 2
            ),
            30,
            what="the crashed nodes out of both bases",
        )
        wait_for(lambda: not any(fenced()), 10, what="both survivors unfenced")
        with handoffd.connect(cluster.url(0), timeout=10) as client:
            assert client.execute(one_task()) == {"a": 36}


def test_the_minority_of_a_partition_stays_fenced_past_the_old_cap() -> None:
    # Old cap dead_reap_after / 4 = 6 s; now dead_reap_after = 24 s. A DEAD member leaves the base
    # after dead_reap_after / 12 (2 s) while we are not fenced: with 12 (1 s), a loaded machine
    # found the three far members DEAD more than 1 s apart, the base shrank one by one and the
    # minority never fenced (since fence20 the unreachable leave the base by loss episode:
    # test_fence_growing_cluster.py).
    membership = replace(MembershipConfig.for_tests(), dead_reap_after=24.0)
    clock = DrivenClock()
    with ThreadedCluster([{"cpu": 1}] * 5, membership=membership, clock=clock) as cluster:
        addresses = cluster.addresses()

        def fenced() -> list[bool]:
            return cluster.run(lambda: [n.quorum.fenced for n in cluster.nodes])

        wait_for(
            lambda: cluster.run(lambda: [len(n.quorum.base) for n in cluster.nodes]) == [5] * 5,
            30,
            what="every base holds 5",
        )
        cluster.network.partition([addresses[:3], addresses[3:]])
        wait_for(lambda: fenced() == [False] * 3 + [True] * 2, 30, what="the minority fenced")
        since = clock()
        # Twice the old cap, every node's timers judged at each step. (A fence the cap lifted
        # stays lifted: the base shrank. Each step is a stall to membership; few of them leave
        # a false suspicion on either side its real time to be refuted.)
        while clock() - since < 12.0:
            assert fenced() == [False] * 3 + [True] * 2
            cluster.advance(1.0)
        assert fenced() == [False] * 3 + [True] * 2
        cluster.network.heal()
        wait_for(lambda: not any(fenced()), 30, what="every node unfenced after the heal")
