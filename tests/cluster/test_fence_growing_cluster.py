"""A partition that grows member by member (daemon/fencing.py, loss episodes), on an in-process
cluster of 7 (MemoryNetwork): the far side's 4 members are cut from the other 3 one at a time,
each 0.6 evict_after after the one before (and once that one is seen unreachable on the small
side), so the first ones are DEAD there for evict_after before the last is cut. The small side
must fence with its base of 7 kept (before: the first far members left its base one by one, 3 of
5, then 3 of 4 reachable, and it never fenced), the big side must not, and the heal ends it.
The nodes' clock is the test's (``DrivenClock``): the 0.6 evict_after between two cuts is
advanced once the cut is seen, not slept."""

from __future__ import annotations

import functools
from dataclasses import replace

import pytest

from handoffd.config import MembershipConfig
from handoffd.protocol import messages as m
from handoffd.testing import DrivenClock, ThreadedCluster, wait_for

pytestmark = pytest.mark.timeout(180)

# evict_after = REAP / 12 = 24 s; fence_max = REAP. The small side must see the last cut within
# 0.4 evict_after (9.6 s of real time) of it, or the episode of the cut before ends first and it
# never fences: a loaded machine took up to 6 s to see a cut, its failure detectors slowed by
# late ticks (Lifeguard), which the advances give no real time to wear off. The advances make
# a longer evict_after cost nothing.
REAP = 288.0


def test_a_partition_growing_member_by_member_fences_the_small_side() -> None:
    membership = replace(MembershipConfig.for_tests(), dead_reap_after=REAP)
    evict_after = REAP / 12
    clock = DrivenClock()
    with ThreadedCluster([{"cpu": 1}] * 7, membership=membership, clock=clock) as cluster:
        addresses, names = cluster.addresses(), cluster.names()
        far = list(range(3, 7))  # cut from the small side (0-2) one at a time

        def quorums() -> list[tuple[bool, int, int]]:
            return cluster.run(
                lambda: [
                    (n.quorum.fenced, n.quorum.reachable, len(n.quorum.base)) for n in cluster.nodes
                ]
            )

        def down_on_small(name: str) -> bool:
            def check() -> bool:
                views = [n.membership.get(name) for n in cluster.nodes[:3]]
                return all(v is None or v.status != m.ALIVE for v in views)

            return bool(cluster.run(check))

        wait_for(lambda: [q[2] for q in quorums()] == [7] * 7, 30, what="every base holds 7")
        cut: list[int] = []
        for index in far:
            cut.append(index)
            at = clock()
            # The cut members together (they still talk to each other), the rest together.
            cluster.network.partition(
                [[addresses[i] for i in cut], [addresses[i] for i in range(7) if i not in cut]]
            )
            wait_for(functools.partial(down_on_small, names[index]), 30, what=names[index])
            if index != far[-1]:  # the timeline: the next one is cut this much later
                cluster.advance(max(0.0, at + 0.6 * evict_after - clock()))
        try:
            wait_for(
                lambda: [q[0] for q in quorums()] == [True] * 3 + [False] * 4,
                30,
                what="the small side fenced, the big side not",
            )
        except TimeoutError as timeout:  # which side failed: (fenced, reachable, base) a node
            raise AssertionError(f"{timeout}: {quorums()}") from None
        assert [q[1:] for q in quorums()[:3]] == [(3, 7)] * 3  # nobody left the small side's base
        cluster.network.heal()
        wait_for(lambda: not any(q[0] for q in quorums()), 30, what="every node unfenced")
        wait_for(lambda: [q[2] for q in quorums()] == [7] * 7, 30, what="every base holds 7 again")
