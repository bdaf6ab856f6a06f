"""Two windows in which a run was lost with its owner although the cluster could have kept it
(issue 19), on an in-process cluster of 3 (MemoryNetwork, real workers).

1. The owner dies, its first standby takes over at term 1; the second standby hears of the new
   owner before the new owner's snapshot reaches it (held back here: a big run's takes seconds),
   and the new owner dies too. The second standby used to drop its replica on hearing of the new
   owner: the run was lost. It now keeps it until the new owner's state arrives, and takes over.
2. A standby slow to take the snapshot (held back here 3 s, as a loaded machine's was): the owner
   answered the client after ``accept_timeout`` (2 s) with the run replicated nowhere, so the
   owner's death then lost it (DESIGN 3.5: a submission is acknowledged only once replicated).
"""

from __future__ import annotations

import asyncio
from typing import Any

import cluster_jobs
import pytest

import handoffd
from handoffd.protocol import messages as m
from handoffd.testing import ThreadedCluster, wait_for

pytestmark = pytest.mark.timeout(180)


def _index(cluster: ThreadedCluster, name: str) -> int:
    return cluster.names().index(name)


def test_a_second_owner_death_before_its_snapshot_arrives_keeps_the_run(tmp_path: Any) -> None:
    gate = str(tmp_path / "gate")
    with ThreadedCluster([{"cpu": 2}] * 3) as cluster:
        run_id, first, second = cluster_jobs.gated_run(cluster, gate, 20)
        new, survivor = _index(cluster, first), _index(cluster, second)
        node = cluster.nodes[survivor]
        original = node.replication.handle

        def handle(msg: Any, frames: list[bytes], envelope: Any) -> None:
            # The new owner's state never reaches the survivor (its snapshot still on the way).
            if isinstance(msg, (m.ReplicateRun, m.ReplicateLog)) and msg.term >= 1:
                return
            original(msg, frames, envelope)

        node.replication.handle = handle
        cluster.crash(0)
        wait_for(
            lambda: cluster.run(lambda: cluster.nodes[new].scheduler.term_of(run_id)) == 1,
            60,
            what="the first standby owns the run at term 1",
        )
        wait_for(
            lambda: cluster.run(lambda: node.replication.standby.term(run_id)) == 1,
            30,
            what="the survivor heard of the new owner",
        )
        assert cluster.run(lambda: run_id in node.replication.standby.replicas), (
            "the survivor dropped its replica on hearing of the new owner"
        )
        cluster.crash(new)
        wait_for(
            lambda: cluster.run(lambda: node.scheduler.term_of(run_id)) is not None,
            60,
            what="the survivor takes the run over from its old replica",
        )
        open(gate, "w").close()
        with handoffd.connect(cluster.url(survivor), timeout=30) as client:
            follow = client.run(run_id)
            final = follow.wait(120)
            # Two terms above the new owner's: one above it is for a standby holding its state.
            assert final.state == "DONE" and final.term == 3
            assert follow.results() == {f"t{i}": i for i in range(20)}


def test_submit_returns_only_once_a_standby_holds_the_run(tmp_path: Any) -> None:
    gate = str(tmp_path / "gate")
    with ThreadedCluster([{"cpu": 2}] * 3) as cluster:
        for node in cluster.nodes[1:]:
            original = node.replication.handle

            def handle(msg: Any, frames: Any, envelope: Any, original: Any = original) -> None:
                if isinstance(msg, m.ReplicateRun) and msg.term == 0:
                    # A loaded standby: the snapshot taken 3 s late (after accept_timeout).
                    asyncio.get_running_loop().call_later(3.0, original, msg, frames, envelope)
                    return
                original(msg, frames, envelope)

            node.replication.handle = handle
        with handoffd.connect(cluster.url(0), timeout=30) as client:
            run_id = client.submit(cluster_jobs.gated_dag(gate, 20)).id

        def held() -> list[str]:
            return [n.name for n in cluster.nodes[1:] if run_id in n.replication.standby.replicas]

        assert cluster.run(held), "submit returned before any standby held the run"
        assert cluster.run(lambda: cluster.nodes[0].replication.log.standbys(run_id))
        cluster.crash(0)
        open(gate, "w").close()
        with handoffd.connect(cluster.url(1), timeout=30) as client:
            follow = client.run(run_id)
            final = follow.wait(120)
            assert final.state == "DONE" and final.term == 1
            assert follow.results() == {f"t{i}": i for i in range(20)}
