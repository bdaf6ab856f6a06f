"""A graceful leave (SIGTERM, as `handoffd stop`) mid-run (issue 19): the leaving node hands its
queued tasks back at once and tells its peers, which place nothing more there; its running tasks
finish; the run ends DONE with the right results and the owner never waits out an unanswered
dispatch ("dispatch counted lost")."""

from __future__ import annotations

import re
import sys
import time

import cloudpickle
import pytest

import handoffd
from handoffd.testing import DaemonCluster, wait_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

WIDTH = 24
SLEEP = 0.4


def work(i: int) -> int:
    time.sleep(SLEEP)
    return i * i


def total(*values: int) -> int:
    return sum(values)


def wide_dag() -> handoffd.DAG:
    dag = handoffd.DAG()
    for i in range(WIDTH):
        dag.add_function(handoffd.Function(id=f"w{i}", code=work, extra_args=[i]))
    dag.add_function(handoffd.Function(id="sum", code=total, args=[f"w{i}" for i in range(WIDTH)]))
    return dag


def test_a_leaving_node_hands_back_its_queue_and_gets_no_new_work() -> None:
    with DaemonCluster() as daemons:
        owner = daemons.start(cpu=1, memory=2000, wait=False)
        leaver = daemons.start(cpu=2, memory=2000, seeds=[owner.address], wait=False)
        stayer = daemons.start(cpu=1, memory=2000, seeds=[owner.address], wait=False)
        daemons.joined(owner, leaver, stayer)
        with handoffd.connect(owner.address, timeout=10) as client:
            run = client.submit(wide_dag())
            # The leaver holds work (2 running, more queued) before it is told to stop.
            wait_for(
                lambda: run.status().counts.get("DONE", 0) >= 2,
                60,
                what="the first tasks done",
            )
            assert leaver.terminate(60) == 0
            status = run.wait(timeout=120)
            assert status.state == "DONE", status
            assert run.results() == {
                **{f"w{i}": i * i for i in range(WIDTH)},
                "sum": sum(i * i for i in range(WIDTH)),
            }
        told = re.search(r"leaving: (\d+) queued tasks handed back, (\d+) running", leaver.log())
        assert told, leaver.log()[-3000:]
        assert f"member {leaver.name} is leaving" in owner.log()
        assert "dispatch counted lost" not in owner.log(), owner.log()[-3000:]
        assert owner.alive() and stayer.alive()
