"""A takeover of a big-ish run (20,000 tasks) with real daemons: kill -9 the owner, a standby
takes over (the replica rebuilt and merged in a thread, ``daemon.replication_rebuild``, and the
new owner's snapshot to its own standbys packed there too) and the run ends right: every task
DONE once, every result right. (That the new owner answers while it rebuilds is
tests/cluster/test_takeover_rebuild_cluster.py's: at 20,000 tasks the rebuild is too short to
tell apart from the loop's other stalls on a loaded machine.)
"""

from __future__ import annotations

import re

import pytest

import handoffd
from handoffd.testing import DaemonCluster, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TASKS = 20_000
_TOOK_OVER = re.compile(r"took over at term 1 in ([\d.]+) s")


def test_a_big_run_taken_over_ends_right() -> None:
    cluster = DaemonCluster()
    try:
        a = cluster.start(cpu=2, memory=4000)
        rest = [cluster.start(cpu=2, memory=4000, seeds=[a.address]) for _ in range(2)]
        dag = handoffd.DAG()
        for i in range(TASKS):
            dag.add_function(handoffd.Function(id=f"t{i}", code=abs, extra_args=[-i]))
        with handoffd.connect(a.address, timeout=120) as client:
            wait_for(lambda: len(client.nodes()) == 3, timeout=30, what="3 daemons")
            run = client.submit(dag)
            # (2 standbys: a member SUSPECT for a moment under load is left out at the submit
            # and chosen again when it is ALIVE: ``members_changed`` re-chooses them)
            wait_for(lambda: len(run.status().standbys) == 2, 30, 0.05, what="2 standbys")
            wait_for(lambda: run.status().counts.get("DONE", 0) >= 500, 120, 0.05)
            since = [len(d.log()) for d in rest]
            a.kill()
        with handoffd.connect(rest[0].address, timeout=120) as other:
            follow = other.run(run.id)
            wait_for(
                lambda: any(
                    _TOOK_OVER.search(d.log()[s:]) for d, s in zip(rest, since, strict=True)
                ),
                timeout=240,
                what="a standby took over",
            )
            final = follow.wait(timeout=240)
            assert final.state == "DONE" and final.term == 1
            assert final.counts.get("DONE", 0) == TASKS
            results = follow.results()
        assert len(results) == TASKS
        bad = [k for k, v in results.items() if v != int(k[1:])]
        assert not bad, f"{len(bad)} wrong results, e.g. {bad[:3]}"
        owner = next(d for d in rest if d.name == final.owner)
        took = _TOOK_OVER.search(owner.log())
        assert took is not None, "the new owner logged no takeover"
    finally:
        cluster.close()
        print(cluster.logs())
