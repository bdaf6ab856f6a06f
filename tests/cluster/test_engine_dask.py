"""handoffd.engines.dask on a real Dask LocalCluster (in this process, TCP on 127.0.0.1 only): the
same results dict as Client.execute, inline functions in their consumers, as_list / extra_args /
kwargs, pins to workers, collocation, retries, costs as resources, failures as TaskFailed."""

from __future__ import annotations

import sys

import cloudpickle
import pytest
from cluster_jobs import fail_until

import handoffd
from handoffd import Argument, Function

distributed = pytest.importorskip("distributed")
from handoffd.engines import dask as dask_engine  # noqa: E402

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(120)


def add(*xs, bonus=0):
    return sum(xs) + bonus


def listing(values, label):
    return (label, list(values))


def worker_name():
    return distributed.get_worker().name


def passthrough(value, _where=None):
    return (value, distributed.get_worker().name)


def boom(x):
    raise KeyError(f"no such key {x}")


@pytest.fixture(scope="module")
def dask_client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=2,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address=None,
        resources={"cpu": 2, "fpga": 1},
    )
    client = distributed.Client(cluster)
    # Workers register with the scheduler after LocalCluster returns; under load a test could
    # otherwise see an empty worker list (pins then name no worker).
    client.wait_for_workers(2, timeout=120)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def test_same_results_as_the_daemon_path(dask_client):
    dag = handoffd.DAG()
    dag.add_function(Function(id="a", code=add, extra_args=[1, 2]))
    dag.add_function(Function(id="b", code=add, extra_args=[10], kwargs={"bonus": 5}))
    dag.add_function(Function(id="half", code=lambda x: x / 2, args=["b"], type="inline", cost={}))
    dag.add_function(Function(id="c", code=add, args=["a", "half"], kwargs={"bonus": 100}))
    dag.add_function(
        Function(id="l", code=listing, args=["a", "b", "c"], argument_inclusion="as_list",
                 extra_args=["all"])
    )  # fmt: skip
    results = dask_engine.execute(dag, dask_client)
    expected = handoffd.run_local(dag, max_workers=2)
    assert results == expected
    assert results == {"a": 3, "b": 15, "c": 3 + 7.5 + 100, "l": ("all", [3, 15, 110.5])}
    assert "half" not in results
    assert dask_engine.execute(dag, dask_client, outputs=["c"]) == {"c": 110.5}


def test_pins_and_collocation_place_on_dask_workers(dask_client):
    dag = handoffd.DAG()
    for i in range(4):
        dag.add_function(Function(id=f"on1-{i}", code=worker_name, node="1"))
    dag.add_function(Function(id="free", code=worker_name))
    dag.add_function(Function(id="near", code=passthrough, args=["free"], collocate_with="free"))
    results = dask_engine.execute(dag, dask_client)
    assert all(results[f"on1-{i}"] == 1 for i in range(4))
    assert results["near"] == (results["free"], results["free"])
    with pytest.raises(handoffd.ValidationError, match="no Dask worker's name"):
        dask_engine.execute(_one(node="gpu-box"), dask_client)


def test_costs_map_to_declared_resources(dask_client):
    # cpu and fpga are declared by the workers: a cost of 2 cpu + 1 fpga runs one at a time
    # per worker; memory is not declared and is left to Dask; gpu is declared by none.
    dag = handoffd.DAG()
    for i in range(4):
        dag.add_function(
            Function(id=f"t{i}", code=add, extra_args=[i], cost={"cpu": 2, "fpga": 1, "memory": 10})
        )
    assert dask_engine.execute(dag, dask_client) == {f"t{i}": i for i in range(4)}
    with pytest.raises(handoffd.Unschedulable, match="gpu=1, which no Dask worker declares"):
        dask_engine.execute(_one(cost={"cpu": 1, "gpu": 1}), dask_client)


def test_retries_and_failures(dask_client, tmp_path):
    dag = handoffd.DAG()
    dag.add_function(
        Function(id="flaky", code=fail_until, extra_args=[str(tmp_path / "n"), 2], max_retries=3)
    )
    assert dask_engine.execute(dag, dask_client) == {"flaky": 3}
    dag = handoffd.DAG()
    dag.add_function(Function(id="x", code=add, extra_args=[1]))
    dag.add_function(Function(id="bad", code=boom, args=["x"]))
    dag.add_function(Function(id="after", code=add, args=["bad"]))
    with pytest.raises(handoffd.TaskFailed) as info:
        dask_engine.execute(dag, dask_client, max_retries=1)
    err = info.value
    assert (err.function_id, err.exc_type, err.attempts) == ("bad", "KeyError", 2)
    assert "no such key 1" in err.exc_message and "boom" in err.traceback


def test_decorator_and_hooks_run_on_dask(dask_client):
    import zlib

    @handoffd.function(cost={"cpu": 1})
    def make(n):
        return bytes(n)

    @handoffd.function
    def size(data, extra=0):
        return len(data) + extra

    with handoffd.DAG() as dag:
        m = make(10_000)
        s = size(Argument(m, serialize=zlib.compress, deserialize=zlib.decompress), extra=1)
    assert dask_engine.execute(dag, dask_client) == {m.id: bytes(10_000), s.id: 10_001}


def test_client_none_uses_the_default_client(dask_client):
    assert distributed.get_client() is dask_client
    assert dask_engine.execute(_one(), None) == {"only": 1}


def _one(**options):
    dag = handoffd.DAG()
    dag.add_function(Function(id="only", code=add, extra_args=[1], **options))
    return dag
