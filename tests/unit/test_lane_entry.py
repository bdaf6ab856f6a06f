"""``scheduler.lane_entry``: a one-task run's submission placed without the pass leaves the
scheduler as the pass leaves it.

Two owner schedulers of one build get the same random event stream (``test_room_index``'s
driver: heterogeneous nodes, other owners' work, nodes dying and coming back, refusals, lost
answers and their timeouts, pins, collocation, weightless and gpu-only tasks, priorities, the
three policies, a window) with 400 one-task runs among bigger runs; one takes every batch that
ends with a one-task submission through ``lane_entry.submit_one``, the other through
``handle_batch``. Every instruction must be equal, step by step, and so must the scheduler's
state after each batch: every run's snapshot, the view's demand, unanswered dispatches and rooms'
flags, the ready queue, the dirty flag. The lane must have been taken (most one-task runs) and
not taken (a task already waiting, nothing free), both.
"""

from __future__ import annotations

import importlib
import marshal
from typing import Any

import pytest
from test_room_index import TwinDriver
from test_scheduler_twin import PURE

from handoffd.scheduler import events as ev
from handoffd.scheduler import lane_entry
from handoffd.scheduler import owner as built_owner
from handoffd.spec import RunOptions, TaskSpec

SCHEDULER_BUILT = built_owner.__file__.endswith(
    (".so", ".pyd")
)  # (the lane built as the scheduler is)

pytestmark = pytest.mark.timeout(170)


def _state(s: Any, run_ids: Any) -> tuple[Any, ...]:
    # (a snapshot is plain data: marshal's version 2 writes it by value, bit for bit, in dict
    # order and with no references to shared objects, as repr did, and ~5x cheaper; the all-runs
    # comparisons' reprs were most of the test's checking time)
    view = s._view
    runs = {
        run_id: marshal.dumps(s.snapshot(run_id), 2) for run_id in run_ids if s.run_state(run_id)
    }
    unacked = {n: sorted(view.unacked_of(n).items()) for n in view.unacked}
    ready = s._ready
    return (
        runs,
        view.outstanding,
        view.pending,
        view.work,
        unacked,
        view.saturated,
        s._dirty,
        len(ready),
        ready.weightless,
        {k: v for k, v in ready.shape_counts().items() if v},
        sorted(ready.held),
    )


class LaneDriver(TwinDriver):
    """``indexed`` takes one-task submissions through the lane entry, ``full`` the pass."""

    def __init__(self, seed: int, pure: bool) -> None:
        super().__init__(seed, 32, 0.005)
        module = (
            PURE["handoffd.scheduler.owner"]
            if pure
            else importlib.import_module("handoffd.scheduler.owner")
        )
        kw: dict[str, Any] = {"window": 32, "queue_seconds": 0.005}
        self.indexed = module.OwnerScheduler("owner", now=0.0, **kw)
        self.full = module.OwnerScheduler("owner", now=0.0, **kw)
        self.ones = 0
        self.feeds = 0
        self.lane = PURE["handoffd.scheduler.lane_entry"] if pure else lane_entry
        self.laned = 0

    def submit(self) -> None:
        if self.rng.random() < 0.3:
            super().submit()
            return
        rng = self.rng
        self.runs += 1
        self.ones += 1
        pin = rng.choice(list(self.nodes)) if rng.random() < 0.05 else None
        spec = TaskSpec("f", (), self.cost(), b"p", node=pin, priority=rng.choice((0, 0, 3)))
        policy = rng.choice(("binpack", "spread", "first_fit"))
        self.inbox.append(ev.RunSubmitted(f"r{self.runs}", [spec], RunOptions(policy=policy)))

    def feed(self) -> None:
        if self.feeds and self.rng.random() < 0.25:
            # (the events of several steps in one batch: a submission after a report or a
            # node's update that lets a waiting task start, as a drain reads them)
            self.feeds += 1
            return
        events, self.inbox = self.inbox, []
        self.t += self.rng.choice((0.001, 0.01, 0.3))
        last = events[-1] if events else None
        one = type(last) is ev.RunSubmitted and len(last.specs) == 1
        if one:
            before = len(self.indexed._out.dispatches)
            out = self.lane.submit_one(self.indexed, events, self.t)
            self.laned += before == 0 and any(type(i) is ev.Dispatch for i in out)
        else:
            out = self.indexed.handle_batch(events, self.t)
        reference = self.full.handle_batch(events, self.t)
        # (repr: an instruction may carry an exception, which compares by identity)
        assert list(map(repr, out)) == list(map(repr, reference)), f"t={self.t}: placed otherwise"
        self.feeds += 1
        # (every run's snapshot now and then, and at the end of the test; the submitted run's
        # after each lane batch. Every 200 batches, not 40: the lane writes only its run and the
        # view, which every comparison holds, and the snapshots' reprs were most of the test's
        # time)
        ids = self.full.runs() if self.feeds % 200 == 0 else [last.run_id] if one else []
        assert _state(self.indexed, ids) == _state(self.full, ids), f"t={self.t}: states differ"
        if self.feeds % 20 == 0:  # (its cost grows with the runs held: not every batch)
            self.indexed.validate()
        self.take(out)


