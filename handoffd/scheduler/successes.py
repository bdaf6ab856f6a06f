# cython: annotation_typing=False
# (the annotations are for mypy; successes.pxd beside it gives the compiled build its C types)
"""A success report table applied in one compiled pass: the owner's most common event.

``OwnerScheduler._on_all_succeeded`` hands a ``TasksSucceeded`` of a live, running run from a live
node here when the run has no plain ``listener`` (tests) and the owner is its mover. ``apply`` walks
the columns once: each row answers its dispatch, is checked against the task's state, attempt and
node (a stale or unknown row is skipped, as ``OwnerScheduler._current`` skips it), and an accepted
row is ``finish``ed: ``RunState.succeeded`` with the ``ASSIGNED``/``RUNNING`` -> ``DONE`` move of
``RunState.move`` written out for the one case (the transition table's check is known to pass), so
a row costs one C call instead of four layers (report, current, accept, succeeded, move).

``RunState.succeeded`` stays the reference (and the path of an adopted result and of the rows after
a run ends); tests/unit/test_scheduler_successes.py applies random report tables both ways and
compares every task, the owner's books and the instructions.
"""

from __future__ import annotations

from typing import Any

from handoffd.scheduler import history as hist
from handoffd.scheduler.history import INPUTS_READY
from handoffd.scheduler.run import _MOVES_LIMIT, RunState, TaskRecord
from handoffd.scheduler.states import ASSIGNED, DONE, PENDING, RUN_DONE, RUN_RUNNING, RUNNING


def apply(
    run: RunState,
    view: Any,
    node: str,
    ids: Any,
    tries: Any,
    sizes: Any,
    values: Any,
    took: Any,
    now: float,
    cancels: list[tuple[str, str, int]],
) -> tuple[int, bool]:
    """Apply the rows of a success report of ``run`` from ``node`` in order, as
    ``OwnerScheduler._succeeded`` would one by one, up to the row after which the run is no longer
    running. Returns (rows taken, whether a row answered a dispatch still unanswered); the
    dispatches to cancel are added to ``cancels``."""
    run_id = run.run_id
    tasks = run.tasks
    durations = view.durations
    answered = False
    n = len(ids)
    i = 0
    while i < n:
        task_id = ids[i]
        attempt = tries[i]
        if view.answered(node, (run_id, task_id, attempt)) is not None:
            answered = True
        rec = tasks.get(task_id)
        i += 1
        if rec is None or rec.attempt != attempt or rec.node != node:
            continue
        old = rec.state
        if old != ASSIGNED and old != RUNNING:
            continue
        durations.observe_keys(rec.duration_key, rec.shape_key, took[i - 1])
        finish(run, rec, old, node, sizes[i - 1], values[i - 1], now, cancels)
        if run.state != RUN_RUNNING:
            break
    return i, answered


def finish(
    run: RunState,
    rec: TaskRecord,
    old: str,
    node: str,
    size: int,
    value: bytes | None,
    now: float,
    cancels: list[tuple[str, str, int]],
) -> None:
    """``run.succeeded(rec, ...)`` for ``rec`` out (``old``: ASSIGNED or RUNNING) on ``node``."""
    rec.size = int(size)
    rec.value = value
    rec.locations = (node,)
    rec.completions += 1
    cause = f"succeeded on {node} attempt {rec.attempt}"
    # The move (``RunState.move`` for old in ACTIVE, new DONE, no cause code).
    rec.state = DONE
    rec.delayed = False
    tally = run.tally
    tally[old] -= 1
    tally[DONE] += 1
    moves = rec.moves
    moves.extend((now, old, DONE, cause, None, None))
    if len(moves) > _MOVES_LIMIT:
        del moves[: len(moves) - _MOVES_LIMIT]
    c = run.counters
    if c is not None:
        c[DONE] = c.get(DONE, 0) + 1
    hist.moved(rec.attempts, rec.attempt, rec.node, old, DONE, now + run.wall_offset, cause)
    run.remaining -= 1
    unfinished = run.unfinished
    if unfinished:
        for dep in run.effective_deps[rec.id]:
            unfinished[dep] -= 1
    if run.mover is not None:
        run.mover.moved(run, rec, old, DONE)
    if run.listener is not None:
        run.listener(run, rec, old, DONE)
    # The rest of ``RunState.succeeded``.
    if run.options.outputs is not None:
        run._free_unneeded(rec)
    tasks = run.tasks
    for consumer in run.consumers[rec.id]:
        crec = tasks[consumer]
        if crec.state == PENDING and run._inputs_done(consumer):
            cancels.extend(run.make_ready(crec, now, INPUTS_READY, False, rec.id))
    if run.remaining == 0 and run.state == RUN_RUNNING:
        run.state = RUN_DONE
        run.finished = now + run.wall_offset
