"""GPU placement and device assignment, and result freeing, on an in-process cluster."""

from __future__ import annotations

import os
import sys
import time

import cloudpickle
import pytest

import handoffd
from handoffd.testing import ThreadedCluster, wait_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(120)


def _device_after_rendezvous(directory: str, tag: str, expect: int) -> str:
    """Hold the device until ``expect`` tasks are running at once (bounded), then report it."""
    open(os.path.join(directory, tag), "w").close()
    deadline = time.monotonic() + 30
    while len(os.listdir(directory)) < expect and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")


@pytest.fixture(scope="module")
def cluster():
    with ThreadedCluster([{"cpu": 4, "memory": 4000, "gpu": 2}, {"cpu": 4, "memory": 4000}]) as c:
        yield c


def test_gpu_tasks_land_on_the_gpu_node_with_distinct_devices(cluster, tmp_path):
    gpu_node = cluster.names()[0]
    dag = handoffd.DAG()
    for i in range(2):
        dag.add_function(
            handoffd.Function(
                id=f"g{i}",
                code=_device_after_rendezvous,
                extra_args=[str(tmp_path), f"g{i}", 2],
                cost={"cpu": 1, "gpu": 1},
            )
        )
    dag.add_function(
        handoffd.Function(
            id="cpu_only",
            code=lambda: os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"),
            cost={"cpu": 1},
        )
    )
    with handoffd.connect(cluster.address) as client:
        run = client.submit(dag)
        run.wait(60)
        results = run.results()
        placement = run.placement()
        run.release()
    assert placement["g0"] == placement["g1"] == gpu_node
    assert {results["g0"], results["g1"]} == {"0", "1"}
    assert results["cpu_only"] == ""  # a task given no GPU sees none


def _device_and_pid() -> tuple[str, int]:
    return os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"), os.getpid()


def test_each_gpu_has_a_worker_started_before_any_gpu_task(cluster):
    node = cluster.nodes[0]  # 4 cpu, 2 gpu: 4 workers that see no GPU and one per GPU

    def ready_pids() -> list[int] | None:
        pool = node.pool
        if pool is None or pool.workers != 6 or not all(w.ready for w in pool._workers):
            return None
        return sorted(pool.worker_pids())

    wait_for(
        lambda: cluster.run(ready_pids) is not None,
        timeout=30,
        what="6 workers ready",
    )
    before = cluster.run(ready_pids)
    dag = handoffd.DAG()
    for i in range(4):
        dag.add_function(
            handoffd.Function(id=f"g{i}", code=_device_and_pid, cost={"cpu": 1, "gpu": 1})
        )
    with handoffd.connect(cluster.address) as client:
        results = client.execute(dag)
    assert {device for device, _ in results.values()} <= {"0", "1"}
    assert {pid for _, pid in results.values()} <= set(before)  # none waited for a new process
    assert cluster.run(lambda: sorted(node.pool.worker_pids())) == before


def test_results_are_freed_on_every_node_after_collection(cluster):
    names = cluster.names()
    dag = handoffd.DAG()
    dag.add_function(handoffd.Function(id="a", code=lambda: b"x" * 200_000, node=names[0]))
    dag.add_function(handoffd.Function(id="b", code=lambda v: len(v), args=["a"], node=names[1]))
    with handoffd.connect(cluster.address) as client:
        run = client.submit(dag)
        run.wait(60)
        assert run.results() == {"a": b"x" * 200_000, "b": 200_000}
        held = cluster.run(lambda: [bool(n.store.tasks_of(run.id)) for n in cluster.nodes])
        assert any(held)
        run.release()

    def freed() -> bool:
        return not any(cluster.run(lambda: [bool(n.store.tasks_of(run.id)) for n in cluster.nodes]))

    wait_for(freed, timeout=20, what="run values freed on every node")
