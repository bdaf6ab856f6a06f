"""One-task ``execute`` calls through a real node, where the owner answers a run from its task's
report (``daemon.lane``): values, failures, retries, output, priorities, timeouts and a crashed
worker behave as the general path's, and every run answered so exists afterwards for anyone who
looks (the run list, its status, its task history, its output)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

import handoffd
from handoffd.testing import ThreadedCluster

pytestmark = pytest.mark.timeout(150)


def double(x: int) -> int:
    return 2 * x


def fails(x: int) -> int:
    raise ValueError(f"bad {x}")


def fails_once(marker: str) -> str:
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write("tried")
        raise RuntimeError("first attempt")
    return "second"


def prints(x: int) -> int:
    print(f"hello {x}")
    return x


def sleeps(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


def crashes() -> None:
    os._exit(3)


def one(code: Any, *args: Any, **options: Any) -> handoffd.DAG:
    return handoffd.DAG().add_function(
        handoffd.Function(id="one", code=code, extra_args=list(args), **options)
    )


def new_run(client: Any, before: set[str]) -> str:
    (run_id,) = {r.run_id for r in client.runs()} - before
    return run_id


def test_one_task_calls_answered_from_their_reports(tmp_path: Path) -> None:
    with ThreadedCluster([{"cpu": 2}]) as cluster:
        owner = cluster.nodes[0].owner
        with handoffd.connect(cluster.address, timeout=20) as client:
            assert client.execute(one(double, 0)) == {"one": 0}  # (starts the workers)
            lane_before = cluster.run(lambda: owner.waiting.early_answers)
            ids_before = {r.run_id for r in client.runs()}
            for i in range(1, 21):
                assert client.execute(one(double, i)) == {"one": 2 * i}
            answered = cluster.run(lambda: owner.waiting.early_answers) - lane_before
            assert answered >= 10  # taken (a call that outlasts the 5 ms hold is not)
            # Every run answered exists for anyone who looks, DONE, its task on our node.
            done = [r for r in client.runs() if r.run_id not in ids_before]
            assert len(done) == 20
            assert all(r.state == "DONE" and r.counts.get("DONE") == 1 for r in done)
            history = client.task_history(done[-1].run_id)
            assert history["state"] == "DONE"
            (task,) = history["tasks"]
            assert task["id"] == "one" and task["state"] == "DONE"
            status = client.run(done[0].run_id).status()
            assert status.state == "DONE" and status.placement == {"one": cluster.nodes[0].name}
            assert cluster.run(lambda: not owner.waiting._early)  # each ended, and was released

            # A failure, a retried failure, output, a priority: as the general path has them.
            with pytest.raises(handoffd.TaskFailed) as info:
                client.execute(one(fails, 7), max_retries=0)
            assert "bad 7" in str(info.value)
            marker = str(tmp_path / "marker")
            assert client.execute(one(fails_once, marker), max_retries=1) == {"one": "second"}
            before = {r.run_id for r in client.runs()}
            assert client.execute(one(prints, 5)) == {"one": 5}
            logs = client.run(new_run(client, before)).logs()
            assert "hello 5" in logs
            assert client.execute(one(double, 4, priority=9), priority=3) == {"one": 8}

            # A run longer than the hold is replicated as before and answered the general way.
            assert client.execute(one(sleeps, 0.2)) == {"one": "woke"}
            with pytest.raises(handoffd.Timeout):
                client.execute(one(sleeps, 30.0), timeout=0.5)
            with pytest.raises(handoffd.TaskFailed):
                client.execute(one(crashes), max_retries=0)
            assert client.execute(one(double, 21)) == {"one": 42}  # the node still serves
