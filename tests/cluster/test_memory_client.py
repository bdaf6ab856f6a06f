"""The cluster tier's client path: a ``Client`` in this process reaching in-process nodes over the
``MemoryNetwork`` (no socket, no key), failing over when its node dies, and saying clearly when
there is nobody at the address."""

from __future__ import annotations

import sys

import cloudpickle
import pytest

import handoffd
from handoffd import errors
from handoffd.testing import ThreadedCluster, wait_for
from handoffd.transport.memory import MemoryTransport
from handoffd.transport.memory_client import MemoryControlClient

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(120)


def square(x):
    return x * x


def total(*xs):
    return sum(xs)


def fan_in_dag(width: int) -> handoffd.DAG:
    dag = handoffd.DAG()
    for i in range(width):
        dag.add_function(handoffd.Function(id=f"sq{i}", code=square, args=[], kwargs={"x": i}))
    dag.add_function(handoffd.Function(id="sum", code=total, args=[f"sq{i}" for i in range(width)]))
    return dag


def test_a_client_runs_a_dag_over_the_memory_network_and_fails_over():
    with ThreadedCluster([{"cpu": 2}, {"cpu": 2}, {"cpu": 2}]) as cluster:
        assert cluster.address.startswith("mem://")
        assert all(isinstance(n._transport, MemoryTransport) for n in cluster.nodes)
        with handoffd.connect(cluster.url(1), timeout=10) as client:
            assert isinstance(client._conn, MemoryControlClient)
            assert set(client.nodes()) == set(cluster.names())  # learns every address too
            results = client.execute(fan_in_dag(12))
            assert results["sum"] == sum(i * i for i in range(12))
            placed = set(client.submit(fan_in_dag(6)).wait(30).placement.values())
            assert placed <= set(cluster.names())

            cluster.crash(1)  # the node the client talks to
            survivors = set(cluster.names()) - {cluster.names()[1]}
            wait_for(
                lambda: (
                    set(client.nodes()) >= survivors and client.address != cluster.addresses()[1]
                ),
                30,
                what="the client answered by a surviving node",
            )
            assert client.execute(fan_in_dag(4))["sum"] == sum(i * i for i in range(4))


def test_nobody_at_a_memory_address_is_a_clear_connection_error():
    with ThreadedCluster([{"cpu": 1}]) as cluster:
        url = cluster.url(0)
        missing = url.rsplit("/", 1)[0] + "/nobody.mem:9"
        with pytest.raises(errors.ConnectionError, match="no handoffd node at .*nobody.mem:9"):
            handoffd.connect(missing, timeout=1)
        cluster.crash(0)
        with pytest.raises(errors.ConnectionError, match="stopped or killed"):
            handoffd.connect(url, timeout=1)
    with pytest.raises(errors.ConnectionError, match="no in-process network 'net-gone'"):
        handoffd.connect("mem://net-gone/x.mem:1", timeout=1)


def measure_bytes(data: bytes) -> int:
    return len(data) + data[-1]


def test_a_big_submission_goes_up_in_pieces_over_the_memory_network():
    # A 3 MiB argument is past the 1 MiB a whole message may carry per frame (handoffd.upload):
    # the client sends it in pieces over the in-process network too.
    with ThreadedCluster([{"cpu": 2}]) as cluster:
        with handoffd.connect(cluster.address, timeout=30) as client:
            dag = handoffd.DAG()
            arg = bytes(3 << 20)[:-1] + b"\x05"
            dag.add_function(handoffd.Function(id="m", code=measure_bytes, extra_args=[arg]))
            assert client.execute(dag, timeout=60) == {"m": (3 << 20) + 5}
