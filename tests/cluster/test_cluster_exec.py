"""Distributed execution on an in-process cluster of 3 real nodes (the in-memory network, real
worker processes): the DAG semantics of run_local, now across nodes, plus placement policies."""

from __future__ import annotations

import os
import sys

import cloudpickle
import numpy as np
import pytest
from cluster_jobs import fail_until

import handoffd
from handoffd.testing import ThreadedCluster

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(120)


def add(*xs):
    return sum(xs)


def ident(x):
    return x


def count_call(path, value=None):
    with open(path, "a") as f:
        f.write("x\n")
    return value


def calls(path) -> int:
    try:
        with open(path) as f:
            return len(f.read().splitlines())
    except FileNotFoundError:
        return 0


@pytest.fixture(scope="module")
def cluster():
    with ThreadedCluster(
        [{"cpu": 2, "memory": 2000}, {"cpu": 2, "memory": 2000}, {"cpu": 4, "memory": 8000}]
    ) as c:
        yield c


@pytest.fixture
def client(cluster):
    with handoffd.connect(cluster.address, timeout=10) as c:
        yield c


def test_nodes_lists_all_three_with_capacity(cluster, client):
    nodes = client.nodes()
    assert set(nodes) == set(cluster.names())
    assert {n.status for n in nodes.values()} == {"ALIVE"}
    assert sorted(n.capacity["cpu"] for n in nodes.values()) == [2, 2, 4]


def test_chain_and_diamond(client):
    dag = handoffd.DAG()
    dag.add_function(handoffd.Function(id="a", code=lambda: 1))
    dag.add_function(handoffd.Function(id="b", code=lambda x: x * 10, args=["a"]))
    dag.add_function(handoffd.Function(id="c", code=lambda x: x + 5, args=["a"]))
    dag.add_function(handoffd.Function(id="d", code=lambda x, y: (x, y), args=["c", "b"]))
    results = client.execute(dag)
    assert results == {"a": 1, "b": 10, "c": 6, "d": (6, 10)}


def test_extra_args_kwargs_and_as_list(client):
    dag = handoffd.DAG()
    dag.add_function(handoffd.Function(id="x", code=ident, extra_args=[3]))
    dag.add_function(handoffd.Function(id="y", code=ident, extra_args=[4]))
    dag.add_function(
        handoffd.Function(
            id="s",
            code=lambda xs, k, mode="": (sum(xs), k, mode),
            args=["x", "y"],
            extra_args=[7],
            kwargs={"mode": "fast"},
            argument_inclusion="as_list",
        )
    )
    assert client.execute(dag)["s"] == (7, 7, "fast")


def test_inline_runs_once_per_consumer_and_is_not_a_result(client, tmp_path):
    path = str(tmp_path / "inline")
    dag = handoffd.DAG()
    dag.add_function(handoffd.Function(id="base", code=lambda: 2))
    dag.add_function(
        handoffd.Function(
            id="inl",
            code=lambda b, p: count_call(p, b * 100),
            args=["base"],
            extra_args=[path],
            type="inline",
        )
    )
    for i in range(3):
        dag.add_function(handoffd.Function(id=f"use{i}", code=lambda v, i=i: v + i, args=["inl"]))
    results = client.execute(dag)
    assert "inl" not in results
    assert [results[f"use{i}"] for i in range(3)] == [200, 201, 202]
    assert calls(path) == 3


def test_exact_retry_counts(client, tmp_path):
    once = str(tmp_path / "once")
    dag = handoffd.DAG().add_function(
        handoffd.Function(id="f", code=fail_until, extra_args=[once, 1])
    )
    assert client.execute(dag, max_retries=1)["f"] == 2
    assert calls(once) == 2

    always = str(tmp_path / "always")
    dag = handoffd.DAG().add_function(
        handoffd.Function(id="f", code=fail_until, extra_args=[always, 99])
    )
    with pytest.raises(handoffd.TaskFailed) as info:
        client.execute(dag, max_retries=2)
    assert calls(always) == 3
    assert info.value.function_id == "f" and info.value.attempts == 3
    assert info.value.exc_type == "RuntimeError" and "planned failure 3" in info.value.exc_message
    assert "fail_until" in info.value.traceback

    override = str(tmp_path / "override")
    dag = handoffd.DAG().add_function(
        handoffd.Function(id="f", code=fail_until, extra_args=[override, 99], max_retries=0)
    )
    with pytest.raises(handoffd.TaskFailed):
        client.execute(dag, max_retries=5)
    assert calls(override) == 1


