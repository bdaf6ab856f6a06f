# cython: annotation_typing=False
# (the annotations are for mypy; log_blocks.pxd beside it gives the compiled build its C types)
"""A block of task moves applied to a run's replication log, one loop a block (``ReplicationLog``).

Compiled (``setup.py EXECUTOR_COMPILED``, by dotted name) with log_blocks.pxd's types, this file is
also its own pure-Python twin (``tests/unit/test_log_blocks.py`` runs both builds).

A run's changed tasks are one dict (``_Primary.changes``), each task's value None (dirty: it goes
with the next batch) or the time it was held from (a move out to a node waiting for the task's
next move, ``ReplicationLog.changed``'s ``held_at``). One dict, not a dirty one and a held one: a
held task made dirty (the rule: dispatched, then done) is one overwrite of its value in place,
where it was an insert into the dirty dict and a pop from the held one, and a hold one
``setdefault``, where it was a look-up in the dirty dict then a ``setdefault`` in the held one.
The held entries are in time order among the dirty ones (a task is held only when it is not in
the dict, at its end; a dirty one never goes back to held), so a flush releases the leading held
ones that are due in the walk that takes the dirty ones (``take``). A batch goes in the dict's
order: a task made dirty from held sits where it was held (a batch carries each task's
current state: its order changes no standby's replica)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any


def _sized_py(size: int) -> dict[str, Any]:
    """An empty dict for about ``size`` entries: the compiled build's is log_blocks.pxd's
    ``_sized`` (CPython's presized dict: the next batch's holds insert without a resize)."""
    return {}


# (log_blocks.pxd declares ``_sized`` in the compiled build, as log_pack.pxd's ``_put_str``)
if TYPE_CHECKING:
    _sized: Callable[[int], dict[str, Any]]
globals().setdefault("_sized", _sized_py)


def hold(changes: dict[str, Any], task_ids: list[str], now: Any) -> bool:
    """Each of ``task_ids`` not changed already is held from ``now``, in order (a dirty one stays
    dirty, a held one keeps its first time); True if any was."""
    size = len(changes)
    for task_id in task_ids:
        changes.setdefault(task_id, now)
    return len(changes) > size


def mark(changes: dict[str, Any], task_ids: list[str]) -> None:
    """Each of ``task_ids`` dirty: a held one in its place, a new one last."""
    for task_id in task_ids:
        changes[task_id] = None


def take(
    changes: dict[str, Any], limit: int | None, cutoff: Any
) -> tuple[tuple[str, ...], dict[str, Any], int]:
    """A flush of the run, in one walk of its changes: the leading held ones (time order) whose
    time is at most ``cutoff`` (None: all) made dirty in place, then the first ``limit`` (None:
    all) dirty ones taken, in order. Returns them, the changes left (the held ones and any dirty
    one past ``limit``, in order: a new dict, sized for as many as ``changes`` held, when any
    changed), and what is left: 1 if a dirty one, plus 2 if a held one. (Deleting the taken from
    ``changes`` left a dummy each in its table, which lengthened every later hold's look-up of a
    task not in it, until the dict was resized; a release walk of its own walked the dirty ones
    a second time.)"""
    most = len(changes) if limit is None else limit
    taken: list[str] = []
    rest = _sized(len(changes))  # noqa: F821
    left = 0
    released = False
    releasing = True
    for task_id, since in changes.items():
        if since is not None and releasing:
            if cutoff is None or not since > cutoff:
                since = None
                released = True
            else:
                releasing = False  # (the held ones after it are younger)
        if since is None:
            if len(taken) < most:
                taken.append(task_id)
                continue
            left |= 1
        else:
            left |= 2
        rest[task_id] = since
    if not taken and not released:
        return (), changes, left
    return tuple(taken), rest, left


def feed(
    runs: dict[str, Any],
    moves: list[tuple[str, Any, bool]],
    now: Any,
    holding: dict[str, None],
    dirty_runs: dict[str, None],
) -> list[bool]:
    """``ReplicationLog.tasks_changed``: each (run id, task id or a block's list of them, held)
    of one scheduler batch applied, in order, to its run's ``changes`` (``runs``: run id -> its
    ``_Primary``; a run not there is skipped): a held one as ``hold``, any other as ``mark``; a
    run that held a change named in ``holding``, one made dirty in ``dirty_runs``. Returns the
    kinds (True: held) that hit a tracked run, in the order each first did. (One loop over the
    batch: it was a Python step a move or block, about five opcodes a W1 task.)"""
    kinds: list[bool] = []
    last: Any = None
    primary: Any = None
    for run_id, task_id, held in moves:
        if run_id != last:
            last = run_id
            primary = runs.get(run_id)
        if primary is None:
            continue
        changes = primary.changes
        if type(task_id) is list:
            if held:
                if hold(changes, task_id, now):
                    holding[run_id] = None
            else:
                mark(changes, task_id)
                dirty_runs[run_id] = None
        elif held:
            if task_id not in changes:
                changes[task_id] = now
                holding[run_id] = None
        else:
            changes[task_id] = None
            dirty_runs[run_id] = None
        if len(kinds) < 2 and held not in kinds:
            kinds.append(held)
    return kinds


def first_held(changes: dict[str, Any]) -> Any:
    """The time of the first (oldest) held change; None if none is held."""
    for since in changes.values():
        if since is not None:
            return since
    return None
