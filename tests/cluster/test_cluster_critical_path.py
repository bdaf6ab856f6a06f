"""The critical path on the owner's own node: a chain's next task takes the slot its predecessor
freed there, ahead of independent ready tasks (the owner learns which task ended before it sees
the freed slot)."""

from __future__ import annotations

import sys
import time

import cloudpickle
import pytest

import handoffd
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


def test_a_chain_successor_takes_its_predecessors_slot_on_the_owners_node(tmp_path):
    """One node of 1 cpu, owner and executor: a chain of 4 beside 4 independent tasks. Each
    chain task with a longer path to the end than an independent task's (all but the last)
    starts right after its predecessor. Before, the node's ledger reached its own scheduler
    before the report of the task that freed it: the slot went to an independent task and the
    chain waited one task at each step."""
    log = str(tmp_path / "starts")
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
        order = f.read().split()
    assert order[:3] == ["c0", "c1", "c2"], order
