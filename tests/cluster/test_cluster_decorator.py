"""The decorator API on 3 real in-process nodes: decorated calls run where their Function would
(pins, retries), Refs become dependencies of every shape, client.get reads one Ref's value."""

from __future__ import annotations

import sys

import cloudpickle
import pytest
from cluster_jobs import fail_until

import handoffd
from handoffd.testing import ThreadedCluster

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(120)


@handoffd.function
def load(n):
    return list(range(n))


@handoffd.function(cost={"cpu": 1, "memory": 100}, max_retries=2)
def train(data, lr=0.1):
    return sum(data) * lr


@handoffd.function
def merge(parts, offset=0):
    return sum(parts) + offset


@handoffd.function
def describe(named, scale):
    return {key: value * scale for key, value in named.items()}


@handoffd.function(inline=True, cost={})
def double(x):
    return 2 * x


@handoffd.function
def where():
    import os

    return os.getpid()


flaky = handoffd.function(max_retries=3)(fail_until)


@pytest.fixture(scope="module")
def cluster():
    with ThreadedCluster([{"cpu": 2, "memory": 2000}, {"cpu": 2, "memory": 2000}]) as c:
        yield c


@pytest.fixture
def client(cluster):
    with handoffd.connect(cluster.address, timeout=10) as c:
        yield c


def test_decorated_dag_runs_on_the_cluster(client):
    with handoffd.DAG() as dag:
        d = load(5)
        m = train(d, lr=0.5)
        parts = [train(load(i), lr=1.0) for i in range(1, 4)]
        total = merge(parts, offset=100)
        named = describe({"m": m, "total": total}, scale=double(m))
    results = client.execute(dag)
    assert results[d.id] == [0, 1, 2, 3, 4] and results[m.id] == 5.0
    assert results[total.id] == 0 + 1 + 3 + 100
    assert results[named.id] == {"m": 5.0 * 10.0, "total": 104.0 * 10.0}
    assert double.__name__ == "double" and "double-1" not in results  # inline: no result
    assert client.get(m) == 5.0 and client.get([d, total]) == [[0, 1, 2, 3, 4], 104.0]


def test_get_on_a_submitted_run_and_on_a_dag_never_run(client):
    with handoffd.DAG() as dag:
        m = train(load(3), lr=2.0)
    client.submit(dag)
    assert client.get(m) == 6.0
    with handoffd.DAG():
        x = merge([train(load(2), lr=1.0), train(load(3), lr=1.0)])
    assert client.get(x) == 1 + 3  # executes the DAG


def test_call_options_pin_and_priority(cluster, client):
    a, b = cluster.names()
    with handoffd.DAG() as dag:
        on_b = where.options(node=b, id="on-b")()
        on_a = where.options(node=a, priority=5)()
    run = client.submit(dag)
    run.wait(60)
    placement = run.placement()
    assert placement["on-b"] == b and placement[on_a.id] == a
    assert on_b.id == "on-b"


def test_decorator_retries_apply(client, tmp_path):
    with handoffd.DAG() as dag:
        r = flaky(str(tmp_path / "count"), 2)
    assert client.execute(dag)[r.id] == 3  # failed twice, retried under max_retries=3
