"""A task report lost while its node stays ALIVE (the transport may drop a peer's reconnect queue
around a partition heal): the owner's probes find it, on a real in-process cluster (ZeroMQ on
loopback, real worker processes), with the probe interval shrunk to 0.2 s."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import cloudpickle
import pytest
from cluster_jobs import fail_until

import handoffd
from handoffd.protocol.columns import ReportTable
from handoffd.protocol.messages_columns import ReportColumns
from handoffd.testing import ThreadedCluster

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThreadedCluster]:
    with ThreadedCluster([{"cpu": 2, "memory": 2000}, {"cpu": 2, "memory": 2000}]) as c:

        def shrink() -> None:
            for node in c.nodes:
                node.owner.scheduler.probe_interval = 0.2

        c.run(shrink)
        yield c


@pytest.fixture
def drop_report(cluster: ThreadedCluster) -> Iterator[Callable[..., list[Any]]]:
    """Make the executors drop the first ReportColumns that carries a report in ``state`` for
    ``task_id``; returns the list the dropped message lands in."""

    def install(task_id: str, state: str) -> list[Any]:
        dropped: list[Any] = []

        def lossy_send(send: Callable[..., Any]) -> Callable[..., Any]:
            def lossy(address: str, msg: Any, frames: Any = None, term: int = 0) -> Any:
                if (
                    not dropped
                    and isinstance(msg, ReportColumns)  # (the executor sends columns)
                    and any(
                        r.task_id == task_id and r.state == state
                        for r in ReportTable(msg).reports()
                    )
                ):
                    dropped.append(msg)
                    return True
                return send(address, msg, frames, term=term)

            return lossy

        def patch() -> None:
            for node in cluster.nodes:
                node.executor._send = lossy_send(node.send)

        cluster.run(patch)
        return dropped

    yield install

    def restore() -> None:
        for node in cluster.nodes:
            node.executor._send = node.send

    cluster.run(restore)


def test_lost_success_report_is_adopted_from_the_nodes_store(cluster, drop_report):
    names = cluster.names()
    dropped = drop_report("a", "DONE")
    dag = handoffd.DAG()
    dag.add_function(handoffd.Function(id="a", code=lambda: 21, node=names[1]))
    dag.add_function(handoffd.Function(id="b", code=lambda x: x * 2, args=["a"]))
    with handoffd.connect(cluster.address, timeout=10) as client:
        run = client.submit(dag)
        run.wait(20)
        assert run.results() == {"a": 21, "b": 42}  # a's value comes from names[1]'s store
    assert len(dropped) == 1
    owner = next(n for n in cluster.nodes if n.name == run.owner)
    history = cluster.run(owner.owner.scheduler.history, run.id, "a")
    assert [h[1:3] for h in history] == [
        ("PENDING", "READY"),
        ("READY", "ASSIGNED"),
        ("ASSIGNED", "DONE"),
    ]
    assert "attempt 1" in history[-1][3]  # adopted, not run again


def test_lost_failure_report_is_counted_lost_and_replaced(cluster, drop_report, tmp_path):
    names = cluster.names()
    path = str(tmp_path / "calls")
    dropped = drop_report("f", "FAILED")
    dag = handoffd.DAG().add_function(
        handoffd.Function(id="f", code=fail_until, extra_args=[path, 1], node=names[1])
    )
    with handoffd.connect(cluster.address, timeout=10) as client:
        # No retries: had the failure been heard, the run would have failed.
        run = client.submit(dag, max_retries=0)
        run.wait(20)
        assert run.results() == {"f": 2}
    assert len(dropped) == 1
    with open(path) as f:
        assert len(f.read().splitlines()) == 2
