"""Columns on the wire in whole nodes (issue 13, item 5): dispatches, answers and reports travel
as columns between real nodes; malformed columns are dropped with a clear log line and the node
keeps working; runs with retries and a crashed node still give exact results, and no node's
ledger ever hands out more than it has."""

from __future__ import annotations

import dataclasses
import logging
import sys
import threading
import time
from typing import Any

import cloudpickle
import pytest
from cluster_jobs import fail_until

import handoffd
from handoffd._core.api import EPS
from handoffd.protocol import messages as m
from handoffd.protocol.columns import dispatch_columns, pack, replied_columns, report_columns
from handoffd.testing import ThreadedCluster, layered_dag, layered_expected, wait_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(150)


def deliver(cluster: ThreadedCluster, index: int, sender: int, msg: Any) -> int:
    """``msg`` from node ``sender``, encoded and handed to node ``index`` as if it arrived on the
    wire; returns the node's drop counter afterwards."""
    node, peer = cluster.nodes[index], cluster.nodes[sender]

    def go() -> int:
        node._on_frames(b"peer", node.codec.encode(msg, sender=peer.name), False)
        return int(node.dropped)

    return int(cluster.run(go))


class LedgerWatch:
    """Samples every node's ledger from the nodes' loop while a run goes on: the lowest free
    amount of each kind ever seen (over-commit would make one negative)."""

    def __init__(self, cluster: ThreadedCluster) -> None:
        self.cluster = cluster
        self.lowest: dict[str, float] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self) -> list[dict[str, float]]:
        return [dict(n.executor.ledger.free) for n in self.cluster.nodes if n.executor]

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for free in self.cluster.run(self._sample, timeout=5):
                    for kind, amount in free.items():
                        self.lowest[kind] = min(self.lowest.get(kind, amount), amount)
                self.samples += 1
            except Exception:  # noqa: BLE001 - a node stopping mid-sample: sample again
                pass
            time.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def test_malformed_columns_are_dropped_and_runs_stay_exact(tmp_path: Any, caplog: Any) -> None:
    with ThreadedCluster([{"cpu": 2, "memory": 2000}] * 2) as cluster:
        owner_address = cluster.nodes[0].address
        item = m.DispatchItem("ghost", 1, {"cpu": 1.0}, "variadic", None, 0, ())
        good = dispatch_columns(m.DispatchTasks("run-x", owner_address, (item,), ()))
        bad_dispatch = dataclasses.replace(good, attempts=pack("q", [1, 2]))
        done = m.TaskReport("ghost", 1, "DONE", 1, -1, "", "", "", "")
        bad_report = dataclasses.replace(
            report_columns(m.TasksReported("run-x", (done,), {}, 1)), sizes=b"\x00"
        )
        bad_reply = dataclasses.replace(
            replied_columns(m.DispatchReplied("run-x", (m.TaskAttempt("ghost", 1),), (), {}, 1)),
            accepted_attempts=b"",
        )
        before = [int(cluster.run(lambda n=n: n.dropped)) for n in cluster.nodes]
        with caplog.at_level(logging.WARNING, logger="handoffd.node"):
            assert deliver(cluster, 1, 0, bad_dispatch) == before[1] + 1
            assert deliver(cluster, 0, 1, bad_report) == before[0] + 1
            assert deliver(cluster, 0, 1, bad_reply) == before[0] + 2
        said = caplog.text
        assert (
            "dropped DispatchColumns from" in said and "DispatchColumns.attempts: 16 bytes" in said
        )
        assert "ReportColumns.sizes: 1 bytes, expected 1 x 8" in said
        assert "RepliedColumns.accepted: 0 bytes, expected 1 x 8" in said
        assert not cluster.run(lambda: cluster.nodes[1].executor.state.tasks)  # nothing queued

        # Both nodes still work: a layered DAG across them, with a task that fails twice first.
        dag = layered_dag(layers=6, width=12, sleep=0.0)
        path = str(tmp_path / "calls")
        dag.add_function(handoffd.Function(id="flaky", code=fail_until, extra_args=[path, 2]))
        with handoffd.connect(cluster.address, timeout=10) as client:
            out = client.execute(dag, max_retries=3)
        assert out == {**layered_expected(6, 12), "flaky": 3}


def test_a_crashed_node_mid_run_loses_nothing_and_no_ledger_over_commits() -> None:
    capacities = [{"cpu": 2, "memory": 2000}, {"cpu": 2, "memory": 2000}, {"cpu": 1}]
    with ThreadedCluster(capacities) as cluster:
        watch = LedgerWatch(cluster)
        try:
            dag = layered_dag(layers=10, width=20, sleep=0.01)
            with handoffd.connect(cluster.address, timeout=10) as client:
                run = client.submit(dag)
                wait_for(lambda: run.status().counts.get("DONE", 0) >= 40, 60, 0.01)
                cluster.crash(2)
                run.wait(90)
                assert run.results() == layered_expected(10, 20)
        finally:
            watch.stop()
        assert watch.samples > 0 and watch.lowest.get("cpu", 0.0) >= -EPS, watch.lowest
