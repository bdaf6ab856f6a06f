"""A node killed -9 and restarted at the same address before the cluster declared it DEAD (issue
19): its new process says so (``NodeRestarted``), and the owner settles what it had out on the old
one at once. The daemons run with ack and lost-report probe timeouts of 600 s and a suspicion time
of 60 s, so the run can only finish within the test's time through the new process's word; only the
attempts lost with the old process run twice. A run the old process owned goes on under its
standby."""

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
pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]

TIMINGS = "[timings]\nack_timeout = 600\nlost_probe_interval = 600\nsuspicion_timeout = 60\n"


def hold(gate: str) -> None:
    """Works until the test opens the gate (after the restart): a fixed sleep let the old process
    finish its tasks before the kill when the machine was slow (CI at fdd4ab8: each ran once)."""
    deadline = time.monotonic() + 120
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.05)


def logged_work(i: int, marks: str, gate: str) -> int:
    """Records each execution (a file per attempt), then works until the gate opens."""
    with open(os.path.join(marks, f"{i}-{uuid.uuid4().hex}"), "w") as f:
        f.write(str(os.getpid()))
    hold(gate)
    return i * 10


def step(x: int, gate: str) -> int:
    if gate:
        hold(gate)
    return x + 1


def chain_of(gate: str) -> handoffd.DAG:
    dag = handoffd.DAG()
    dag.add_function(handoffd.Function(id="c0", code=step, extra_args=[0, ""]))
    dag.add_function(handoffd.Function(id="c1", code=step, args=["c0"], extra_args=[gate]))
    return dag


def executions(marks: str) -> dict[int, int]:
    counts: dict[int, int] = {}
    for name in os.listdir(marks):
        task = int(name.split("-")[0])
        counts[task] = counts.get(task, 0) + 1
    return counts


def test_a_restart_before_dead_releases_the_old_processes_work_at_once() -> None:
    with DaemonCluster() as daemons:
        config = os.path.join(daemons.workdir, "timings.toml")
        with open(config, "w") as f:
            f.write(TIMINGS)
        daemons.env["HANDOFFD_CONFIG"] = config
        marks = os.path.join(daemons.workdir, "marks")
        os.mkdir(marks)
        gate = os.path.join(daemons.workdir, "gate")
        a = daemons.start(cpu=1, name=f"a-{daemons.cluster}")
        b = daemons.start(cpu=3, seeds=[a.address], name=f"b-{daemons.cluster}")
        with handoffd.connect(a.address, timeout=10) as client:
            wait_for(lambda: len(client.nodes()) == 2, 30, what="b joined")
            dag = handoffd.DAG()
            for i in range(3):
                dag.add_function(
                    handoffd.Function(id=f"t{i}", code=logged_work, extra_args=[i, marks, gate])
                )
            run = client.submit(dag)

            def on_b() -> list[str]:
                return [t for t, n in run.status().placement.items() if n == b.name]

            wait_for(lambda: len(on_b()) == 2 and len(os.listdir(marks)) == 3, 30, what="running")
            lost = {int(t[1:]) for t in on_b()}
            # A run b owns (a is its standby), on b's third cpu: it goes on under a once b's new process speaks.
            with handoffd.connect(b.address, timeout=10) as client_b:
                owned = client_b.submit(chain_of(gate))
                wait_for(lambda: owned.status().counts.get("DONE", 0) >= 1, 30, what="b's run")
            b.kill()
            again = daemons.start(cpu=3, seeds=[a.address], name=b.name, port=b.port)
            assert again.address == b.address
            with open(gate, "w"):
                pass
            started = time.monotonic()
            status = run.wait(timeout=90)
            print(f"run DONE {time.monotonic() - started:.2f} s after the restart")
            assert status.state == "DONE", status
            assert run.results() == {"t0": 0, "t1": 10, "t2": 20}
            counts = executions(marks)
            # Only what the old process ran ran again, once; the task on a ran once.
            assert counts == {i: 2 if i in lost else 1 for i in range(3)}, (counts, lost)
            assert client.nodes()[b.name].status == "ALIVE"  # never declared DEAD
            followed = client.run(owned.id)
            assert followed.wait(timeout=90).state == "DONE"
            assert followed.results() == {"c0": 1, "c1": 2}
        assert "telling members that its work is gone" in again.log(), again.log()[-3000:]
        assert "restarted (incarnation" in a.log(), a.log()[-3000:]
        assert "run(s) replicated here lost their owner" in a.log(), a.log()[-3000:]
        assert a.alive() and again.alive()
