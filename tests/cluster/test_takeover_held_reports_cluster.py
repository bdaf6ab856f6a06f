"""Reports that reach a new owner while it builds the run it takes over count at once (issue 19:
a takeover without a long wait), on an in-process cluster of 3 (MemoryNetwork, real workers).

From its ``ReconcileRun`` on, the nodes report to the new owner, but the run is not its own until
the build off the loop is done (seconds for a big run). Reports that came meanwhile used to be
ignored (unknown run): the run was adopted with those tasks still out, and only the owner's
lost-dispatch probe found them done ``probe_interval`` later. They are kept and applied at the
adoption now (``ReplicationIO.held``). Here the build is made slow on purpose (a random 3-4.5 s),
tasks of random lengths (1-5 s, out when the owner dies) end during it, and right after the
adoption every task that ended on a surviving node well before it is DONE; each task ran once;
the results are right. With the messages not kept, 1-4 such tasks were still RUNNING. A task
ends no sooner than the build begins (``gate``), so some end during it however late the owner's
death is found."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import cluster_jobs
import pytest

import handoffd
from handoffd.daemon import replication_takeover
from handoffd.testing import ThreadedCluster, wait_for

pytestmark = pytest.mark.timeout(180)

SETTLE = 0.5  # s: a report sent this long before the adoption has surely arrived (one loop)
# The tasks out when the owner dies: 2 running on each of the 2 executing nodes and 2 queued
# there (the window); at the adoption t0-t7 were DONE or ASSIGNED, t8-t15 READY (never
# dispatched), so only the first ones take 1-5 s, the rest a tenth of it.
OUT = 8


@pytest.mark.parametrize("seed", range(3))
def test_reports_during_the_build_count_at_the_adoption(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, seed: int
) -> None:
    rng = random.Random(seed)
    slow = rng.uniform(3.0, 4.5)
    ready_run = replication_takeover.ready_run
    building = threading.Event()
    began: list[float] = []
    log = str(tmp_path / "executions")
    # A task ends no sooner than the build began (this file): on a loaded machine the owner's
    # death was found so late that every task out had ended before the build, none during it.
    gate = str(tmp_path / "building")

    def slow_build(*args: Any) -> Any:
        began.append(time.time())
        open(gate, "w").close()
        building.set()
        time.sleep(slow)
        # On a loaded machine the tasks out may all end after the fixed sleep: the build lasts
        # until one has ended during it too (bounded), so the test has a case. It must have
        # ended SETTLE before the adoption to count (below): a task that ended just now, ending
        # the wait, used to leave nothing tested when the adoption followed at once.
        wait_for(
            lambda: ended_since(log, began[0], time.time() - SETTLE),
            20,
            what="a task ended during the build",
        )
        return ready_run(*args)

    monkeypatch.setattr(replication_takeover, "ready_run", slow_build)
    adopted: list[tuple[float, dict[str, str]]] = []
    adopt = replication_takeover.TakeoverSteps._adopt

    def noted(self: Any, ins: Any, *args: Any) -> None:
        adopt(self, ins, *args)
        run = self.scheduler.run_state(ins.run_id)
        if run is not None:
            adopted.append((time.time(), {t: r.state for t, r in run.tasks.items()}))

    monkeypatch.setattr(replication_takeover.TakeoverSteps, "_adopt", noted)
    n = 16
    # The owner (node 0) runs nothing: every execution is on a node that survives it.
    with ThreadedCluster([{"cpu": 0}, {"cpu": 2}, {"cpu": 2}]) as cluster:
        urls = [cluster.url(i) for i in range(3)]
        dag = handoffd.DAG()
        for i in range(n):
            seconds = rng.uniform(1.0, 5.0)
            if i >= OUT:  # (placed by the new owner after the adoption: short, the run's tail)
                seconds /= 10
            dag.add_function(
                handoffd.Function(
                    id=f"t{i}",
                    code=cluster_jobs.timed_sleep,
                    extra_args=[log, f"t{i}", seconds, i, gate],
                )
            )
        with handoffd.connect(urls[0], timeout=30) as client:
            run = client.submit(dag)
            run_id = run.id

            wait_for(
                lambda: cluster_jobs.standbys_hold(cluster, run_id),
                30,
                what="both standbys hold the run",
            )
            time.sleep(rng.uniform(0.2, 0.8))
        cluster.crash(0)
        with handoffd.connect(urls[1], timeout=30) as one:
            assert building.wait(60), "no standby started to build the run"
            wait_for(lambda: adopted, 60, what="the new owner adopted the run")
            follow = one.run(run_id)
            final = follow.wait(120)
            assert final.state == "DONE" and final.term == 1
            assert follow.results() == {f"t{i}": i for i in range(n)}
    at, states = adopted[0]
    with open(log) as f:
        ended: dict[str, list[float]] = {}
        for line in f:
            task_id, _, end = line.split()
            ended.setdefault(task_id, []).append(float(end))
    assert all(len(ends) == 1 for ends in ended.values()), f"ran twice: {ended}"
    before = {t for t, ends in ended.items() if ends[0] < at - SETTLE}
    during = {t for t in before if ends_after(ended[t][0], began[0])}
    assert during, "no task ended while the run was built (nothing tested): lengthen the build"
    late = sorted(t for t in before if states[t] != "DONE")
    assert not late, f"ended before the adoption but not DONE at it: {late} ({states})"


def ends_after(end: float, since: float) -> bool:
    return end >= since


def ended_since(path: str, since: float, until: float) -> bool:
    """Whether the executions log notes a task that ended at or after ``since`` and before
    ``until``."""
    try:
        with open(path) as f:
            lines = [line.split() for line in f]
    except OSError:
        return False
    # (a line being written may be read half: only whole ones count)
    return any(
        len(p) == 3 and ends_after(float(p[2]), since) and float(p[2]) < until for p in lines
    )
