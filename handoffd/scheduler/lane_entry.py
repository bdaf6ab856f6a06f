# cython: annotation_typing=False
# (the annotations are for mypy; lane_entry.pxd beside it gives the compiled build its C types)
"""The one-task lane's way into the scheduler: a one-task run's submission placed without the pass.

The request side of the one-task lane (docs/architecture.md, "Single-task latency"). A one-task
run's ``RunSubmitted`` fed the general way goes through ``OwnerScheduler.handle_batch``: the event,
then the placement pass (``ClusterView.place``) over a ready queue that holds that one task, a
walk made for thousands (the queue's cursor, the shapes' pre-check, the batch's aggregate free,
misses, the short batch, the window fills after it). When the run's task is the only one queued,
the pass's outcome is that of its free-resources step for one task: the policy's pick among the
live nodes with room (``ClusterView._place_short``, the core's ``place``) and one dispatch. This
module takes that step directly and nothing else, so the scheduler's state after it is the
pass's, field for field (``tests/unit/test_lane_entry.py`` feeds random runs both ways, with
other runs' tasks, node updates, losses and failures in between, and compares): the same
dispatch (``OwnerScheduler._dispatch``, into the outbox as the pass puts it), the same flags
(``_dirty`` cleared, ``saturated`` as the pass leaves it), the rooms refreshed as the pass
refreshes them.

Anything else is the general pass's, taken as ``handle_batch`` takes it: another task queued
(a task waiting anywhere, of any priority, is never overtaken: the pass walks the queue in its
order), nothing placed now (the dirty flag unset: no pass would run), a pin, a collocation group,
inputs, a task that costs nothing, a rebalance under way, a view built without its index or short
batches (tests), or no room on any node for it (the pass then fills windows).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from handoffd.scheduler import cluster_view as cv
from handoffd.scheduler.events import Instruction, RunSubmitted
from handoffd.scheduler.owner import OwnerScheduler
from handoffd.scheduler.run import READY, RUN_RUNNING


def submit_one(sched: OwnerScheduler, events: Iterable[Any], now: float) -> list[Instruction]:
    """``sched.handle_batch(events, now)`` for a batch whose last event submits a one-task run:
    that run's placement taken without the pass when its task is the only one queued (module
    doc); the same instructions and the same state as ``handle_batch`` either way."""
    sched._now = max(sched._now, now)
    tell = sched.on_changes
    if tell is not None:
        sched._changed = []
    try:
        run_id = None
        for event in events:
            sched._apply(event)
            run_id = event.run_id if type(event) is RunSubmitted else None
        if run_id is None or not _place_one(sched, run_id):
            sched._place()
        return sched._out.take(sched._live, sched.term)
    finally:
        changed, sched._changed = sched._changed, None
        if changed and tell is not None:
            tell(changed)


def _place_one(sched: OwnerScheduler, run_id: str) -> bool:
    """The pass's work for ``run_id``'s one task, the only one queued; False (nothing done) when
    the general pass must run instead."""
    ready = sched._ready
    if not sched._dirty or len(ready) != 1 or ready.weightless or sched._rebalance.queued:
        return False
    run = sched._owned.live.get(run_id)
    if run is None or run.state != RUN_RUNNING or len(run.tasks) != 1 or run_id in ready.held:
        return False
    rec = next(iter(run.tasks.values()))
    if rec.state != READY or not rec.queued or rec.delayed or not rec.cost_items:
        return False
    if run.group_of.get(rec.id) is not None or run.pin_of(rec.id) is not None:
        return False
    view = sched._view
    if view.window <= 1 or not view.indexed or not view.short:
        return False
    rooms = view._rooms
    rooms.refresh(view)
    if not rooms.alive(view.nodes):
        return False
    room = rooms.room
    free = {name: room[name] for name in rooms.with_room()}
    need = rec.spec.cost
    fits = view._core.fits
    if not cv.any_free(free):
        return False  # (only windows could take it: the pass's other branch)
    # The pass's one-task walk: the task fits the most free of each kind and the summed free
    # (each at least what one node has), else it misses and windows are filled.
    most: dict[str, float] = {}
    total: dict[str, float] = {}
    for f in free.values():
        for kind, qty in f.items():
            if qty > most.get(kind, 0.0):
                most[kind] = qty
            total[kind] = total.get(kind, 0.0) + max(qty, 0.0)
    if not fits(need, most) or not fits(need, total):
        return False
    held = run.input_bytes(rec.id, room.__contains__)
    prefer = view._core.prefer(held) if held else None
    chosen = view._place_short(free, [(run, rec, need, None, prefer, -1)])
    if chosen is None or chosen[0] is None:
        return False
    sched._dirty = False
    view.saturated = False
    sched._dispatch(run, rec, chosen[0], False)
    return True
