"""Lazy serialization hooks on 2 in-process nodes, the consumer placed by the scheduler (no pin,
no collocation): when it lands on the producer's node neither hook runs; on the other node each
runs exactly once, serialize in a worker of the producer's node. Hook calls are counted in files
the hooks append to (they run in worker processes)."""

from __future__ import annotations

import multiprocessing
import pickle
import sys
import zlib
from pathlib import Path

import cloudpickle
import pytest

import handoffd
from handoffd import Argument, Function
from handoffd.testing import ThreadedCluster, wait_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(120)


def big():
    return list(range(100_000))  # ~490 KB pickled: over the 64 KiB a report carries inline


def where(value):
    return multiprocessing.current_process().name, len(value)


def counting(calls: Path, codec_fails: bool = False):
    """A serialize/deserialize pair that appends one line per call to ``calls``."""

    def note(what):
        with open(calls, "a") as f:
            f.write(f"{what} {multiprocessing.current_process().name}\n")

    def pack(value):
        note("serialize")
        if codec_fails:
            raise OSError("codec table missing")
        return zlib.compress(pickle.dumps(value))

    def unpack(data):
        note("deserialize")
        return pickle.loads(zlib.decompress(data))

    return pack, unpack


def calls_in(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    return [tuple(line.split(" ", 1)) for line in path.read_text().splitlines()]  # type: ignore[misc]


@pytest.fixture(scope="module")
def cluster():
    # Node 0 has room for a 2-cpu consumer, node 1 does not: the scheduler's choice is forced
    # without a pin, so the test knows where the consumer lands.
    with ThreadedCluster([{"cpu": 2, "memory": 2000}, {"cpu": 1, "memory": 2000}]) as c:
        yield c


@pytest.fixture
def client(cluster):
    with handoffd.connect(cluster.address, timeout=10) as c:
        yield c


def hooked_dag(producer_node: str, calls: Path, **argument) -> handoffd.DAG:
    pack, unpack = counting(calls, argument.pop("codec_fails", False))
    dag = handoffd.DAG()
    dag.add_function(Function(id="p", code=big, node=producer_node))
    dag.add_function(
        Function(
            id="c",
            code=where,
            cost={"cpu": 2},  # fits node 0 only; placed by the scheduler
            args=[Argument("p", serialize=pack, deserialize=unpack, **argument)],
        )
    )
    return dag


def served(cluster) -> list[int]:
    return cluster.run(lambda: [n.executor.hooks.served for n in cluster.nodes])


def test_scheduler_puts_the_consumer_on_the_producers_node_no_hook_runs(cluster, client, tmp_path):
    a, _ = cluster.names()
    calls = tmp_path / "calls"
    before = served(cluster)
    results = client.execute(hooked_dag(a, calls))
    worker, length = results["c"]
    assert worker.startswith(f"{a}-worker") and length == 100_000
    assert calls_in(calls) == []  # zero serialize and zero deserialize calls
    assert served(cluster) == before


def test_scheduler_puts_the_consumer_elsewhere_each_hook_runs_once(cluster, client, tmp_path):
    a, b = cluster.names()
    calls = tmp_path / "calls"
    before = served(cluster)
    results = client.execute(hooked_dag(b, calls))
    worker, length = results["c"]
    assert worker.startswith(f"{a}-worker") and length == 100_000
    got = sorted(calls_in(calls))
    assert [what for what, _ in got] == ["deserialize", "serialize"]  # exactly one each
    (_, deserialized_in), (_, serialized_in) = got
    assert serialized_in.startswith(f"{b}-worker")  # in a worker of the producer's node
    assert deserialized_in == worker  # in the consumer's own worker, before its call
    assert served(cluster) == [before[0], before[1] + 1]


def test_always_runs_both_hooks_on_the_shared_node(cluster, client, tmp_path):
    a, _ = cluster.names()
    calls = tmp_path / "calls"
    worker, _ = client.execute(hooked_dag(a, calls, always=True))["c"]
    assert sorted(calls_in(calls)) == [("deserialize", worker), ("serialize", worker)]


def test_a_failing_serialize_fails_the_consumers_attempt_naming_the_hook(cluster, client, tmp_path):
    _, b = cluster.names()
    calls = tmp_path / "calls"
    with pytest.raises(handoffd.TaskFailed) as info:
        client.execute(hooked_dag(b, calls, codec_fails=True), max_retries=1)
    err = info.value
    assert err.function_id == "c" and err.exc_type == "HookFailed" and err.attempts == 2
    assert (
        "serialize hook" in err.exc_message
        and "pack of argument 'p' of function 'c'" in err.exc_message
    )
    assert "OSError: codec table missing" in err.exc_message
    # each attempt of the consumer asked the producer's node again: the retry is the consumer's
    wait_for(lambda: [w for w, _ in calls_in(calls)] == ["serialize", "serialize"], timeout=10)
