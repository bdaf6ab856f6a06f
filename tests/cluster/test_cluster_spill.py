"""Values past the store's memory budget spill to disk and still move between nodes intact."""

from __future__ import annotations

import pytest

import handoffd
from handoffd.testing import ThreadedCluster

pytestmark = pytest.mark.timeout(120)


def test_spilled_values_are_served_to_consumers_and_client(tmp_path):
    with ThreadedCluster(
        [{"cpu": 2}, {"cpu": 2}], spill_bytes=300_000, spill_dir=str(tmp_path)
    ) as cluster:
        names = cluster.names()
        dag = handoffd.DAG()
        for i in range(4):
            dag.add_function(
                handoffd.Function(
                    id=f"blob{i}", code=lambda i=i: bytes([i]) * 250_000, node=names[0]
                )
            )
        dag.add_function(
            handoffd.Function(
                id="check",
                code=lambda *bs: [len(b) for b in bs] + [b[0] for b in bs],
                args=[f"blob{i}" for i in range(4)],
                node=names[1],
            )
        )
        with handoffd.connect(cluster.address) as client:
            run = client.submit(dag)
            run.wait(60)
            spills = cluster.run(lambda: cluster.nodes[0].store.stats.spills)
            results = run.results()
            run.release()
        assert spills >= 2
        assert results["check"] == [250_000] * 4 + [0, 1, 2, 3]
        assert all(results[f"blob{i}"] == bytes([i]) * 250_000 for i in range(4))
