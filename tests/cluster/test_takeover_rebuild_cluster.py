"""A standby taking a run over keeps answering while it rebuilds the run (issue 19 item 7), on an
in-process cluster of 3 (MemoryNetwork, one event loop for the three nodes, real workers).

A 200,000-task replica took seconds to rebuild, on the loop: no request answered meanwhile. Here
the rebuild is made slow on purpose (``Replica.run_data`` sleeps ``SLOW`` s first, as a big run's
would take); the rebuild runs in a thread (``daemon.replication_rebuild``), so the nodes answer
within a fraction of ``SLOW`` while it runs, and the run ends right under its new owner."""

from __future__ import annotations

import threading
import time

import cluster_jobs
import pytest

import handoffd
from handoffd.replication.standby import Replica
from handoffd.testing import ThreadedCluster, wait_for

pytestmark = pytest.mark.timeout(180)

SLOW = 3.0  # seconds the rebuild takes here


def test_the_new_owner_answers_while_it_rebuilds_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    building = threading.Event()
    original = Replica.run_data

    def slow(self: Replica) -> dict:
        building.set()
        time.sleep(SLOW)
        return original(self)

    monkeypatch.setattr(Replica, "run_data", slow)
    with ThreadedCluster([{"cpu": 2}] * 3) as cluster:
        urls = [cluster.url(i) for i in range(3)]
        dag = handoffd.DAG()
        for i in range(300):
            dag.add_function(handoffd.Function(id=f"t{i}", code=abs, extra_args=[-i]))
        with handoffd.connect(urls[0], timeout=30) as client:
            run = client.submit(dag)
            run_id = run.id

            wait_for(
                lambda: cluster_jobs.standbys_hold(cluster, run_id),
                30,
                what="both standbys hold the run",
            )
        cluster.crash(0)
        with handoffd.connect(urls[1], timeout=30) as one, handoffd.connect(urls[2]) as two:
            assert building.wait(60), "no standby started to rebuild the run"
            started = time.monotonic()
            gaps = []
            while time.monotonic() - started < SLOW * 0.8:
                for c in (one, two):
                    before = time.monotonic()
                    c.nodes()  # answered by the node's loop
                    gaps.append(time.monotonic() - before)
            assert max(gaps) < SLOW / 2, f"a node took {max(gaps):.2f} s to answer while rebuilding"
            follow = one.run(run_id)
            final = follow.wait(120)
            assert final.state == "DONE" and final.term == 1
            assert follow.results() == {f"t{i}": i for i in range(300)}
