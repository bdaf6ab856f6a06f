"""The scheduler's invariant check (``OwnerScheduler.validate``: ``scheduler/invariants.py`` and
``run_checks.validate_run``, one pass over a run's tasks for the run's and the owner's rules since
session 33) catches planted faults, with the message the five-pass check raised, in both builds:
a task counted in two states, a copy twice, a charge or demand left behind, a ready entry for a
task not READY, dispatches out the lost-message watch forgot, a finished task with a live task's flags."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from scheduler_harness import dispatches, spec
from test_scheduler_twin import cluster

from handoffd.scheduler.states import ASSIGNED, DONE, PENDING

pytestmark = pytest.mark.timeout(120)


def _state() -> Any:
    """A live run "r" with a DONE task (x), ASSIGNED ones (z, then y on x's result) and a
    PENDING one (w, after y), and a finished run "f"; the check passes."""
    c = cluster(_state.pure, {"a": 2, "b": 2}, 1, None)  # type: ignore[attr-defined]
    c.submit("f", [spec("p")])
    for d in dispatches(c.log):
        c.feed(*c.reply(d))
        for item in d.items:
            c.succeed(d.node, d.run_id, item.task_id, item.attempt)
    c.log.clear()
    out = c.submit("r", [spec("x"), spec("y", "x"), spec("z"), spec("w", "y")])
    for d in dispatches(out):
        c.feed(*c.reply(d))
    x = c.sched._owned.live["r"].tasks["x"]
    got = c.succeed(x.node, "r", "x", x.attempt)
    for d in dispatches(got):
        c.feed(*c.reply(d))
    c.sched.validate()
    return c


def _run(c: Any, rid: str = "r") -> Any:
    return c.sched._owned.live[rid]


def _rec(c: Any, state: str) -> Any:
    return next(r for r in _run(c).tasks.values() if r.state == state)


def _two_states(c: Any) -> None:  # counted DONE and ASSIGNED at once
    _run(c).tally[DONE] += 1


def _remaining(c: Any) -> None:  # a task DONE without the run counting it
    _rec(c, PENDING).state = DONE


def _copy_twice(c: Any) -> None:
    rec = _rec(c, DONE)
    rec.locations = (rec.locations[0], rec.locations[0])


def _attempts_list(c: Any) -> None:
    rec = _rec(c, DONE)
    rec.attempts = [list(a) for a in rec.attempts] or [[1]]


def _placed(c: Any) -> None:
    _run(c).placed.pop(_rec(c, ASSIGNED).id)


def _unfinished(c: Any) -> None:
    run = _run(c)
    run.unfinished["x"] = 5  # (x has one consumer, y)


def _done_delayed(c: Any) -> None:
    _rec(c, DONE).delayed = True


def _done_never(c: Any) -> None:
    _rec(c, DONE).completions = 0


def _pending_ready(c: Any) -> None:  # w's input finished, w left PENDING
    run = _run(c)
    y = run.tasks["y"]
    run.tasks["w"].order = run.intake - 1 if run.intake else 0
    y.state, y.completions, y.locations = DONE, 1, (y.node,)
    run.tally[ASSIGNED] -= 1
    run.tally[DONE] += 1
    run.remaining -= 1
    run.unfinished.pop("y", None)


def _charge_left(c: Any) -> None:  # a charge the task no longer holds
    c.sched._view.work["a"] = c.sched._view.work.get("a", 0.0) + 1.0


def _demand_left(c: Any) -> None:  # a task's demand left on its node
    rec = _rec(c, ASSIGNED)
    rec.spec = spec(rec.id, cpu=3.0)


def _active_on_lost(c: Any) -> None:
    node = _rec(c, ASSIGNED).node
    other = "b" if node == "a" else "a"
    for rec in (*_run(c, "f").tasks.values(), _rec(c, DONE)):  # (their copies elsewhere)
        rec.locations = tuple(other if n == node else n for n in rec.locations)
    c.sched._view.nodes[node].alive = False


def _copy_on_lost(c: Any) -> None:
    rec = _rec(c, DONE)
    rec.locations = (*rec.locations, "gone")


def _ready_entry(c: Any) -> None:  # a ready entry for a task that is not READY
    _rec(c, PENDING).queued = True


def _watch_dropped(c: Any) -> None:  # dispatches out that the lost-message watch forgot
    c.sched._lost._sent.clear()


FAULTS: dict[str, tuple[Callable[[Any], None], str]] = {
    "two_states": (_two_states, r"^run 'r' tally "),
    "remaining": (_remaining, r"^run 'r'$"),
    "copy_twice": (_copy_twice, r"^run 'r' x copies "),
    "attempts_list": (_attempts_list, r"^x$"),
    "placed": (_placed, r"^run 'r' placed$"),
    "unfinished": (_unfinished, r"^run 'r' x$"),
    "done_delayed": (_done_delayed, r"task 'x' \(DONE\) .*: delayed outside READY$"),
    "done_never": (_done_never, r"^run 'r' task 'x' \(DONE\) history="),
    "pending_ready": (_pending_ready, r"task 'w' \(PENDING\) .*: PENDING with inputs done$"),
    "charge_left": (_charge_left, r"^work on a: recorded "),
    "demand_left": (_demand_left, r"^outstanding on "),
    "active_on_lost": (_active_on_lost, r" active on lost "),
    "copy_on_lost": (_copy_on_lost, r"^x has copies on lost nodes \['gone'\]$"),
    "ready_entry": (_ready_entry, r"queued but not in its run's heap"),
    "watch_dropped": (_watch_dropped, r"^out \[\] != \[\('r', "),
}


@pytest.mark.parametrize("pure", [False, True], ids=["compiled", "pure"])
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_planted_fault_is_caught(fault: str, pure: bool) -> None:
    _state.pure = pure  # type: ignore[attr-defined]
    c = _state()
    plant, message = FAULTS[fault]
    plant(c)
    with pytest.raises(AssertionError, match=message):
        c.sched.validate()
