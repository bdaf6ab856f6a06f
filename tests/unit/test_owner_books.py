"""The owner's books through task moves (``scheduler/owner_books.py``): a run's intake asks
``ClusterView.could_take`` once a task shape while the view stands still, with the same answers;
a dispatch and its items, filled slot by slot, are what the dataclasses' constructors make."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest
from scheduler_harness import Cluster, dispatches, spec
from test_scheduler_twin import cluster

from handoffd.scheduler import events as ev
from handoffd.scheduler import owner
from handoffd.scheduler.cluster_view import ClusterView

pytestmark = pytest.mark.timeout(60)


class CountingView(ClusterView):
    """A ``ClusterView`` that records each ``could_take`` question (a Python override of the
    compiled method: the owner's C call reaches it)."""

    asked: list[tuple[Any, dict[str, float]]]

    def could_take(self, pin: Any, cost: dict[str, float]) -> bool:
        self.asked.append((pin, dict(cost)))
        return bool(super().could_take(pin, cost))


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(owner, "ClusterView", CountingView)


def saturated(nodes: dict[str, Any], cpu_nodes: int = 1) -> tuple[Cluster, CountingView]:
    """A cluster whose ``cpu_nodes`` cpu nodes of 1 cpu hold a full window (4) of run ``r0``'s
    tasks each, more of them waiting."""
    c = Cluster(nodes, window=4)
    view = c.sched._view
    assert isinstance(view, CountingView)
    out = c.submit("r0", [spec(f"x{i}") for i in range(4 * cpu_nodes + 2)])
    assert len([i for d in dispatches(out) for i in d.items]) == 4 * cpu_nodes
    view.asked = []
    return c, view


def test_a_slice_of_tasks_that_fit_nowhere_asks_once_a_shape(counting: None) -> None:
    c, view = saturated({"a": 1.0})
    specs = [spec(f"t{i}", cpu=1.0 if i % 2 else 0.5) for i in range(20)]
    out = c.submit("r1", specs)
    assert dispatches(out) == []
    # (one question a shape, not one a task: nothing the answer reads moved in between)
    assert sorted(cost["cpu"] for _, cost in view.asked) == [0.5, 1.0]
    assert c.sched._no_room is None  # (remembered only during the intake)
    view.asked = []
    c.submit("r2", [spec(f"u{i}") for i in range(5)])
    assert len(view.asked) == 1  # (a new intake asks again)


def test_a_shape_that_fits_is_still_asked_for_and_placed_at_once(counting: None) -> None:
    c, view = saturated({"a": 1.0, "b": {"gpu": 1.0}})
    specs = [spec(f"t{i}") for i in range(5)] + [spec("g", cost={"gpu": 1.0})]
    out = c.submit("r1", specs)
    assert [(d.node, [i.task_id for i in d.items]) for d in dispatches(out)] == [("b", ["g"])]
    assert [cost for _, cost in view.asked] == [{"cpu": 1.0}, {"gpu": 1.0}]


def test_pinned_and_free_tasks_of_one_cost_are_asked_apart(counting: None) -> None:
    c, view = saturated({"a": 1.0, "b": 1.0}, cpu_nodes=2)
    specs = [spec(f"t{i}") for i in range(3)] + [spec(f"p{i}", node="b") for i in range(3)]
    c.submit("r2", specs)
    assert [pin for pin, _ in view.asked] == [None, "b"]


def _as_built(item: ev.DispatchedTask) -> ev.DispatchedTask:
    """``item`` made again by the dataclass's own constructor (an unfilled slot raises here)."""
    return ev.DispatchedTask(*(getattr(item, f.name) for f in fields(ev.DispatchedTask)))


@pytest.mark.parametrize("pure", [True, False])
def test_a_dispatch_item_is_what_its_constructor_makes(pure: bool) -> None:
    c = cluster(pure, {"a": 2.0, "b": 2.0}, 4, None)
    specs = [spec("x", priority=3, timeout=2.5), spec("y", cost={}), spec("z", "x", "y")]
    sent = dispatches(c.submit("r", specs))
    items = {i.task_id: (d.node, i) for d in sent for i in d.items}
    assert sorted(items) == ["x", "y"]
    for d in sent:
        c.feed(*c.reply(d))
    out = [o for t, (node, i) in items.items() for o in c.succeed(node, "r", t, i.attempt)]
    later = [i for d in dispatches(out) for i in d.items]
    assert [i.task_id for i in later] == ["z"]
    for item in [*(i for _, i in items.values()), *later]:
        again = _as_built(item)
        assert again == item and repr(again) == repr(item)
    # (the dispatches themselves, filled slot by slot by ``Outbox.take``)
    for d in [*sent, *dispatches(out)]:
        built = ev.Dispatch(*(getattr(d, f.name) for f in fields(ev.Dispatch)))
        assert built == d and repr(built) == repr(d)
    x = items["x"][1]
    assert (x.attempt, x.payload, x.cost, x.priority, x.timeout, x.inputs) == (
        1,
        b"x",
        {"cpu": 1.0},
        3,
        2.5,
        (),
    )
    assert len(later[0].inputs) == 2 and later[0].argument_inclusion == "variadic"


class _Succeeded(ev.TasksSucceeded):
    __slots__ = ()


class _Update(ev.NodeUpdate):
    __slots__ = ()


class _Answered(ev.DispatchAnswered):
    __slots__ = ()


@pytest.mark.parametrize("pure", [True, False])
def test_an_event_of_a_subclass_is_applied_as_its_base(pure: bool) -> None:
    """``_apply`` takes its common events by their exact type; a subclass of one still reaches
    the same handler (the ``isinstance`` chain): the same instructions and the same run state."""

    def drive(sub: bool) -> tuple[list[Any], Any]:
        c = cluster(pure, {"a": 1.0, "b": 1.0}, 4, None)
        out = c.submit("r", [spec("x"), spec("y"), spec("z", "x", "y")])
        seen = list(out)
        for d in dispatches(out):
            reply = c.reply(d)
            if sub:
                reply = [
                    _Update(*(getattr(e, f.name) for f in fields(e)))
                    if type(e) is ev.NodeUpdate
                    else _Answered(*(getattr(e, f.name) for f in fields(e)))
                    for e in reply
                ]
            seen += c.feed(*reply)
        for d in dispatches(seen):
            for item in d.items:
                c.release(d.node, "r", item.task_id, item.attempt)
                done = ev.TasksSucceeded(
                    "r", d.node, [item.task_id], [item.attempt], [1], [None], [0.1]
                )
                if sub:
                    done = _Succeeded(*(getattr(done, f.name) for f in fields(done)))
                seen += c.feed(c.update(d.node), done)
        run = c.sched._live["r"]
        return [repr(o) for o in seen], {
            t: (r.state, r.node, r.attempt) for t, r in run.tasks.items()
        }

    plain, sub = drive(False), drive(True)
    assert plain == sub
    assert plain[1]["x"][0] == "DONE" and plain[1]["z"][0] in ("ASSIGNED", "DONE")