def test_failure_stops_downstream(client, tmp_path):
    downstream = str(tmp_path / "down")
    dag = handoffd.DAG()
    dag.add_function(handoffd.Function(id="bad", code=lambda: 1 / 0, max_retries=0))
    dag.add_function(
        handoffd.Function(
            id="after", code=lambda x, p: count_call(p, x), args=["bad"], extra_args=[downstream]
        )
    )
    with pytest.raises(handoffd.TaskFailed) as info:
        client.execute(dag)
    assert info.value.exc_type == "ZeroDivisionError"
    assert calls(downstream) == 0


def test_binpack_fills_one_node_spread_balances(cluster, client):
    names = cluster.names()
    big = names[2]  # cpu 4

    def dag_of(n):
        dag = handoffd.DAG()
        for i in range(n):
            dag.add_function(
                handoffd.Function(id=f"t{i}", code=ident, extra_args=[i], cost={"cpu": 1})
            )
        return dag

    run = client.submit(dag_of(2), policy="binpack")
    run.wait(60)
    placed = set(run.placement().values())
    assert len(placed) == 1, run.placement()  # best fit: both on one node
    run = client.submit(dag_of(3), policy="spread")
    run.wait(60)
    assert len(set(run.placement().values())) == 3, run.placement()
    assert big in set(run.placement().values())


def test_pin_and_collocation(cluster, client):
    names = cluster.names()
    dag = handoffd.DAG()
    dag.add_function(handoffd.Function(id="p", code=lambda: os.getpid(), node=names[1]))
    dag.add_function(handoffd.Function(id="q", code=lambda x: x, args=["p"], collocate_with="p"))
    run = client.submit(dag)
    run.wait(60)
    placement = run.placement()
    assert placement["p"] == names[1] and placement["q"] == names[1]


def test_unschedulable_rejected_and_nothing_leaked(cluster, client):
    dag = handoffd.DAG().add_function(
        handoffd.Function(id="huge", code=ident, extra_args=[1], cost={"cpu": 64})
    )
    with pytest.raises(handoffd.Unschedulable) as info:
        client.submit(dag)
    text = str(info.value)
    assert "huge" in text and "64" in text
    assert info.value.largest is not None and info.value.largest["cpu"] == 4
    # Nothing was claimed for the rejected run: every node's cpu comes back to its capacity once
    # the previous tests' last completions have been gossiped (eventually, not instantly).
    from handoffd.testing import wait_for

    def all_free() -> bool:
        nodes = client.nodes()
        return all(i.free.get("cpu", 0) == i.capacity.get("cpu", 0) for i in nodes.values())

    wait_for(all_free, timeout=20, what="every node's cpu free again")
    owned = cluster.run(lambda: [len(n.owner.scheduler.runs()) for n in cluster.nodes])
    before = sum(owned)
    with pytest.raises(handoffd.Unschedulable):
        client.submit(dag)
    assert (
        sum(cluster.run(lambda: [len(n.owner.scheduler.runs()) for n in cluster.nodes])) == before
    )


def test_large_numpy_result_moves_between_nodes_intact(cluster, client):
    names = cluster.names()
    dag = handoffd.DAG()
    dag.add_function(
        handoffd.Function(
            id="make", code=lambda: np.arange(131072, dtype=np.float64), node=names[0]
        )
    )
    dag.add_function(
        handoffd.Function(
            id="use", code=lambda a: (float(a.sum()), a.nbytes, a[-1]), args=["make"], node=names[1]
        )
    )
    results = client.execute(dag)
    expected = np.arange(131072, dtype=np.float64)
    assert np.array_equal(results["make"], expected)
    assert results["use"] == (float(expected.sum()), 1 << 20, 131071.0)


def test_cancel_stops_a_run(client, tmp_path):
    import time as _time

    dag = handoffd.DAG()
    dag.add_function(handoffd.Function(id="slow", code=lambda: _time.sleep(60)))
    dag.add_function(handoffd.Function(id="after", code=ident, args=["slow"]))
    run = client.submit(dag)
    run.cancel()
    with pytest.raises(handoffd.RunCancelled):
        run.wait(30)
    # the slow task's cpu comes back everywhere
    from handoffd.testing import wait_for

    wait_for(
        lambda: all(i.free.get("cpu") == i.capacity.get("cpu") for i in client.nodes().values()),
        timeout=20,
        what="resources freed after cancel",
    )
