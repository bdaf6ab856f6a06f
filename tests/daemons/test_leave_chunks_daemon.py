"""A graceful leave hands over values bigger than a frame (issue 19, helper snap19): two daemons
with ``max_frame_bytes`` 1 MiB, the leaver holds three 3 MiB values a live run still needs. They
went as one frame each (``ValuesHandedOver``), dropped by the owner (past its limit): the leave
recomputed them by lineage. Now they go in pieces and nothing runs twice."""

from __future__ import annotations

import os
import sys

import cloudpickle
import pytest

import handoffd
from handoffd.testing import DaemonCluster, wait_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

SIZE = 3 << 20
LIMITS = ["--limit", f"max_frame_bytes={1 << 20}"]


def produce(i: int, marks: str) -> bytes:
    import os
    import uuid

    with open(os.path.join(marks, f"p{i}-{uuid.uuid4().hex}"), "w"):
        pass
    return bytes([i]) * (SIZE - 1) + bytes([255 - i])


def gate(marks: str) -> int:
    import os
    import time

    deadline = time.monotonic() + 120
    while not os.path.exists(os.path.join(marks, "open")) and time.monotonic() < deadline:
        time.sleep(0.05)
    return 0


def consume(value: bytes, _gate: int) -> int:
    return len(value) + value[0] + value[-1]


def test_a_leave_hands_over_values_past_the_frame_limit_in_pieces() -> None:
    n = 3
    with DaemonCluster() as daemons:
        marks = os.path.join(daemons.workdir, "marks")
        os.mkdir(marks)
        owner = daemons.start(cpu=2, memory=2000, extra=LIMITS, name=f"owner-{daemons.cluster}")
        leaver = daemons.start(
            cpu=2,
            memory=2000,
            seeds=[owner.address],
            extra=LIMITS,
            name=f"leaver-{daemons.cluster}",
        )
        with handoffd.connect(owner.address, timeout=10) as client:
            wait_for(lambda: len(client.nodes()) == 2, 30, what="joined")
            dag = handoffd.DAG()
            dag.add_function(
                handoffd.Function(id="gate", code=gate, extra_args=[marks], node=owner.name)
            )
            for i in range(n):
                dag.add_function(
                    handoffd.Function(
                        id=f"p{i}", code=produce, extra_args=[i, marks], node=leaver.name
                    )
                )
                dag.add_function(
                    handoffd.Function(id=f"c{i}", code=consume, args=[f"p{i}", "gate"])
                )
            run = client.submit(dag)
            wait_for(lambda: run.status().counts.get("DONE", 0) >= n, 60, what="producers DONE")
            assert leaver.terminate(timeout=60) == 0  # SIGTERM: a graceful leave
            wait_for(lambda: client.nodes()[leaver.name].status == "LEFT", 30, what="LEFT")
            open(os.path.join(marks, "open"), "w").close()
            assert run.wait(timeout=90).state == "DONE"
            got = {k: v for k, v in run.results().items() if k.startswith("c")}
            assert got == {f"c{i}": SIZE + i + 255 - i for i in range(n)}
            runs: dict[str, int] = {}
            for name in os.listdir(marks):
                if name != "open":
                    runs[name.split("-")[0]] = runs.get(name.split("-")[0], 0) + 1
            assert runs == {f"p{i}": 1 for i in range(n)}  # none recomputed
        log = owner.log()
        assert f"kept {n} value(s)" in log or log.count("kept 1 value(s)") >= n, log[-3000:]
        assert "not kept" not in log, log[-3000:]
