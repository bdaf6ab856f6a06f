"""Serialization hooks on 2 real in-process nodes: serialize runs in a worker of the producer's
node, deserialize in the consumer's worker, neither on a shared node unless always=True; a hook's
failure fails with an error naming the hook."""

from __future__ import annotations

import gzip
import multiprocessing
import pickle
import sys

import cloudpickle
import pytest

import handoffd
from handoffd import Argument, Function
from handoffd.testing import ThreadedCluster

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(120)


def produce():
    return list(range(100_000))  # over the 64 KiB a report carries: it stays on its node


def where_and_len(value):
    """(the worker's process name, what the consumer got): the name starts with its node's."""
    return multiprocessing.current_process().name, value


def pack(value):
    # Which worker ran the hook travels with the bytes, so the test can tell where it ran.
    name = multiprocessing.current_process().name.encode()
    return name + b"|" + gzip.compress(pickle.dumps(value))


def unpack(data):
    name, _, body = bytes(data).partition(b"|")
    return {"serialized_in": name.decode(), "deserialized_in": multiprocessing.current_process().name,
            "length": len(pickle.loads(gzip.decompress(body)))}  # fmt: skip


def broken_unpack(data):
    raise ValueError("corrupt frame")


@pytest.fixture(scope="module")
def cluster():
    with ThreadedCluster([{"cpu": 2, "memory": 2000}, {"cpu": 2, "memory": 2000}]) as c:
        yield c


@pytest.fixture
def client(cluster):
    with handoffd.connect(cluster.address, timeout=10) as c:
        yield c


def dag_for(producer_node, consumer_node, **argument):
    dag = handoffd.DAG()
    dag.add_function(Function(id="p", code=produce, node=producer_node))
    dag.add_function(
        Function(
            id="c",
            code=where_and_len,
            args=[Argument("p", serialize=pack, deserialize=argument.pop("deserialize", unpack), **argument)],
            node=consumer_node,
        )
    )  # fmt: skip
    return dag


def test_hooks_run_on_each_side_of_a_node_boundary(cluster, client):
    a, b = cluster.names()
    results = client.execute(dag_for(a, b))
    consumer_worker, got = results["c"]
    assert got["serialized_in"].startswith(f"{a}-worker")
    assert got["deserialized_in"] == consumer_worker and consumer_worker.startswith(f"{b}-worker")
    assert got["length"] == 100_000
    assert set(results) == {"p", "c"}  # the hook task is not a result


def test_no_hooks_on_one_node_unless_always(cluster, client):
    a, _ = cluster.names()
    _, got = client.execute(dag_for(a, a))["c"]
    assert got == list(range(100_000))  # the plain value: neither hook ran
    consumer_worker, got = client.execute(dag_for(a, a, always=True))["c"]
    assert got["serialized_in"].startswith(f"{a}-worker") and got["length"] == 100_000
    assert got["deserialized_in"] == consumer_worker


def test_a_failing_hook_fails_the_consumer_naming_the_hook(cluster, client):
    a, b = cluster.names()
    with pytest.raises(handoffd.TaskFailed) as info:
        client.execute(dag_for(a, b, deserialize=broken_unpack), max_retries=0)
    err = info.value
    assert err.function_id == "c" and err.exc_type == "HookFailed"
    assert (
        "deserialize hook test_cluster_arguments.broken_unpack of argument 'p' of function 'c'"
        in err.exc_message
    )
    assert "ValueError: corrupt frame" in err.exc_message


def broken_pack(value):
    raise OSError("disk codec missing")


def test_a_failing_serialize_hook_is_reported_as_the_consumers_failure(cluster, client):
    a, b = cluster.names()
    dag = handoffd.DAG()
    dag.add_function(Function(id="p", code=produce, node=a))
    dag.add_function(Function(id="c", code=where_and_len, node=b,
                              args=[Argument("p", serialize=broken_pack, deserialize=unpack)]))  # fmt: skip
    with pytest.raises(handoffd.TaskFailed) as info:
        client.execute(dag, max_retries=0)
    err = info.value
    assert err.function_id == "c" and err.exc_type == "HookFailed"
    assert "serialize hook test_cluster_arguments.broken_pack of argument 'p'" in err.exc_message
    with pytest.raises(handoffd.TaskFailed) as info:
        client.submit(dag, max_retries=0).wait(60)  # Run.wait names the consumer too
    assert info.value.function_id == "c" and info.value.exc_type == "HookFailed"
