"""A dispatch's one-int calls as a start and an int column (protocol 9) between whole nodes: a run
of ``f(i)`` functions spread over two nodes sends the other node its tasks as calls and every
result is exact; a malformed calls dispatch is dropped with a clear log line and the node keeps
working. (An older peer, of 8, between real processes: tests/daemons/test_dispatch_calls_daemons.)"""

from __future__ import annotations

import dataclasses
import logging
import sys
from typing import Any

import cloudpickle
import pytest

import handoffd
from handoffd.daemon import owner as owner_module
from handoffd.protocol.columns import pack
from handoffd.protocol.messages_columns import DispatchColumns
from handoffd.testing import ThreadedCluster

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(150)


def triple(i: int) -> int:
    return 3 * i + 1


def one_int_dag(count: int, pinned: int = 0, node: str | None = None) -> handoffd.DAG:
    """``count`` calls ``triple(i)``, the first ``pinned`` of them pinned to ``node``."""
    dag = handoffd.DAG()
    for i in range(count):
        pin = node if i < pinned else None
        dag.add_function(
            handoffd.Function(id=f"f{i}", code=triple, extra_args=[i - count // 2], node=pin)
        )
    return dag


def test_a_one_int_run_goes_as_calls_to_the_other_node_and_gives_exact_results(
    monkeypatch: Any, caplog: Any
) -> None:
    sent: list[DispatchColumns] = []
    build = owner_module.dispatch_message

    def spy(*args: Any) -> Any:
        msg, frames = build(*args)
        sent.append(msg)
        return msg, frames

    monkeypatch.setattr(owner_module, "dispatch_message", spy)
    with ThreadedCluster([{"cpu": 2, "memory": 2000}] * 2) as cluster:
        count, other = 400, cluster.nodes[1].name
        # (100 pinned to the other node: it gets blocks of them whatever the machine's load
        # does with the unpinned ones)
        with handoffd.connect(cluster.address, timeout=10) as client:
            run = client.submit(one_int_dag(count, 100, other), policy="spread")
            assert run.wait(timeout=60).state == "DONE"
            out = run.results()
            placement = run.placement()
        assert out == {f"f{i}": triple(i - count // 2) for i in range(count)}
        assert all(placement[f"f{i}"] == other for i in range(100))
        # Blocks of two or more one-int calls went as calls (how many and how big the machine's
        # load decides: under load the top-ups to a node can be one task each, sent as payloads).
        calls = [msg for msg in sent if msg.call_start]
        assert calls and all(not msg.payload_frames for msg in calls)
        assert all(len(msg.call_ints) == 4 * len(msg.task_ids) >= 8 for msg in calls)

        # A malformed calls dispatch (one int more than it has tasks) is dropped, said, not run.
        node, peer = cluster.nodes[1], cluster.nodes[0]
        first = calls[0]
        bad = dataclasses.replace(first, call_ints=first.call_ints + pack("i", [7]))
        with caplog.at_level(logging.WARNING, logger="handoffd.node"):
            before = int(cluster.run(lambda: node.dropped))

            def go() -> int:
                node._on_frames(b"peer", node.codec.encode(bad, sender=peer.name), False)
                return int(node.dropped)

            assert int(cluster.run(go)) == before + 1
        tasks = len(first.task_ids)
        said = f"DispatchColumns.call_ints: {4 * tasks + 4} bytes, expected {tasks} x 4"
        assert said in caplog.text

        # and both still work
        with handoffd.connect(cluster.address, timeout=10) as client:
            assert client.execute(one_int_dag(40), policy="spread") == {
                f"f{i}": triple(i - 20) for i in range(40)
            }