@pytest.mark.parametrize("seed,pure", [(0, False), (4, False), (3, True)])
def test_one_task_runs_leave_the_state_the_pass_leaves(seed: int, pure: bool) -> None:
    driver = LaneDriver(seed, pure)
    driver.feed()
    while driver.ones < 400:
        driver.step()
    every = driver.full.runs()
    assert sorted(driver.indexed.runs()) == sorted(every)
    assert _state(driver.indexed, every) == _state(driver.full, every), "states differ at the end"
    assert driver.decisions > 100, "too few placements to compare"
    compiled = lane_entry.__file__.endswith((".so", ".pyd"))
    assert driver.lane.__file__.endswith(".py") if pure else compiled == SCHEDULER_BUILT
    assert 40 < driver.laned < driver.ones, "the lane taken hardly, or always"


def test_a_task_waiting_is_not_overtaken() -> None:
    """A report frees the room an urgent task queued before was waiting for, in the batch that
    also submits a one-task run: the urgent task takes the room, as the pass gives it (the
    instructions are the pass's), and the one-task run is not placed before it."""
    lane, ref = (built_owner.OwnerScheduler("a", now=0.0) for _ in range(2))
    node = ev.NodeUpdate("a", "a", True, {"cpu": 1.0}, {"cpu": 1.0}, 1)
    long = ev.RunSubmitted("long", [TaskSpec("l", (), {"cpu": 1.0}, b"p")], RunOptions())
    urgent = TaskSpec("u", (), {"cpu": 1.0}, b"p", priority=10)
    for sched in (lane, ref):
        out = sched.handle_batch([node, long], 0.0)
        assert [i.run_id for i in out if isinstance(i, ev.Dispatch)] == ["long"]
        busy = ev.NodeUpdate("a", "a", True, {"cpu": 1.0}, {"cpu": 0.0}, 2)
        answer = ev.DispatchAnswered("a", "long", (("l", 1),), ())
        out = sched.handle_batch(
            [busy, answer, ev.RunSubmitted("urgent", [urgent], RunOptions())], 0.1
        )
        assert not [i for i in out if isinstance(i, ev.Dispatch)]  # (waits for the room)
    freed = ev.NodeUpdate("a", "a", True, {"cpu": 1.0}, {"cpu": 1.0}, 3)
    done = ev.TaskSucceeded("long", "l", 1, "a", 8, b"v", 0.5)
    one = ev.RunSubmitted("one", [TaskSpec("f", (), {"cpu": 1.0}, b"p")], RunOptions())
    out = lane_entry.submit_one(lane, [freed, done, one], 0.2)
    assert list(map(repr, out)) == list(map(repr, ref.handle_batch([freed, done, one], 0.2)))
    placed = [i.run_id for i in out if isinstance(i, ev.Dispatch)]
    assert placed[0] == "urgent"
    assert _state(lane, ["one", "urgent"]) == _state(ref, ["one", "urgent"])
    lane.validate()
