"""Minority fencing on an in-process cluster of 5 (MemoryNetwork, real worker processes): cut 2
nodes off from 3 while a run owned on the small side is running. The small side refuses new runs
(a client moves them to the big side by itself) and reads of the run it owns (a client given both
sides' addresses reads it on the big side), and dispatches nothing; the big side keeps working;
the tasks running on the big side are not run again by the small side's owner; after the heal
everything resumes."""

from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import cloudpickle
import pytest

import handoffd
from handoffd.config import MembershipConfig
from handoffd.membership import swim
from handoffd.protocol import messages as m
from handoffd.testing import DrivenClock, ThreadedCluster, wait_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(180)


def record(i: int, where: str, seconds: float) -> int:
    Path(where, f"{i}-{os.getpid()}-{time.monotonic_ns()}").touch()
    time.sleep(seconds)
    return i * i


def fenced_dag(width: int, where: str, seconds: float) -> handoffd.DAG:
    dag = handoffd.DAG()
    for i in range(width):
        dag.add_function(
            handoffd.Function(
                id=f"t{i}",
                code=record,
                args=[],
                kwargs={"i": i, "where": where, "seconds": seconds},
            )
        )
    return dag


def executions(where: Path) -> list[tuple[int, int]]:
    return [(int(p.name.split("-")[0]), int(p.name.split("-")[1])) for p in where.iterdir()]


def test_the_minority_side_is_fenced_and_resumes_after_the_heal(tmp_path: Path) -> None:
    runs, probes = tmp_path / "runs", tmp_path / "probes"
    runs.mkdir()
    probes.mkdir()
    # dead_reap_after 60 s: the fence lasts up to 60 s, past this test's partition.
    membership = replace(MembershipConfig.for_tests(), dead_reap_after=60.0)
    with ThreadedCluster([{"cpu": 2}] * 5, membership=membership, clock=DrivenClock()) as cluster:
        network = cluster.network
        addresses = cluster.addresses()
        big, small = addresses[:3], addresses[3:]

        def fenced() -> list[bool]:
            return cluster.run(lambda: [n.quorum.fenced for n in cluster.nodes])

        with (
            handoffd.connect(cluster.url(3), timeout=10) as on_small,
            handoffd.connect(cluster.url(0), timeout=10) as on_big,
        ):
            run = on_small.submit(fenced_dag(10, str(runs), 3.0))
            wait_for(lambda: len(executions(runs)) == 10, 30, what="all 10 tasks started")
            pid_node = cluster.run(
                lambda: {pid: n.address for n in cluster.nodes for pid in n.pool.worker_pids()}
            )
            started = executions(runs)
            on_big_side = {i for i, pid in started if pid_node.get(pid) in big}
            assert on_big_side, f"no task placed on the big side: {started} {pid_node}"

            for a in big:
                for b in small:
                    network.drop(a, b, 1.0)
            wait_for(
                lambda: fenced() == [False, False, False, True, True], 30, what="small side fenced"
            )
            # (2 of 4 when a far member the small side judged DEAD before it was fenced stayed
            # DEAD there for evict_after first: a loop that slow saw members fail one by one.)
            text = re.compile(r"minority partition \(2 of [45] reachable\); retry on another node")
            refusals = cluster.run(lambda: [n.owner.minority for n in cluster.nodes])
            assert [bool(r and text.search(r)) for r in refusals] == [False] * 3 + [True] * 2
            # A client of the small side is refused there and moves the run to the big side by
            # itself (handoffd.client_moves): the run is owned there and runs once.
            moved = on_small.submit(fenced_dag(1, str(probes), 0.0))
            names = cluster.run(lambda: [n.name for n in cluster.nodes])
            assert moved.owner in names[:3], (moved.owner, names)
            assert on_small.address in big
            assert moved.wait(30).state == "DONE" and moved.results() == {"t0": 0}
            assert [i for i, _ in executions(probes)] == [0]
            # The big side keeps taking and running work meanwhile.
            assert on_big.execute(fenced_dag(3, str(probes), 0.0)) == {
                f"t{i}": i * i for i in range(3)
            }
            # The small side's owner sees the big side's nodes DEAD by now (without the fence).
            cluster.advance(2.0)
            assert fenced() == [False, False, False, True, True]
            # Reads of the run its fenced owner holds: refused there ("fenced"), so a client
            # given both sides' addresses reads it on the big side (taken over by a standby).
            if cluster.run(
                lambda: any(run.id in n.replication.standby.replicas for n in cluster.nodes[:3])
            ):
                with handoffd.connect([cluster.url(3), cluster.url(0)], timeout=10) as reader:
                    status = reader.run(run.id).status()
                    assert status.state in ("RUNNING", "DONE"), status
                    if status.owner == names[3]:
                        # Only a run that ended before the cut is read there (its big-side tasks
                        # reported in time: a loop slow enough that the 3 s tasks all ended).
                        assert status.state == "DONE", status
                    else:
                        assert status.owner in names[:3], status
                        assert reader.address in big

            network.heal()
            wait_for(lambda: not any(fenced()), 30, what="every node unfenced after the heal")
            assert run.wait(90).state == "DONE"
            assert run.results() == {f"t{i}": i * i for i in range(10)}
            # What ran on the big side was not run again on the small side (its owner, cut off,
            # saw the big side DEAD). (The big side may re-run work itself if, on a loaded
            # machine, it wrongly lost one of its own nodes for a moment: not fencing's concern.)
            small_pids = {pid for pid, address in pid_node.items() if address in small}
            again = [(i, p) for i, p in executions(runs) if i in on_big_side and p in small_pids]
            assert not again, f"tasks of the big side run on the small side: {again} {pid_node}"
            # Nor did the big side take a verdict of the small side's on one of its own: the
            # small side may have judged some DEAD before it was fenced, and such a verdict
            # replayed after the heal made the big side's owner re-place a live node's tasks.
            told = cluster.run(
                lambda: [
                    (n.name, h)
                    for n in cluster.nodes[:3]
                    for h in n.membership.history
                    if h[1] in names[:3]
                    and h[3] == m.DEAD
                    and any(h[5].endswith(f"from {name}") for name in names[3:])
                ]
            )
            assert not told, f"the big side took the small side's verdicts: {told}"
            # And the small side takes runs again.
            assert on_small.execute(fenced_dag(2, str(probes), 0.0)) == {"t0": 0, "t1": 1}


