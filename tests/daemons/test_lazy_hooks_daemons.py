"""Lazy serialization hooks on 2 real daemons, the consumer placed by the scheduler (the first
daemon alone has room for it; no pin, no collocation): on the producer's daemon no hook runs; on
the other daemon serialize runs once in a worker of the producer's daemon and deserialize once in
the consumer's worker; a failing serialize fails the consumer naming the hook."""

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
from handoffd.testing import wait_for

cloudpickle.register_pickle_by_value(sys.modules[__name__])

pytestmark = pytest.mark.timeout(180)


def big_list():
    return list(range(100_000))  # over the 64 KiB a report carries: it stays on its daemon


def worker_and_len(value):
    return multiprocessing.current_process().name, len(value)


def hooks(calls: str, fail: bool = False):
    def note(what):
        with open(calls, "a") as f:
            f.write(f"{what} {multiprocessing.current_process().name}\n")

    def pack(value):
        note("serialize")
        if fail:
            raise ValueError("no codec")
        return zlib.compress(pickle.dumps(value))

    def unpack(data):
        note("deserialize")
        return pickle.loads(zlib.decompress(data))

    return pack, unpack


def lines(path: Path) -> list[list[str]]:
    return [line.split(" ", 1) for line in path.read_text().splitlines()] if path.exists() else []


def dag_on(producer: str, calls: Path, fail: bool = False) -> handoffd.DAG:
    pack, unpack = hooks(str(calls), fail)
    dag = handoffd.DAG()
    dag.add_function(Function(id="p", code=big_list, node=producer))
    dag.add_function(Function(id="c", code=worker_and_len, cost={"cpu": 2},
                              args=[Argument("p", serialize=pack, deserialize=unpack)]))  # fmt: skip
    return dag


def test_hooks_run_only_when_the_value_leaves_its_daemon(daemons, tmp_path):
    a = daemons.start(cpu=2, memory=2000)
    b = daemons.start(cpu=1, memory=2000, seeds=[a.address])
    with handoffd.connect(a.address) as client:
        wait_for(lambda: len(client.nodes()) == 2, timeout=30, what="two daemons joined")
        assert set(client.nodes()) == {a.name, b.name}

        same = tmp_path / "same"
        worker, length = client.execute(dag_on(a.name, same))["c"]
        assert worker.startswith(f"{a.name}-") and length == 100_000
        assert lines(same) == []  # the scheduler put c on p's daemon: zero hook calls

        other = tmp_path / "other"
        worker, length = client.execute(dag_on(b.name, other))["c"]
        assert worker.startswith(f"{a.name}-") and length == 100_000
        got = sorted(lines(other))
        assert [what for what, _ in got] == ["deserialize", "serialize"]  # exactly one each
        assert got[1][1].startswith(f"{b.name}-")  # serialize: a worker of p's daemon
        assert got[0][1] == worker  # deserialize: c's own worker

        failing = tmp_path / "failing"
        with pytest.raises(handoffd.TaskFailed) as info:
            client.execute(dag_on(b.name, failing, fail=True), max_retries=0)
        err = info.value
        assert err.function_id == "c" and err.exc_type == "HookFailed"
        assert "serialize hook" in err.exc_message and "ValueError: no codec" in err.exc_message
