"""One exchange per run on real daemons (subprocesses on loopback): ``execute`` sends
``SubmitAndWait`` and gets the outcome with the results inline; ``Run.wait`` is a ``WaitRun`` long
poll whose outcome carries results too. Results, errors, cancel, results too big or held elsewhere
(fetched as before), a wait that expires, and the owner killed while a client waits."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

import cloudpickle
import pytest

import handoffd
from handoffd import client as client_mod
from handoffd import client_moves
from handoffd.protocol import messages as m
from handoffd.testing import DaemonCluster, layered_dag, layered_expected, wait_for

pytestmark = pytest.mark.timeout(240)

# The daemons' workers have no copy of this file: ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def square(x: int) -> int:
    return x * x


def total(*xs: int) -> int:
    return sum(xs)


def boom(x: int) -> int:
    raise KeyError(f"no key {x}")


def nap(seconds: float) -> str:
    time.sleep(seconds)
    return "rested"


def blob(n: int, fill: int) -> bytes:
    return bytes([fill]) * n


SMALL = ("s0", "s1", "s2", "s3", "total")  # small_dag's results


def small_dag() -> handoffd.DAG:
    dag = handoffd.DAG()
    for i in range(4):
        dag.add_function(handoffd.Function(id=f"s{i}", code=square, extra_args=[i]))
    dag.add_function(handoffd.Function(id="inl", code=lambda: 100, type="inline"))
    dag.add_function(
        handoffd.Function(id="total", code=total, args=[f"s{i}" for i in range(4)] + ["inl"])
    )
    return dag


def freed(client: handoffd.Client, run_id: str, ids: Iterable[str] = SMALL) -> bool:
    """Whether no node serves the run's results ``ids`` any more (released, values dropped): each
    answers ``FetchResults`` with all of them missing, where the owner answers with the values
    and the others name the owner until then. (Asked of each node once: ``Run.results`` asks
    every node again for 10 s before it says a value is not available.)"""
    want = tuple(ids)
    for node in client.nodes().values():
        reply = client._ask_node(node.address, lambda rid: m.FetchResults(rid, run_id, want))
        if not isinstance(reply, m.Results) or set(reply.missing) != set(want):
            return False
    return True


def test_execute_gets_results_inline_and_the_owner_frees_them(shared_pair):
    a, _ = shared_pair
    with handoffd.connect(a.address) as client:
        assert client.execute(small_dag()) == {"s0": 0, "s1": 1, "s2": 4, "s3": 9, "total": 114}
        assert client.execute(small_dag(), outputs=["total", "s3"]) == {"total": 114, "s3": 9}
        # The one exchange: the outcome carried every value, and the owner freed them itself.
        run = client._submit(small_dag(), True)
        assert run._last is not None and run._last.state == "DONE"
        assert run._released and set(run._values) == {"s0", "s1", "s2", "s3", "total"}
        assert run.results()["total"] == 114  # from the outcome, no request
        assert freed(client, run.id)


def test_wait_then_results_uses_the_outcome(shared_pair):
    a, _ = shared_pair
    with handoffd.connect(a.address) as client:
        run = client.submit(small_dag())
        status = run.wait(30)
        assert status.state == "DONE" and status.counts["DONE"] == 5
        assert set(run._values) == {"s0", "s1", "s2", "s3", "total"}
        assert run.results() == run.results() == {"s0": 0, "s1": 1, "s2": 4, "s3": 9, "total": 114}
        assert run.result("s2") == 4
        assert not run._released and not freed(client, run.id)  # wait() frees nothing
        run.release()
        wait_for(lambda: freed(client, run.id), 10, what="release")


def test_errors_are_raised_as_before(shared_pair):
    a, _ = shared_pair
    dag = handoffd.DAG().add_function(handoffd.Function(id="bad", code=boom, extra_args=[7]))
    with handoffd.connect(a.address) as client:
        with pytest.raises(handoffd.TaskFailed) as info:
            client.execute(dag, max_retries=1)
        assert info.value.function_id == "bad" and info.value.exc_type == "KeyError"
        assert info.value.attempts == 2 and "no key 7" in str(info.value)
        huge = handoffd.DAG().add_function(
            handoffd.Function(id="huge", code=square, extra_args=[1], cost={"cpu": 64})
        )
        with pytest.raises(handoffd.Unschedulable) as unschedulable:
            client.execute(huge)
        assert unschedulable.value.function_id == "huge"
        pinned = handoffd.DAG().add_function(
            handoffd.Function(id="p", code=square, extra_args=[1], node="nowhere")
        )
        with pytest.raises(handoffd.ValidationError) as invalid:
            client.execute(pinned)
        assert invalid.value.kind == "unknown_node"


def test_cancel_while_execute_waits(shared_pair, monkeypatch):
    a, _ = shared_pair
    monkeypatch.setattr(client_mod, "_POLL", 0.3)  # the first outcome comes back RUNNING
    dag = handoffd.DAG().add_function(handoffd.Function(id="nap", code=nap, extra_args=[60]))
    caught: list[BaseException] = []

    def run_it() -> None:
        with handoffd.connect(a.address) as c:
            try:
                c.execute(dag)
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                caught.append(exc)

    thread = threading.Thread(target=run_it)
    thread.start()
    with handoffd.connect(a.address) as client:
        # (the shared daemons' earlier runs are all finished: the one going is this test's)
        going = wait_for(
            lambda: [r.run_id for r in client.runs() if r.state == "RUNNING"],
            30,
            what="the run to be submitted",
        )
        assert len(going) == 1
        run_id = going[0]
        time.sleep(0.6)  # let execute's first wait expire: the cancel reaches a WaitRun
        assert client.run(run_id).status().state == "RUNNING"
        client.run(run_id).cancel()
    thread.join(60)
    assert not thread.is_alive()
    assert len(caught) == 1 and isinstance(caught[0], handoffd.RunCancelled), caught


def test_execute_timeout_still_raises_timeout(shared_pair):
    a, _ = shared_pair
    dag = handoffd.DAG().add_function(handoffd.Function(id="nap", code=nap, extra_args=[30]))
    with handoffd.connect(a.address) as client:
        with pytest.raises(handoffd.Timeout):
            client.execute(dag, timeout=0.5)
        # The run goes on after the client's timeout; ended here, as the daemons are shared.
        (going,) = [r.run_id for r in client.runs() if r.state == "RUNNING"]
        client.run(going).cancel()


def test_results_too_big_or_held_elsewhere_are_fetched(shared_pair, monkeypatch):
    a, b = shared_pair
    monkeypatch.setattr(client_mod, "_EXECUTE_BYTES", 300_000)
    dag = handoffd.DAG()
    # 200 kB each (stored on the node that ran it, not inline in the report): two fit the budget
    # when held by the owner, the others are fetched; the pinned one always lives on b.
    for i in range(4):
        dag.add_function(handoffd.Function(id=f"mine{i}", code=blob, extra_args=[200_000, i]))
    dag.add_function(
        handoffd.Function(id="theirs", code=blob, extra_args=[150_000, 9], node=b.name)
    )
    dag.add_function(handoffd.Function(id="tiny", code=square, extra_args=[3], node=b.name))
    want: dict[str, Any] = {f"mine{i}": bytes([i]) * 200_000 for i in range(4)}
    want.update(theirs=bytes([9]) * 150_000, tiny=9)
    with handoffd.connect(a.address) as client:
        assert client.execute(dag) == want
        run = client._submit(dag, True)
        assert run._last is not None and run._last.state == "DONE"
        assert not run._released and "theirs" not in run._values and "tiny" in run._values
        assert sum(len(v) for v in run._values.values()) <= 300_000
        assert run.results() == want
        run._release_nowait()
        wait_for(lambda: freed(client, run.id, want), 10, what="release after the fetch")


@pytest.mark.timeout(300)
def test_owner_killed_while_execute_waits() -> None:
    layers, width = 12, 60
    with DaemonCluster() as cluster:
        first = cluster.start(cpu=2, memory=2000)
        others = [cluster.start(cpu=2, memory=2000, seeds=[first.address]) for _ in range(2)]
        try:
            with handoffd.connect(first.address, timeout=5) as watcher:
                wait_for(
                    lambda: sum(n.status == "ALIVE" for n in watcher.nodes().values()) == 3,
                    30,
                    0.1,
                    what="3 daemons ALIVE",
                )
            got: list[Any] = []

            def run_it() -> None:
                with handoffd.connect(first.address, timeout=5) as c:
                    try:
                        got.append(c.execute(layered_dag(layers, width, 0.01)))
                    except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                        got.append(exc)

            thread = threading.Thread(target=run_it)
            thread.start()
            with handoffd.connect(others[0].address, timeout=5) as follower:
                with handoffd.connect(first.address, timeout=5) as owner_client:
                    wait_for(lambda: owner_client.runs(), 30, what="the run to be submitted")
                    run_id = owner_client.runs()[0].run_id
                followed = follower.run(run_id)
                wait_for(
                    lambda: followed.status().counts.get("DONE", 0) >= 0.3 * layers * width,
                    120,
                    0.02,
                    what="30% progress",
                )
                first.kill()
                thread.join(180)
                assert not thread.is_alive()
                assert len(got) == 1 and isinstance(got[0], dict), got
                assert got[0] == layered_expected(layers, width)
                final = followed.status()
                assert final.state == "DONE" and final.term == 1 and final.owner != first.name
        except BaseException:
            print(cluster.logs())
            raise


def test_every_daemon_gone_raises_connection_error_each_time(pair, monkeypatch):
    # A submission looks for a node that takes it for MOVE_WITHIN (30 s: a node may restart or a
    # verdict come); this test is about the error each time, so the window is cut to 3 s. Each
    # submission also asks the other known node about the run for ASK_TIMEOUT (2 s: a live but
    # busy node), which a killed one never answers: cut to 0.5 s, the same path.
    monkeypatch.setattr(client_moves, "MOVE_WITHIN", 3.0)
    monkeypatch.setattr(client_moves, "ASK_TIMEOUT", 0.5)
    a, b = pair
    with handoffd.connect(a.address, timeout=1) as client:
        assert len(client.nodes()) == 2  # the client now knows both addresses
        a.kill()
        b.kill()
        dag = handoffd.DAG().add_function(handoffd.Function(id="x", code=square, extra_args=[2]))
        for _ in range(2):  # the second call once failed on an assertion (no connection left)
            with pytest.raises(handoffd.ConnectionError):
                client.nodes()
            with pytest.raises(handoffd.ConnectionError):
                client.execute(dag)
