"""A released run is forgotten everywhere after a while: a long-lived daemon must not grow per run."""

from __future__ import annotations

import pytest

import handoffd
import handoffd.scheduler.retention
from handoffd.testing import ThreadedCluster, wait_for

pytestmark = pytest.mark.timeout(120)


def test_released_runs_leave_no_state_on_owner_or_standbys(monkeypatch):
    monkeypatch.setattr(handoffd.scheduler.retention, "FORGET_AFTER_S", 0.0)
    with ThreadedCluster([{"cpu": 2}, {"cpu": 2}, {"cpu": 2}]) as cluster:
        with handoffd.connect(cluster.address) as client:
            run_ids = []
            for n in range(3):
                dag = handoffd.DAG().add_function(
                    handoffd.Function(id="f", code=abs, extra_args=[-n])
                )
                run = client.submit(dag)
                run.wait(60)
                assert run.results() == {"f": n}
                held = cluster.run(
                    lambda: sum(len(x.replication.standby.replicas) for x in cluster.nodes)
                )
                assert held >= 1  # replicated while it mattered
                run.release()
                run_ids.append(run.id)

        def gone() -> bool:
            def state() -> tuple[int, int]:
                owned = sum(len(x.owner.scheduler.runs()) for x in cluster.nodes)
                replicas = sum(len(x.replication.standby.replicas) for x in cluster.nodes)
                return owned, replicas

            return cluster.run(state) == (0, 0)

        wait_for(gone, timeout=30, what="released runs forgotten by owner and standbys")
        # (nor their wall-clock times for `handoffctl runs`, kept until a listing before)
        times = cluster.run(
            lambda: [
                (x.owner.run_times.submitted, x.owner.run_times.finished) for x in cluster.nodes
            ]
        )
        assert times == [({}, {})] * len(cluster.nodes)
