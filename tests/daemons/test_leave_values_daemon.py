"""A graceful leave moves the values its store still holds (issue 19): values of finished tasks
that a live run still needs go to the run's owner (or, for a run the leaver owned, to its standby)
before the leaver says LEFT, so nothing is recomputed by lineage. Every execution is recorded;
each producer runs exactly once."""

from __future__ import annotations

import os
import sys
import time
import uuid

import cloudpickle
import pytest

import handoffd
from handoffd.testing import DaemonCluster, wait_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SIZE = 512 * 1024  # past the inline limit: the value stays in the producer's store


def produce(i: int, marks: str) -> bytes:
    with open(os.path.join(marks, f"p{i}-{uuid.uuid4().hex}"), "w"):
        pass
    return bytes([i]) * SIZE


def gate(marks: str) -> int:
    while not os.path.exists(os.path.join(marks, "open")):
        time.sleep(0.05)
    return 0


def consume(value: bytes, _gate: int) -> int:
    return len(value) + value[0]


def executions(marks: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in os.listdir(marks):
        if name != "open":
            task = name.split("-")[0]
            counts[task] = counts.get(task, 0) + 1
    return counts


def two_stage(marks: str, leaver: str, owner: str, n: int) -> handoffd.DAG:
    dag = handoffd.DAG()
    dag.add_function(handoffd.Function(id="gate", code=gate, extra_args=[marks], node=owner))
    for i in range(n):
        dag.add_function(
            handoffd.Function(id=f"p{i}", code=produce, extra_args=[i, marks], node=leaver)
        )
        dag.add_function(handoffd.Function(id=f"c{i}", code=consume, args=[f"p{i}", "gate"]))
    return dag


def test_a_leave_moves_held_values_and_nothing_runs_twice() -> None:
    n = 4
    with DaemonCluster() as daemons:
        marks = os.path.join(daemons.workdir, "marks")
        os.mkdir(marks)
        owner = daemons.start(cpu=2, memory=2000, name=f"owner-{daemons.cluster}", wait=False)
        leaver = daemons.start(
            cpu=2, memory=2000, seeds=[owner.address], name=f"leaver-{daemons.cluster}", wait=False
        )
        daemons.joined(owner, leaver)
        with handoffd.connect(owner.address, timeout=10) as client:
            run = client.submit(two_stage(marks, leaver.name, owner.name, n))
            wait_for(lambda: run.status().counts.get("DONE", 0) >= n, 30, what="producers DONE")
            assert leaver.terminate(timeout=60) == 0  # SIGTERM: a graceful leave
            wait_for(lambda: client.nodes()[leaver.name].status == "LEFT", 30, what="LEFT")
            open(os.path.join(marks, "open"), "w").close()
            assert run.wait(timeout=60).state == "DONE"
            got = {k: v for k, v in run.results().items() if k.startswith("c")}
            assert got == {f"c{i}": SIZE + i for i in range(n)}
            assert executions(marks) == {f"p{i}": 1 for i in range(n)}  # none recomputed
        assert f"handing over {n} value(s)" in leaver.log(), leaver.log()[-3000:]
        assert "handed over by a leaving node" in owner.log(), owner.log()[-3000:]


def test_a_leaving_owner_hands_its_runs_values_to_the_standby_that_takes_over() -> None:
    n = 3
    with DaemonCluster() as daemons:
        marks = os.path.join(daemons.workdir, "marks")
        os.mkdir(marks)
        stayer = daemons.start(cpu=2, memory=2000, name=f"stayer-{daemons.cluster}", wait=False)
        leaver = daemons.start(
            cpu=2, memory=2000, seeds=[stayer.address], name=f"leaver-{daemons.cluster}", wait=False
        )
        daemons.joined(stayer, leaver)
        with handoffd.connect(leaver.address, timeout=10) as client:
            # The leaver owns the run and produces its values; the stayer is its standby.
            run = client.submit(two_stage(marks, leaver.name, stayer.name, n))
            run_id = run.id
            wait_for(lambda: run.status().counts.get("DONE", 0) >= n, 30, what="producers DONE")
        assert leaver.terminate(timeout=60) == 0
        assert f"handing over {n} value(s)" in leaver.log(), leaver.log()[-3000:]
        with handoffd.connect(stayer.address, timeout=10) as client:
            wait_for(lambda: client.nodes()[leaver.name].status == "LEFT", 30, what="LEFT")
            open(os.path.join(marks, "open"), "w").close()
            followed = client.run(run_id)
            assert followed.wait(timeout=60).state == "DONE"
            got = {k: v for k, v in followed.results().items() if k.startswith("c")}
            assert got == {f"c{i}": SIZE + i for i in range(n)}
        assert executions(marks) == {f"p{i}": 1 for i in range(n)}  # none recomputed
