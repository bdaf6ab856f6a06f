"""The one-step same-node path (issue 13): the owner hands a dispatch to its own executor in the
scheduler batch that decided it (``Node._dispatch_here``), not as a message routed to ourselves.
Each behaviour is checked on both paths: ``direct`` (the node as built) and ``sent`` (the owner's
and the executor's ``here`` unset: dispatches go through ``Node.send`` to ourselves, and our
executor's answers and reports come back as ``DispatchReplied`` / ``TasksReported`` messages, not
as records: the path before)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

import handoffd
from handoffd.daemon.dispatch import HereTable, dispatch_here
from handoffd.protocol import messages as m
from handoffd.scheduler import events as ev
from handoffd.testing import ThreadedCluster, wait_for

pytestmark = pytest.mark.timeout(120)


def _ident(x: Any) -> Any:
    return x


def _add(a: int, b: int) -> int:
    return a + b


def _boom() -> None:
    raise ValueError("boom on purpose")


def _flaky(path: str) -> str:
    if not os.path.exists(path):
        with open(path, "w"):
            pass
        raise RuntimeError("the first attempt fails")
    return "second"


def _sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def _traced(cluster: ThreadedCluster, path: str) -> list[str]:
    """What the node routes and what its executor is handed, from now on."""
    (node,) = cluster.nodes
    seen: list[str] = []

    async def patch() -> None:
        route, on_dispatch = node._route, node.executor.on_dispatch
        from_here, handle = node.owner.from_here, node.owner.handle

        def came(ins: Any) -> None:
            seen.append(f"record {type(ins).__name__}")
            from_here(ins)

        def owner_got(msg: Any, *rest: Any) -> None:
            seen.append(f"owner {type(msg).__name__}")
            handle(msg, *rest)

        def routed(msg: Any, *rest: Any) -> None:
            seen.append(f"route {type(msg).__name__}")
            route(msg, *rest)

        def handed(msg: Any, *rest: Any) -> None:
            seen.append("dispatch")
            on_dispatch(msg, *rest)

        node._route, node.executor.on_dispatch = routed, handed
        node.owner.from_here, node.owner.handle = came, owner_got
        if path == "sent":
            node.owner.here = node.executor.here = None

    cluster.call(patch)
    return seen


@pytest.mark.parametrize("path", ["direct", "sent"])
def test_results_errors_retries_and_history_are_the_same_on_both_paths(path: str, tmp_path):
    with ThreadedCluster([{"cpu": 2}]) as cluster:
        seen = _traced(cluster, path)
        with handoffd.connect(cluster.address, timeout=10) as client:
            dag = handoffd.DAG()
            dag.add_function(handoffd.Function(id="a", code=_ident, extra_args=[2]))
            dag.add_function(handoffd.Function(id="b", code=_ident, extra_args=[3]))
            dag.add_function(handoffd.Function(id="c", code=_add, args=["a", "b"]))
            assert client.execute(dag) == {"a": 2, "b": 3, "c": 5}

            failing = handoffd.DAG().add_function(handoffd.Function(id="x", code=_boom))
            with pytest.raises(handoffd.TaskFailed) as err:
                client.execute(failing, max_retries=1)
            assert err.value.function_id == "x" and err.value.attempts == 2
            assert "boom on purpose" in str(err.value)

            marker = str(tmp_path / "flaky")
            flaky = handoffd.DAG().add_function(
                handoffd.Function(id="f", code=_flaky, extra_args=[marker])
            )
            run = client.submit(flaky, max_retries=2)
            assert run.wait(30).state == "DONE"
            assert run.results() == {"f": "second"}
            history = client.task_history(run.id)
            (task,) = history["tasks"]
            assert task["attempts"] == 2 and task["state"] == "DONE"
            assert [a["state"] for a in task["history"]] == ["FAILED", "DONE"]
            assert all(a["started"] and a["pid"] for a in task["history"])  # as reported here
    dispatched = seen.count("dispatch")
    assert dispatched >= 6  # a, b, c; x twice; f twice (some may share a dispatch)
    routed = seen.count("route DispatchTasks")
    # The behaviour under test: direct, no dispatch is routed to ourselves; sent, every one is.
    assert routed == (0 if path == "direct" else dispatched)
    # ... and our executor answers with records (direct) or messages (sent), never both.
    records = {e for e in seen if e.startswith("record ")}
    messages = {e for e in seen if e in ("owner DispatchReplied", "owner TasksReported")}
    if path == "direct":
        assert records == {"record AnsweredHere", "record ReportedHere"} and not messages
    else:
        assert messages == {"owner DispatchReplied", "owner TasksReported"} and not records


@pytest.mark.parametrize("path", ["direct", "sent"])
def test_cancel_frees_our_own_executor_on_both_paths(path: str):
    with ThreadedCluster([{"cpu": 1}]) as cluster:
        _traced(cluster, path)
        with handoffd.connect(cluster.address, timeout=10) as client:
            dag = handoffd.DAG()
            dag.add_function(handoffd.Function(id="slow", code=_sleep, extra_args=[60.0]))
            dag.add_function(handoffd.Function(id="after", code=_ident, args=["slow"]))
            run = client.submit(dag)
            (node,) = cluster.nodes
            wait_for(lambda: node.executor.running_count() == 1, 20, what="the slow task running")
            run.cancel()
            with pytest.raises(handoffd.RunCancelled):
                run.wait(30)
            wait_for(
                lambda: all(
                    i.free.get("cpu") == i.capacity.get("cpu") for i in client.nodes().values()
                ),
                timeout=20,
                what="resources freed after cancel",
            )
            # and the node still runs work afterwards
            again = handoffd.DAG().add_function(
                handoffd.Function(id="a", code=_ident, extra_args=[1])
            )
            assert client.execute(again) == {"a": 1}


@pytest.mark.parametrize("shape", ["items", "table"])
def test_a_dispatch_to_ourselves_waits_behind_what_it_may_not_overtake(shape: str):
    """Something we sent our own executor that a dispatch may not pass (a cancel) is delivered
    first: the dispatch is queued behind it, in order. Frees and our executor's answers it passes.
    ``shape``: ``DispatchTasks`` (routed as a message when its turn comes) or the table the owner
    builds for plain inputs (``dispatch.HereTable``: handed to the executor, never routed)."""
    with ThreadedCluster([{"cpu": 1}]) as cluster:
        (node,) = cluster.nodes

        async def body() -> list[str]:
            order: list[str] = []
            route = node._route

            def routed(msg: Any, *rest: Any) -> None:
                order.append(type(msg).__name__)
                if not isinstance(msg, m.CancelTasks):
                    route(msg, *rest)

            def to_executor(msg: Any, *rest: Any) -> None:
                order.append("handed")

            on_free_run = node.executor.on_free_run

            def freed(msg: m.FreeRun, term: int = 0) -> None:  # (straight from _deliver)
                order.append(type(msg).__name__)
                on_free_run(msg, term)

            node._route, node._to_executor = routed, to_executor
            node.executor.on_free_run = freed
            try:
                dispatch: Any = object.__new__(m.DispatchTasks)
                if shape == "table":
                    task = ev.DispatchedTask("t", 1, b"p", {"cpu": 1.0}, "variadic", None, ())
                    ins = ev.Dispatch(node.name, "r", 1, (task,))
                    dispatch = dispatch_here(ins, node.address, lambda a: a)[0]
                    assert isinstance(dispatch, HereTable)
                node.send(node.address, m.FreeRun("gone"))
                node._dispatch_here(dispatch, [], 1)
                assert order == ["handed"]  # passed the free
                node.send(node.address, m.CancelTasks("r", ()))
                node._dispatch_here(dispatch, [], 1)
                assert order == ["handed"]  # behind the cancel
                node.send(node.address, m.Ok(0))  # (not routed to the patched router below)
                for _ in range(3):
                    await asyncio.sleep(0)
                return order
            finally:
                del node._route, node._to_executor, node.executor.on_free_run

        order = cluster.call(body)
        last = "DispatchTasks" if shape == "items" else "handed"
        assert order[:4] == ["handed", "FreeRun", "CancelTasks", last]


def test_a_release_joins_the_next_batch_and_our_ledger_needs_no_late_update():
    """Back to back one-task runs (W3) on the owner's own node: the release of the collected
    results is not a scheduler batch of its own right after the answer; it waits for the next
    batch (the next drain's, or the tick's flush at the latest). Our ledger's changes reach our
    scheduler with the executor's answer and report, so ``_publish_own`` is never scheduled. It
    was four batches and two ``_publish_own`` callbacks a run (issue 13, lat13f's items). A
    release still waiting when the next run's one-task submission comes stays for the batch
    after it (tests/unit/test_owner_lane.py); its ``FreeRun`` to our executor, sent in a batch at
    the end of ``_deliver``, is handed over when that batch is done (no callback)."""
    runs = 10
    with ThreadedCluster([{"cpu": 1}]) as cluster:
        (node,) = cluster.nodes
        seen = {"released alone": 0, "released pending": 0, "kept past a submission": 0, "own": 0}
        frees = {"queued": 0, "delivered": 0}

        async def patch() -> None:
            feed, publish = node.owner._feed_all, node._publish_own
            queue_here, on_free_run = node._queue_here, node.executor.on_free_run

            def queued(msg: Any, frames: list[Any], term: int) -> None:
                frees["queued"] += type(msg) is m.FreeRun
                queue_here(msg, frames, term)

            def freed(msg: Any, term: int = 0) -> None:
                frees["delivered"] += 1
                on_free_run(msg, term)

            node._queue_here, node.executor.on_free_run = queued, freed

            def fed(*events: Any) -> None:
                if any(isinstance(e, ev.ResultsReleased) for e in events):
                    seen["released alone"] += 1
                owner = node.owner
                held = [e for e in owner._pending if isinstance(e, ev.ResultsReleased)]
                feed(*events)
                if held:
                    if any(any(e is h for e in owner._pending) for h in held):
                        assert events and type(events[-1]) is ev.RunSubmitted
                        seen["kept past a submission"] += 1
                    else:
                        seen["released pending"] += 1

            def published(*args: Any) -> None:
                seen["own"] += 1
                publish(*args)

            node.owner._feed_all, node._publish_own = fed, published

        with handoffd.connect(cluster.address, timeout=10) as client:
            dag = handoffd.DAG().add_function(
                handoffd.Function(id="f", code=_ident, extra_args=[0])
            )
            assert client.execute(dag) == {"f": 0}  # the worker started
            cluster.call(patch)
            for i in range(runs):
                dag = handoffd.DAG().add_function(
                    handoffd.Function(id="f", code=_ident, extra_args=[i])
                )
                assert client.execute(dag) == {"f": i}
            # the last release is fed by the tick at the latest: nothing of any run stays here
            wait_for(lambda: not node.store.runs(), 10, what="every run's results freed")
        assert seen["released alone"] == 0 and seen["own"] == 0
        # A release fed with a report's batch in ``_deliver`` frees our executor's values when
        # that batch is done, not in a callback (a loop turn) of its own.
        assert frees["delivered"] - frees["queued"] >= 1, frees
        assert seen["released pending"] in (runs, runs + 1)  # (+ the warm-up run's, if still held)


@pytest.mark.parametrize("path", ["direct", "sent"])
def test_the_run_survives_its_owner_s_death_after_tasks_ran_on_the_owner_s_node(path: str):
    """The owner ran some of the run's tasks on its own node (on ``path``) and dies: a standby
    takes the run over at term 1 and it ends DONE with every result, as on the sent path."""
    import cluster_jobs

    n = 12
    with ThreadedCluster([{"cpu": 1}] * 3) as cluster:
        owner = cluster.nodes[0]
        ran_here: list[str] = []

        async def watch() -> None:
            on_dispatch = owner.executor.on_dispatch
            if path == "sent":
                owner.owner.here = owner.executor.here = None

            def seen(msg: Any, *rest: Any) -> None:
                items = getattr(msg, "items", None)  # (else a table: dispatch.HereTable)
                ran_here.extend(msg.task_ids if items is None else (i.task_id for i in items))
                on_dispatch(msg, *rest)

            owner.executor.on_dispatch = seen

        cluster.call(watch)
        dag = handoffd.DAG()
        for i in range(n):
            dag.add_function(
                handoffd.Function(id=f"t{i}", code=_sleep, extra_args=[0.2 + i / 1000])
            )
        with handoffd.connect(cluster.url(0), timeout=30) as client:
            run = client.submit(dag, policy="spread")
            run_id = run.id
            wait_for(
                lambda: cluster_jobs.standbys_hold(cluster, run_id), 30, what="standbys hold it"
            )
            wait_for(lambda: len(ran_here) >= 1, 30, what="a task dispatched to the owner's node")
        cluster.crash(0)
        with handoffd.connect(cluster.url(1), timeout=30) as other:
            follow = other.run(run_id)
            final = follow.wait(120)
            assert final.state == "DONE" and final.term == 1
            assert follow.results() == {f"t{i}": 0.2 + i / 1000 for i in range(n)}
