"""The invariant check's quick answer (``run_checks._holds``: a run's rules asked with C loops over
its tasks' fields, the task-by-task pass only when it says no) says no by itself to a fault in
every rule the pass checks, in both builds, and when it says yes it gathers the owner's sums the
pass gathers: so the check is as strong as the pass and raises its messages."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from test_scheduler_twin import CPU, cluster, drive, twin_steps, workload
from test_validate_faults import FAULTS, _rec, _run, _state

from handoffd.scheduler.demand import add_into
from handoffd.scheduler.run_checks import OwnerTally, _holds, _validate_each
from handoffd.scheduler.states import (
    ASSIGNED,
    FAILED,
    PENDING,
    READY,
    RUN_DONE,
    RUN_FAILED,
    RUNNING,
)

pytestmark = pytest.mark.timeout(120)


def _moved(c: Any, rec: Any, new: str) -> None:
    """``rec`` in state ``new`` with the run's tally following it (one rule broken, not two)."""
    run = _run(c)
    run.tally[rec.state] -= 1
    run.tally[new] += 1
    rec.state = new


def _live_terminal(c: Any) -> None:  # a task FAILED in a live run
    _moved(c, _run(c).tasks["w"], FAILED)


def _inputs_not_ready(c: Any) -> None:  # w READY while its input y is still out
    _moved(c, _run(c).tasks["w"], READY)


def _running_early(c: Any) -> None:  # z RUNNING on an input (w) that never finished
    z = _run(c).tasks["z"]
    _run(c).effective_deps["z"] = ("w",)
    _moved(c, z, RUNNING)


def _no_attempt(c: Any) -> None:
    _run(c).tasks["z"].attempt = 0


def _pinned_elsewhere(c: Any) -> None:
    run = _run(c)
    z = run.tasks["z"]
    run.group_of["z"] = "g"
    run.group_node["g"] = "b" if z.node == "a" else "a"


def _active_delayed(c: Any) -> None:
    _run(c).tasks["z"].delayed = True


def _pending_delayed(c: Any) -> None:
    _run(c).tasks["w"].delayed = True


def _needed_lost(c: Any) -> None:  # x's only copy gone while y (ASSIGNED) still needs it
    x = _run(c).tasks["x"]
    x.locations, x.value = (), None


def _unknown_input(c: Any) -> None:
    _run(c).effective_deps["z"] = ("nope",)


def _unknown_state(c: Any) -> None:
    rec = _run(c).tasks["w"]
    _run(c).tally[PENDING] -= 1
    rec.state = "LIMBO"


def _done_run_open(c: Any) -> None:  # a run DONE with tasks unfinished
    _run(c).state = RUN_DONE


def _ended_open(c: Any) -> None:  # a run ended with ASSIGNED tasks it had closed
    run = _run(c)
    run.state, run.closing = RUN_FAILED, len(run.ordered)


def _active_no_node(c: Any) -> None:
    rec = _rec(c, ASSIGNED)
    _run(c).placed.pop(rec.id)
    rec.node = None


def _renamed(c: Any) -> None:  # a record under another task's key
    run = _run(c)
    run.tasks["z"].id = "zz"


#: Faults of a run's rules (and of the owner's rules on a run's tasks): the quick answer says no.
RUN_FAULTS: dict[str, Callable[[Any], None]] = {
    **{
        name: plant
        for name, (plant, _) in FAULTS.items()
        if name not in ("charge_left", "demand_left", "ready_entry", "watch_dropped")
    },
    "live_terminal": _live_terminal,
    "inputs_not_ready": _inputs_not_ready,
    "running_early": _running_early,
    "no_attempt": _no_attempt,
    "pinned_elsewhere": _pinned_elsewhere,
    "active_delayed": _active_delayed,
    "pending_delayed": _pending_delayed,
    "needed_lost": _needed_lost,
    "unknown_input": _unknown_input,
    "unknown_state": _unknown_state,
    "done_run_open": _done_run_open,
    "ended_open": _ended_open,
    "active_no_node": _active_no_node,
    "renamed": _renamed,
}


def _tally(c: Any) -> OwnerTally:
    return OwnerTally(c.sched._view, add_into)


def _sums(t: OwnerTally) -> tuple[Any, ...]:
    return t.outstanding, t.work, t.queued, t.active


@pytest.mark.parametrize("pure", [False, True], ids=["compiled", "pure"])
@pytest.mark.parametrize("fault", sorted(RUN_FAULTS))
def test_the_quick_answer_says_no_to_a_broken_rule(fault: str, pure: bool) -> None:
    _state.pure = pure  # type: ignore[attr-defined]
    c = _state()
    assert _holds(_run(c), _tally(c))
    RUN_FAULTS[fault](c)
    quick = _tally(c)
    assert not _holds(_run(c), quick)
    assert _sums(quick) == ({}, {}, set(), set()), "sums added by a check that said no"
    with pytest.raises((AssertionError, KeyError)):
        _validate_each(_run(c), _tally(c))


@pytest.mark.parametrize("pure", [False, True], ids=["compiled", "pure"])
@pytest.mark.parametrize("fault", ["charge_left", "demand_left", "ready_entry", "watch_dropped"])
def test_the_owners_faults_beyond_the_runs_still_raise(fault: str, pure: bool) -> None:
    _state.pure = pure  # type: ignore[attr-defined]
    c = _state()
    plant, message = FAULTS[fault]
    plant(c)
    for run in c.sched._owned.live.values():
        quick, each = _tally(c), _tally(c)
        assert _holds(run, quick)
        _validate_each(run, each)
        assert _sums(quick) == _sums(each)
    with pytest.raises(AssertionError, match=message):
        c.sched.validate()


@pytest.mark.parametrize("pure", [False, True], ids=["compiled", "pure"])
def test_the_quick_answer_gathers_the_passes_sums(pure: bool) -> None:
    """The twin tests' random runs (some tasks failing, several runs held, then a node lost):
    after every event each run held gets a yes from both and the same sums, in the same order
    (floats bit for bit)."""
    rng = random.Random(34)
    nodes = {"n0": {CPU: 2.0, "mem": 10.0}, "n1": {CPU: 4.0, "mem": 10.0}, "n2": {CPU: 1.0}}
    c = cluster(pure, nodes, 4, None)
    feed, compared = c.feed, []

    def feed_and_compare(*events: Any) -> Any:
        out = feed(*events)
        quick, each = _tally(c), _tally(c)
        for run in c.sched._owned.live.values():
            assert _holds(run, quick) is True
            _validate_each(run, each)
        assert _sums(quick) == _sums(each)
        assert list(quick.work.items()) == list(each.work.items())
        compared.append(len(c.sched._owned.live))
        return out

    c.feed = feed_and_compare  # type: ignore[method-assign]
    for k in range(8):
        specs, options = workload(rng)
        drive(c, specs, {**options, "max_retries": 2}, twin_steps(rng), run_id=f"r{k}")
    c.kill("n1")
    assert sum(compared) > 200 and max(compared) > 3
