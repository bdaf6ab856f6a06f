"""The critical path on the owner's own node: a chain's next task takes the slot its predecessor
freed there, ahead of independent ready tasks (the owner learns which task ended before it sees
the freed slot)."""

from __future__ import annotations

import asyncio
import sys
import time

import cloudpickle
import pytest

import handoffd
from handoffd.daemon.executor import Executor
from handoffd.testing import ThreadedCluster

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(120)


def step(*args):
    """Dependency values first (ignored), then (path, name, seconds): log the start, sleep."""
    path, name, seconds = args[-3:]
    with open(path, "a") as f:
        f.write(name + "\n")
    time.sleep(seconds)
    return name


def run_chain_beside_independents(log: str) -> list[str]:
    with ThreadedCluster([{"cpu": 1, "memory": 1000}]) as cluster:
        with handoffd.connect(cluster.url(0), timeout=10) as client:
            dag = handoffd.DAG()
            for i in range(4):
                deps = [f"c{i - 1}"] if i else []
                dag.add_function(
                    handoffd.Function(
                        id=f"c{i}", code=step, args=deps, extra_args=[log, f"c{i}", 0.1]
                    )
                )
            for i in range(4):
                dag.add_function(
                    handoffd.Function(id=f"f{i}", code=step, extra_args=[log, f"f{i}", 0.1])
                )
            out = client.execute(dag, timeout=60)
            assert sorted(out) == ["c0", "c1", "c2", "c3", "f0", "f1", "f2", "f3"]
    with open(log) as f:
        return f.read().split()


def test_a_resource_publish_just_before_a_tasks_end_does_not_give_away_its_slot(
    tmp_path, monkeypatch
):
    """The order the machine's load made (5 of 8 runs at load ~13): the memory watcher published
    the node's resources, then the task ended before our own scheduler was told. Told the ledger as
    read then (the slot already freed), the scheduler saw the slot before the task's report and gave
    it to an independent task. Here a publish comes right before every task's end."""
    ended = Executor.on_read  # (the pool's outcomes come through it: ``on_outcome`` is not used)
    reads: list[int] = []

    def publish_then_end(self, outcomes):
        reads.append(len(outcomes))
        self._on_resources_changed()  # as a memory reading does
        asyncio.get_running_loop().call_soon(ended, self, outcomes)

    monkeypatch.setattr(Executor, "on_read", publish_then_end)
    order = run_chain_beside_independents(str(tmp_path / "starts"))
    assert order[:3] == ["c0", "c1", "c2"], order
    assert sum(reads) == 8  # (every task's end came after a publish)


def test_a_chain_successor_takes_its_predecessors_slot_on_the_owners_node(tmp_path):
    """One node of 1 cpu, owner and executor: a chain of 4 beside 4 independent tasks. Each
    chain task with a longer path to the end than an independent task's (all but the last)
    starts right after its predecessor. Before, the node's ledger reached its own scheduler
    before the report of the task that freed it: the slot went to an independent task and the
    chain waited one task at each step."""
    order = run_chain_beside_independents(str(tmp_path / "starts"))
    assert order[:3] == ["c0", "c1", "c2"], order
