# cython: annotation_typing=False
"""Fitness: whether a run's tasks can ever be placed (``ClusterView.misfit``), split from
``cluster_view.py`` (its size limit). Compiled from the ``.py`` alone, like ``placement.py``.

A task misfits when no live node could hold it even idle (its collocation group's whole cost, if
it is in one), or when its pinned node is gone or too small; the error names the task and the
closest node. Every "does it fit" is the core's ``fits`` (``placement.fits_some_capacity``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from handoffd import resources
from handoffd.errors import Unschedulable
from handoffd.scheduler import placement
from handoffd.scheduler.run import DONE, RunState


def misfit(
    view: Any, run: RunState, ids: Iterable[str] | None = None, finished: bool = False
) -> Unschedulable | None:
    """The first unfinished task (or collocation group) no live node can hold even when idle;
    ``ids``: look at these tasks only (``scheduler.intake.Prebuilt.probes``); ``finished``:
    finished tasks too (a group with all its members), as if none were: None then says no
    unfinished one misfits either (each needs at most what it stands for here)."""
    views = [
        placement.NodeView(n.name, n.capacity, n.capacity) for n in view.nodes.values() if n.alive
    ]
    seen: set[str] = set()
    fine: set[tuple[str | None, tuple[tuple[str, float], ...]]] = set()  # shapes that fit
    group_of = run.group_of
    # The pin and cost items of the last task found in ``fine``, the very objects: a task whose
    # are these is passed over without building and hashing its shape (a run built on the loop
    # is checked task by task, and its builder makes one ``cost_items`` per run of equal costs:
    # a W1 run's 10,000 tasks share one), as ``intake``'s probes are picked.
    last_pin: Any = fine  # (no task's: the first task's shape is looked up)
    last_items: Any = fine
    for rec in run.tasks.values() if ids is None else [run.tasks[i] for i in ids]:
        if rec.state == DONE and not finished:
            continue
        gid = group_of.get(rec.id) if group_of else None
        if gid is None:
            pin = rec.pin
            items = rec.cost_items
            if items is last_items and pin is last_pin:
                continue
            shape = (pin, items)
            if shape in fine:
                last_pin = pin
                last_items = items
                continue  # (10,000 tasks of one shape: one check)
            members = [rec.id]
        else:
            if gid in seen:
                continue
            seen.add(gid)
            members = [m for m in run.group_members[gid] if finished or run.tasks[m].state != DONE]
        need: dict[str, float] = {}
        for m in members:
            need = resources.add(need, run.tasks[m].cost)
        where = run.pin_of(rec.id)
        together = (
            f"functions {members} are collocated and together need" if len(members) > 1 else ""
        )
        if where is not None:
            node = view.nodes.get(where)
            if node is None or not node.alive:
                message = (
                    f"function {members[0]!r} is pinned to node {where!r}, which is no longer alive"
                )
                return Unschedulable(members[0], need, None, message)
            if not view._core.fits(need, node.capacity):
                message = (
                    f"{together or f'function {members[0]!r} needs'} {need}, but its node "
                    f"{where!r} has only {node.capacity}"
                )
                return Unschedulable(members[0], need, node.capacity, message)
            if gid is None:
                fine.add((where, rec.cost_items))
                if where == pin:
                    last_pin = pin
                    last_items = items
            continue
        if not placement.fits_some_capacity(need, views, view.backend):
            largest = placement.largest_node(need, views)
            cap = dict(largest.capacity) if largest is not None else None
            message = ""
            if together:
                message = f"{together} {need}, which no live node can ever hold; " + (
                    f"the largest node has {cap}" if cap else "no live node"
                )
            return Unschedulable(members[0], need, cap, message)
        if gid is None:
            fine.add((None, rec.cost_items))
            if pin is None:
                last_pin = pin
                last_items = items
    return None
