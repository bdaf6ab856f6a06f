"""W4-like runs on a cluster: with ``outputs`` naming the consumers, a producer's value leaves the
producer's store as soon as its consumer finished, before the run is released; without ``outputs``
every value is a result and stays until release."""

from __future__ import annotations

import pytest

import handoffd
from handoffd.testing import ThreadedCluster, wait_for

pytestmark = pytest.mark.timeout(120)

PAIRS = 12
SIZE = 200_000


def pairs_dag(names: list[str]) -> handoffd.DAG:
    dag = handoffd.DAG()
    for i in range(PAIRS):
        src, dst = names[i % 2], names[(i + 1) % 2]
        dag.add_function(handoffd.Function(id=f"p{i}", code=bytes, extra_args=[SIZE], node=src))
        dag.add_function(handoffd.Function(id=f"c{i}", code=len, args=[f"p{i}"], node=dst))
    return dag


def held(cluster: ThreadedCluster, run_id: str) -> set[str]:
    return cluster.run(lambda: {t for x in cluster.nodes for t in x.store.tasks_of(run_id)})


def test_producer_values_are_freed_before_release_when_only_consumers_are_outputs() -> None:
    with ThreadedCluster([{"cpu": 2}, {"cpu": 2}]) as cluster:
        names = cluster.run(lambda: [x.name for x in cluster.nodes])
        with handoffd.connect(cluster.address) as client:
            outputs = [f"c{i}" for i in range(PAIRS)]
            run = client.submit(pairs_dag(names), outputs=outputs)
            run.wait(60)
            wait_for(
                lambda: not any(t.startswith("p") for t in held(cluster, run.id)),
                timeout=30,
                what="producer values freed",
            )
            assert run.results() == {f"c{i}": SIZE for i in range(PAIRS)}
            placement = run.placement()
            assert all(placement[f"p{i}"] != placement[f"c{i}"] for i in range(PAIRS))
            run.release()
            wait_for(lambda: not held(cluster, run.id), timeout=30, what="results freed")


def test_without_outputs_every_value_stays_until_release() -> None:
    with ThreadedCluster([{"cpu": 2}, {"cpu": 2}]) as cluster:
        names = cluster.run(lambda: [x.name for x in cluster.nodes])
        with handoffd.connect(cluster.address) as client:
            run = client.submit(pairs_dag(names))
            run.wait(60)
            assert {f"p{i}" for i in range(PAIRS)} <= held(cluster, run.id)
            results = run.results()
            assert results[f"c{PAIRS - 1}"] == SIZE and len(results[f"p{PAIRS - 1}"]) == SIZE
            run.release()
            wait_for(lambda: not held(cluster, run.id), timeout=30, what="results freed")
