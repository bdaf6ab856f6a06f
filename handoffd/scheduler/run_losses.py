"""What a run does when values or nodes are lost: copies handed over, a node's loss (its tasks
re-queued, its copies dropped), lineage recomputes of lost values still needed. ``RunState``'s
methods of the same names call these (split out of ``run.py``, which keeps the moves); compiled
as a plain module (setup.py SCHEDULER_COMPILED): a node's loss walks every task of each run.
"""

from __future__ import annotations

from typing import Any

from handoffd.scheduler.states import (
    ACTIVE,
    ASSIGNED,
    DONE,
    PENDING,
    READY,
    RUN_CANCELLED,
    RUN_DONE,
    RUN_FAILED,
)

#: Attempts lost to the cluster allowed on top of max_retries before the run gives up.
EXTRA_LOSSES = 20


def add_copies(run: Any, task_ids: list[str], node: str) -> list[str]:
    """``node`` holds a copy of these values now (a leaving node handed them over): kept for
    the DONE tasks whose values are still wanted (they have copies); returns those."""
    kept = []
    for task_id in task_ids:
        rec = run.tasks.get(task_id)
        if rec is not None and rec.state == DONE and rec.locations:
            if node not in rec.locations:
                rec.locations += (node,)
            run.holders.add(node)
            kept.append(task_id)
    return kept


def node_lost(run: Any, node: str, now: float) -> tuple[list[tuple[str, str, int]], Any | None]:
    """Handle the loss of ``node``: re-queue its tasks, drop its copies, recompute what is needed.

    Returns (dispatches to cancel elsewhere, a task that exceeded its loss budget or None).
    """
    run.holders.discard(node)
    requeue: list[Any] = []
    copyless: list[Any] = []  # DONE without a copy (``recompute_needed``'s ``among``)
    for rec in run.tasks.values():  # (one walk: three held the loop 0.1 s per 200,000 tasks)
        if node in rec.locations:
            rec.locations = tuple([n for n in rec.locations if n != node])
        if rec.state in ACTIVE and rec.node == node:
            requeue.append(rec)
        elif rec.state == DONE and not rec.has_copy():
            copyless.append(rec)
    if run.state in (RUN_FAILED, RUN_CANCELLED):
        return [], None
    cancels: list[tuple[str, str, int]] = []
    gave_up: Any | None = None
    for gid, where in run.group_node.items():
        if where == node and run.group_pin.get(gid) is None:
            run.group_node[gid] = None
    for rec in requeue:
        rec.losses += 1
        cancels.extend(run.make_ready(rec, now, f"node {node} lost (attempt {rec.attempt})"))
        if gave_up is None and rec.failures + rec.losses > run.max_retries(rec) + EXTRA_LOSSES:
            gave_up = rec
    return cancels + recompute_needed(run, now, copyless), gave_up


def recompute_needed(run: Any, now: float, among: Any = None) -> list[tuple[str, str, int]]:
    """Recompute every DONE task with no copy left that is still needed, and (``make_ready``)
    the inputs without copies each of those needs in turn. Returns dispatches to cancel.
    ``among``: all of those, in order (after ``node_lost``'s walk a task only leaves them)."""
    cancels: list[tuple[str, str, int]] = []
    for rec in run.tasks.values() if among is None else among:
        if rec.state == DONE and not rec.has_copy() and _needed(run, rec):
            cancels.extend(run._recompute(rec, now))
    return cancels


def _needed(run: Any, rec: Any) -> bool:
    if run.state == RUN_DONE:
        # A finished run never runs a task again by itself: a lost value is recomputed only
        # when a client asks for it (``recompute_lost``).
        return False
    if rec.id in run.wanted and not run.released:
        return True
    for c in run.consumers[rec.id]:
        if run.tasks[c].state in (PENDING, READY, ASSIGNED):
            return True
    return False


def recompute_lost(run: Any, task_ids: tuple[str, ...], now: float) -> list[tuple[str, str, int]]:
    """A client asks for values of this finished run that no copy holds any more: run their
    tasks again (lineage; the run reopens). Returns dispatches to cancel."""
    cancels: list[tuple[str, str, int]] = []
    for task_id in task_ids:
        rec = run.tasks.get(task_id)
        if rec is not None and rec.state == DONE and not rec.has_copy():
            cancels.extend(run._recompute(rec, now))
    return cancels
