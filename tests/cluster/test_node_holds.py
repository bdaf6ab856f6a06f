"""A transport's drain and our executor's read of a worker's pipe hold what the node sends itself
and its ledger changes for the ``_drained`` that ends them: no loop callback is scheduled for them
(a callback cancelled later still costs the loop a turn). Issue 13, W3: 3.0 -> 2.1 loop turns a
one-task execute."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

import handoffd
from handoffd.protocol import messages as m
from handoffd.testing import ThreadedCluster

pytestmark = pytest.mark.timeout(120)


def _noop(i: int) -> int:
    return i


def _in_hold() -> bool:
    """Scheduled while a transport's messages or a worker's outcomes are handled (not by a timer
    of the pool's memory watch, say, whose ledger change is no part of the run's path)."""
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name in ("_received", "on_read", "_deliver_local"):
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def test_a_one_task_execute_schedules_no_callback_of_the_node_or_its_executor():
    """The submission's drain (dispatch, claim, our executor's answer) and the read of the
    worker's reply (release, report, flush) each end in a ``_drained``: nothing of ours waits for
    a later loop turn, and nothing is scheduled to be cancelled."""
    with ThreadedCluster([{"cpu": 1}]) as cluster:
        (node,) = cluster.nodes
        scheduled: list[str] = []

        async def patch() -> None:
            loop = asyncio.get_running_loop()
            call_soon = loop.call_soon

            def counted(fn: Any, *args: Any, **kw: Any) -> Any:
                if getattr(fn, "__self__", None) in (node, node.executor) and _in_hold():
                    scheduled.append(fn.__name__)
                return call_soon(fn, *args, **kw)

            loop.call_soon = counted  # type: ignore[method-assign]

        with handoffd.connect(cluster.address, timeout=10) as client:
            dag = handoffd.DAG().add_function(handoffd.Function(id="f", code=_noop, extra_args=[0]))
            assert client.execute(dag) == {"f": 0}  # the worker is up, the code is here
            cluster.call(patch)
            for i in range(1, 6):
                dag = handoffd.DAG().add_function(
                    handoffd.Function(id="f", code=_noop, extra_args=[i])
                )
                assert client.execute(dag) == {"f": i}
        assert scheduled == []


def test_a_hold_delivers_what_we_sent_ourselves_before_our_owner_sees_the_ledger_change():
    """Held, a message to ourselves and a ledger change our owner does not know wait; the hold's
    ``_drained`` delivers the message and feeds the owner first, and the ledger reaches the
    owner after (the scheduler learns which task ended before it sees the freed slot)."""
    with ThreadedCluster([{"cpu": 2}]) as cluster:
        (node,) = cluster.nodes

        async def body() -> list[Any]:
            seen: list[Any] = []
            owner = node.owner
            route, flush, own = node._route, owner.flush, owner.own_resources
            loop = asyncio.get_running_loop()
            ready = len(loop._ready)  # type: ignore[attr-defined]
            node._route = lambda msg, *rest: (seen.append(msg.request_id), route(msg, *rest))
            owner.flush = lambda: (seen.append("flush"), flush())
            owner.own_resources = lambda free, v: (seen.append(("own", free["cpu"])), own(free, v))
            try:
                node._hold()
                assert node.send(node.address, m.Ok(1))
                assert node.ledger.try_claim({"cpu": 1.5}) is not None
                node._resources_changed()
                assert len(loop._ready) == ready  # type: ignore[attr-defined]
                assert seen == []
                node._drained()
                assert seen == [1, "flush"]
                for _ in range(3):
                    await asyncio.sleep(0)
            finally:
                node.ledger.release({"cpu": 1.5}, [])
                del node._route, owner.flush, owner.own_resources
            return seen

        seen = cluster.call(body)
        assert seen[:3] == [1, "flush", ("own", 0.5)]
        # The node's periodic tick (``OwnerIO.tick``) flushes too; it may fall in the awaits above.
        assert set(seen[3:]) <= {"flush"}


def test_a_hold_released_without_a_drain_schedules_what_waits_in_order():
    """Our executor's read while other tasks run ends its hold with ``_release`` (the report waits
    for its flush): what we sent ourselves is delivered by its callback, the ledger published by
    the next, as before the hold."""
    with ThreadedCluster([{"cpu": 2}]) as cluster:
        (node,) = cluster.nodes

        async def body() -> list[Any]:
            seen: list[Any] = []
            owner = node.owner
            route, own = node._route, owner.own_resources
            node._route = lambda msg, *rest: (seen.append(msg.request_id), route(msg, *rest))
            owner.own_resources = lambda free, v: (seen.append(("own", free["cpu"])), own(free, v))
            try:
                node._hold()
                assert node.send(node.address, m.Ok(2))
                assert node.ledger.try_claim({"cpu": 1.0}) is not None
                node._resources_changed()
                node._release()
                assert seen == []  # not before the next loop turn
                for _ in range(4):
                    await asyncio.sleep(0)
            finally:
                node.ledger.release({"cpu": 1.0}, [])
                del node._route, owner.own_resources
            return seen

        assert cluster.call(body) == [2, ("own", 1.0)]
