"""What a node sends itself: delivered without the network, one callback per loop turn."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import handoffd
from handoffd.protocol import messages as m
from handoffd.testing import ThreadedCluster

pytestmark = pytest.mark.timeout(120)


def test_messages_to_ourselves_in_one_turn_are_delivered_in_order_then_fed_as_one_batch():
    """The owner's scheduler gets one batch for everything our own executor said in a loop turn
    (as for a transport's drain), after every message of it was routed, in the order sent."""
    with ThreadedCluster([{"cpu": 1}]) as cluster:
        (node,) = cluster.nodes
        seen: list[Any] = []

        async def body() -> list[Any]:
            route, flush = node._route, node.owner.flush

            def routed(msg: Any, *rest: Any) -> None:
                seen.append(msg.request_id)
                route(msg, *rest)

            def flushed() -> None:
                seen.append("flush")
                flush()

            node._route, node.owner.flush = routed, flushed
            try:
                for i in range(3):
                    assert node.send(node.address, m.Ok(i))
                assert seen == []  # not before the next loop turn
                for _ in range(3):
                    await asyncio.sleep(0)
            finally:
                del node._route, node.owner.flush  # the class's methods again
            return seen

        assert cluster.call(body) == [0, 1, 2, "flush"]


def _noop(i: int) -> int:
    return i


def _traced_here(here: Any, events: list[tuple[str, ...]]) -> Any:
    """``OwnerIO.from_here`` that notes each record our executor hands our owner."""

    def came(ins: Any) -> None:
        events.append(("route", type(ins).__name__))
        here(ins)

    return came


def test_a_run_on_our_own_node_reaches_the_worker_and_the_client_without_waiting_a_loop_turn():
    """A dispatch to ourselves is handed to our executor in the scheduler batch that decided it
    (Node._dispatch_here: never routed), and our executor's report is delivered at the end of its
    flush (Node._drained, the executor's ``after_soon``; the flush of the last task's report is in
    the read of its outcome, ``Executor.on_read``): each was one loop turn later, ~25 us apiece of
    W3's latency (issue 13)."""
    import handoffd

    with ThreadedCluster([{"cpu": 1}]) as cluster:
        (node,) = cluster.nodes
        events: list[tuple[str, ...]] = []

        async def patch() -> None:
            transport, executor, route = node._transport, node.executor, node.owner.handle
            deliver, drain, on_dispatch = (
                transport._deliver,
                executor.after_soon,
                executor.on_dispatch,
            )

            def delivered(*args: Any) -> None:
                events.append(("delivery",))
                deliver(*args)
                events.append(("delivery.end",))

            def drained() -> None:
                events.append(("drained",))
                drain()
                events.append(("drained.end",))

            def routed(msg: Any, *rest: Any) -> None:
                events.append(("route", type(msg).__name__))
                route(msg, *rest)

            def handed(msg: Any, *rest: Any) -> None:
                events.append(("route", type(msg).__name__))
                on_dispatch(msg, *rest)

            transport._deliver, executor.after_soon, node.owner.handle = delivered, drained, routed
            executor.on_dispatch = handed
            node.owner.from_here = _traced_here(node.owner.from_here, events)

        cluster.call(patch)
        with handoffd.connect(cluster.address, timeout=10) as client:
            dag = handoffd.DAG().add_function(handoffd.Function(id="f", code=_noop, extra_args=[7]))
            assert client.execute(dag) == {"f": 7}
        submit = events.index(("route", "SubmitAndWait"))
        dispatch = events.index(("route", "HereTable"))  # (plain inputs: dispatch.dispatch_here)
        assert events.index(("delivery.end",), submit) > dispatch  # in the submit's callback
        answer = events.index(("route", "AnsweredHere"))
        assert submit < dispatch < answer  # handed over before its answer came back
        report = events.index(("route", "ReportedHere"))
        start = max(i for i, e in enumerate(events[:report]) if e[0] == "drained")
        assert ("drained.end",) not in events[start:report]  # at the flush's end


def _nap(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


def _traced_runs(cluster: Any, dags: list[Any], after_read: Any = None) -> list[tuple[str, ...]]:
    """Run each DAG; the events: outcomes the pool read (each read's, then its end), messages the
    owner handled, the executor's "soon" callbacks. ``after_read(ids)``, if given, is called in
    the loop once the executor has taken a read's outcomes in."""
    import handoffd

    (node,) = cluster.nodes
    events: list[tuple[str, ...]] = []

    async def patch() -> None:
        pool, executor, route = node.pool, node.executor, node.owner.handle
        done, read, soon = pool._on_done, pool.on_read, executor._soon

        def outcome(out: Any) -> None:
            events.append(("outcome", out.key[1]))
            done(out)
            if after_read is not None:
                after_read([out.key[1]])

        def on_read(outcomes: list[Any]) -> None:
            # (an ``Outcome``, or a task's ``Row``: a tuple, its key first)
            keys = [out[0] if type(out) is tuple else out.key for out in outcomes]
            events.extend(("outcome", key[1]) for key in keys)
            events.append(("read",))
            read(outcomes)
            events.append(("read.end",))
            if after_read is not None:
                after_read([key[1] for key in keys])

        def flushed(event: Any) -> None:
            events.append(("soon", type(event).__name__))
            soon(event)
            events.append(("soon.end",))

        def routed(msg: Any, *rest: Any) -> None:
            events.append(("route", type(msg).__name__))
            route(msg, *rest)

        pool._on_done, pool.on_read, executor._soon, node.owner.handle = (
            outcome,
            on_read,
            flushed,
            routed,
        )
        node.owner.from_here = _traced_here(node.owner.from_here, events)

    cluster.call(patch)
    with handoffd.connect(cluster.address, timeout=10) as client:
        for dag in dags:
            client.execute(dag)
    return events


def test_the_last_running_task_s_report_goes_in_the_callback_that_read_its_outcome():
    """With nothing else running here, the report (and the owner's answer) leaves in the loop turn
    that read the worker's reply (Executor.on_read), not one turn later."""
    import handoffd

    with ThreadedCluster([{"cpu": 1}]) as cluster:
        dag = handoffd.DAG().add_function(handoffd.Function(id="f", code=_noop, extra_args=[7]))
        events = _traced_runs(cluster, [dag])
    report = events.index(("route", "ReportedHere"))
    read = max(i for i, e in enumerate(events[:report]) if e == ("read",))
    assert events[read - 1] == ("outcome", "f")
    assert ("read.end",) not in events[read:report]  # in the callback that read the outcome


def _held_marked(marker: str, release: str) -> float:
    """Says it started (``marker``), then runs until ``release`` exists (bounded at 30 s)."""
    import os
    import time

    with open(marker, "w"):
        pass
    deadline = time.monotonic() + 30
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.005)
    return 0.5


def _after_marker(marker: str, i: int) -> int:
    import os
    import time

    deadline = time.monotonic() + 30
    while not os.path.exists(marker) and time.monotonic() < deadline:
        time.sleep(0.005)
    return i


def test_while_another_task_runs_the_report_waits_for_the_turn_s_end(tmp_path: Any) -> None:
    """Another task still running here: its outcome could come in this loop turn, so the first
    report is sent by the flush a turn later (one report for a turn's outcomes, as before).
    "quick" ends only once "slow" has started (a marker file), and "slow" ends only once the
    executor has taken quick's outcome in (another file, made by the test's hook in the loop):
    under load, either could otherwise end with nothing else running here (a fixed nap of "slow"
    was seen to end before quick's outcome was read, at load ~25)."""
    import handoffd

    marker, release = str(tmp_path / "slow-started"), str(tmp_path / "quick-read")

    def after_read(ids: list[str]) -> None:
        if "quick" in ids:
            with open(release, "w"):
                pass

    with ThreadedCluster([{"cpu": 2}]) as cluster:
        dag = handoffd.DAG()
        dag.add_function(handoffd.Function(id="quick", code=_after_marker, extra_args=[marker, 1]))
        dag.add_function(
            handoffd.Function(id="slow", code=_held_marked, extra_args=[marker, release])
        )
        events = _traced_runs(cluster, [dag], after_read)
    quick = events.index(("outcome", "quick"))
    report = events.index(("route", "ReportedHere"), quick)
    assert ("read.end",) in events[quick:report]
    assert ("soon", "Flush") in events[quick:report]


def test_a_delivery_made_at_a_drain_s_end_leaves_no_empty_callback_behind():
    """What Node._drained delivered is not looked for again a loop turn later: the callback that
    would have delivered it is cancelled (it found nothing and fed the scheduler an empty batch)."""
    import handoffd

    with ThreadedCluster([{"cpu": 1}]) as cluster:
        (node,) = cluster.nodes
        calls: list[int] = []

        async def patch() -> None:
            deliver = node._deliver_locals

            def counted() -> None:
                calls.append(len(node._local))
                deliver()

            node._deliver_locals = counted

        cluster.call(patch)
        with handoffd.connect(cluster.address, timeout=10) as client:
            for i in range(5):
                # A request between runs, as a client alone sent before each submission until
                # session 14 (a ListNodes): without it, no local delivery of these runs waits
                # for the callback at all, and the check below would find nothing to check.
                client.nodes()
                dag = handoffd.DAG().add_function(
                    handoffd.Function(id="f", code=_noop, extra_args=[i])
                )
                assert client.execute(dag) == {"f": i}
        assert calls and 0 not in calls


class _Counted:
    """An executor stand-in that counts the looks at FETCH_TYPES (the chain's second check)."""

    def __init__(self) -> None:
        from handoffd.daemon.executor import Executor

        self.looks = 0
        self._types = Executor.FETCH_TYPES

    @property
    def FETCH_TYPES(self) -> tuple[type, ...]:  # noqa: N802 - the executor's name
        self.looks += 1
        return self._types


def test_the_owner_s_messages_reach_it_by_type_as_the_chain_would_route_them(monkeypatch: Any):
    """Submissions and executors' answers go to the owner without walking Node._route's chain
    (~27 isinstance checks each); the chain, walked, sends each of them there too."""
    from types import SimpleNamespace

    from handoffd.daemon import node_routing as node_module

    handled: list[Any] = []
    owner = SimpleNamespace(handle=lambda msg, *rest: handled.append(msg))
    fast = node_module._TO_OWNER
    assert {m.SubmitAndWait, m.DispatchReplied, m.TasksReported} <= fast
    for walk in (False, True):
        executor = _Counted()
        fake = SimpleNamespace(executor=executor, owner=owner, replication=object())
        if walk:
            monkeypatch.setattr(node_module, "_TO_OWNER", frozenset())
        for kind in fast:
            msg = object.__new__(kind)
            node_module.NodeRouting._route(fake, msg, [], b"", None)  # type: ignore[arg-type]
            assert handled.pop() is msg
        assert executor.looks == (len(fast) if walk else 0)


def test_a_submission_from_the_transport_reaches_the_owner_without_the_router():
    """``_on_frames`` hands what only the owner reads (``_TO_OWNER``: a client's submission here)
    to it by exact type, after admission, without a ``_route`` pass; the run is answered."""
    with ThreadedCluster([{"cpu": 1}]) as cluster:
        (node,) = cluster.nodes
        routed: list[type] = []
        handled: list[type] = []
        route, handle = node._route, node.owner.handle

        def counting_route(msg: Any, *rest: Any) -> None:
            routed.append(type(msg))
            route(msg, *rest)

        def counting_handle(msg: Any, *rest: Any) -> None:
            handled.append(type(msg))
            handle(msg, *rest)

        node._route, node.owner.handle = counting_route, counting_handle
        with handoffd.connect(cluster.address, timeout=10) as client:
            for i in range(3):
                dag = handoffd.DAG().add_function(
                    handoffd.Function(id="f", code=_noop, extra_args=[i])
                )
                assert client.execute(dag) == {"f": i}
        assert handled.count(m.SubmitAndWait) == 3, handled
        assert m.SubmitAndWait not in routed, routed