def test_a_verdict_from_before_the_fence_is_not_replayed_after_the_heal() -> None:
    """The small side may judge a far member DEAD before it is fenced (one or two far members go
    DEAD while the last is still ALIVE there), and it holds that verdict through the fence. After
    the heal the majority's news of that member's resources reached the small side, which gossiped
    it on with its DEAD verdict attached; the majority took it (DEAD outranks ALIVE at one
    incarnation) and its owner re-placed the live member's tasks (about 1 run in 24 of the test
    above under -n 3). Here the small side holds n1 DEAD from the fence on, n1's resources change
    meanwhile, and the partition heals link by link, n1's last, so the small side hears of n1's
    resources from the others before n1 itself can refute."""
    membership = replace(MembershipConfig.for_tests(), dead_reap_after=60.0)
    with ThreadedCluster([{"cpu": 2}] * 5, membership=membership) as cluster:
        network, addresses, names = cluster.network, cluster.addresses(), cluster.names()
        big, small = addresses[:3], addresses[3:]
        n1 = names[1]

        def fenced() -> list[bool]:
            return cluster.run(lambda: [n.quorum.fenced for n in cluster.nodes])

        def view(i: int) -> dict[str, m.MemberState]:
            return cluster.run(lambda: {s.name: s for s in cluster.nodes[i].members()})

        wait_for(
            lambda: all(len(view(i)) == 5 for i in range(5)), 30, what="5 nodes know each other"
        )
        for a in big:
            for b in small:
                network.drop(a, b, 1.0)
        wait_for(
            lambda: fenced() == [False, False, False, True, True], 30, what="small side fenced"
        )

        def judge_n1() -> None:  # what the race leaves: the small side holds n1 DEAD
            for i, told_by in ((3, names[4]), (4, names[3])):
                node = cluster.nodes[i]
                dead = replace(node.membership.get(n1), status=m.DEAD)
                node._run_membership(swim.Received(told_by, None, m.Gossip((dead,))))

        cluster.run(judge_n1)
        assert [view(i)[n1].status for i in (3, 4)] == [m.DEAD, m.DEAD]

        def said_all() -> bool:  # each news item of the small side sent its number of times
            pending = cluster.run(lambda: [n.membership.news_pending for n in cluster.nodes[3:]])
            return pending == [0, 0]

        wait_for(said_all, 30, what="the verdict spread (as a verdict made before the fence)")
        # n1's free resources change on the big side meanwhile (a task starts there, say).
        cluster.run(lambda: cluster.nodes[1]._run_membership(swim.LocalResources({"cpu": 1.0})))
        version = cluster.run(lambda: cluster.nodes[1].membership.me.resource_version)

        network.heal()
        for b in small:
            network.drop(big[1], b, 1.0)
        wait_for(
            lambda: all(view(i)[n1].resource_version >= version for i in (3, 4)),
            30,
            what="the small side heard of n1's resources from the others",
        )
        wait_for(said_all, 30, what="the small side said all it had to say")
        network.heal()
        wait_for(
            lambda: all(s.status == m.ALIVE for i in range(5) for s in view(i).values()),
            30,
            what="everyone ALIVE everywhere",
        )
        wait_for(lambda: not any(fenced()), 30, what="every node unfenced")
        judged = cluster.run(
            lambda: [
                (n.name, h)
                for n in cluster.nodes[:3]
                for h in n.membership.history
                if h[1] == n1 and h[3] == m.DEAD
            ]
        )
        assert not judged, f"the majority took the small side's old verdict on {n1}: {judged}"
