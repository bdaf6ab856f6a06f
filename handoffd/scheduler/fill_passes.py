# cython: annotation_typing=False
# (the annotations are for mypy; fill_passes.pxd beside it gives the compiled build its C types)
"""The placement pass's fill passes: ready tasks queued beyond free resources (DESIGN.md 3.3).

``ClusterView.place`` (``cluster_view``, whose docstring says when each runs) first places what
fits free resources now, then tops up node windows (``_fill_windows``: outstanding demand within
``window`` x a node's capacity and its time budget) and queues one wave on nodes our demand does
not fill (``_fill_waves``); both walk the ready queue the same way (``_walk``), the node picked by
the core's ``window_fill``. Pure state like the view it is the base of: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from handoffd._core import api as core
from handoffd.scheduler.demand import Demand
from handoffd.scheduler.durations import UNKNOWN_CHARGE, Durations
from handoffd.scheduler.ready import ReadyQueue
from handoffd.scheduler.room_index import NodeState
from handoffd.scheduler.run import RunState, TaskRecord

MAX_MISSES = 64  # consecutive ready tasks that cannot fit anywhere before the scan stops
#: A node's window is topped up only once its outstanding demand fell to this fraction of it.
LOW_WATER = 0.5
EPS = core.EPS

#: Dispatch ``rec`` of ``run`` to the named node (the scheduler's side of a placement decision);
#: True: to its window, beyond its free resources (it may wait in the node's queue).
DispatchFn = Callable[[RunState, TaskRecord, str, bool], None]
#: ``DispatchFn`` of each of the records, in order: tasks of one run and one cost object that a
#: walk sent one after another to the named node (a block); with the seconds the walk charged
#: each (``_walk``'s, a timed walk's), else None: the block's books read them there rather than
#: estimate each task again.
BlockFn = Callable[[RunState, list[TaskRecord], str, bool, "list[float] | None"], None]


def _wave_open(n: NodeState | None, outstanding: dict[str, dict[str, float]]) -> bool:
    """``n``'s capacity is above our outstanding demand there in some kind it has (by more than
    ``EPS``): ``_fill_waves`` may queue on it. (None, no live node: no.)"""
    if n is None:  # (compiled: a C field read of None would crash the daemon)
        return False
    load = outstanding.get(n.name)
    eps = EPS  # (compiled: C doubles, the node's capacity field and no empty dict a node)
    for k, q in n._capacity.items():
        if q > 0.0 and q - (load.get(k, 0.0) if load is not None else 0.0) > eps:
            return True
    return False


def _some_wave_fits(
    nodes: list[NodeState], outstanding: dict[str, dict[str, float]], shapes: Any
) -> bool:
    """Whether some queued shape (``ReadyQueue.shapes``' keys: (pin, cost items)) fits some of
    ``nodes`` as the core's one-wave ``window_fill`` would take it: every kind it needs (above 0)
    within the node's capacity and within that capacity minus our outstanding demand there, give
    or take ``EPS`` (``WindowFill._choose``'s test: a kind the node lacks has no room), a pinned
    shape on its node only. False: the walk would pick no node for any queued task, so neither
    the core's fill nor the walk is built (``_fill_waves``)."""
    eps = EPS
    for shape in shapes:
        pin = shape[0]
        items = shape[1]
        for n in nodes:
            if pin is not None and n.name != pin:
                continue
            load = outstanding.get(n.name)
            capacity = n._capacity
            fits = True
            for kind, q in items:
                if q > 0.0:
                    cap = capacity.get(kind, 0.0)
                    room = 0.0
                    if cap > 0.0:
                        room = cap - (load.get(kind, 0.0) if load is not None else 0.0)
                    if room + eps < q or cap + eps < q:
                        fits = False
                        break
            if fits:
                return True
    return False


def _seconds(durations: Durations, recs: list[TaskRecord]) -> list[float]:
    """The seconds the walk charges each of ``recs`` (``_walk``'s: the learned estimate, an
    unknown one as ``UNKNOWN_CHARGE``)."""
    out: list[float] = []
    for rec in recs:
        seconds = durations.estimate_keys(rec.duration_key, rec.shape_key)
        out.append(UNKNOWN_CHARGE if seconds < 0.0 else seconds)
    return out


class FillPasses(Demand):
    """The fill passes over the books (``Demand``); ``ClusterView`` sets the core's kernels."""

    def __init__(self, queue_seconds: float | None, window: int) -> None:
        super().__init__(queue_seconds, window)
        self._window_fill: Any = None
        self._below: Any = None
        # ``indexed`` False: every pass builds every node's room (the reference the index is
        # tested against).
        self.indexed = True
        # ``blocks`` False: the walks dispatch task by task even when given a block callable
        # (the reference the blocks are tested against).
        self.blocks = True

    def _fill_windows(
        self,
        alive: list[NodeState],
        ready: ReadyQueue,
        dispatch: DispatchFn,
        low_water: bool,
        block: BlockFn | None = None,
    ) -> None:
        """Dispatch ready tasks to node queues while each node's outstanding demand stays within
        ``window`` x its capacity; the node is chosen by the run's policy over that room (binpack:
        left fullest, spread: most room as a fraction, first_fit: first); a pinned task only to its
        node; never a task the node's capacity cannot hold; collocation groups are skipped.

        When it runs (``place``): in a pass that placed something on free resources, every node is
        topped up; when nothing is free anywhere (every pass while the cluster is saturated),
        ``low_water``: only a node whose outstanding demand fell to ``LOW_WATER`` of its window (on
        its fullest kind) is topped up, to the full window, so one dispatch message carries many
        tasks and a pass runs rarely instead of on every report. A node passed over still has more
        than ``LOW_WATER`` x ``window`` x its capacity of our work queued or running: it cannot
        idle on our account."""
        timed = self.queue_seconds is not None
        nodes = alive
        capacities = [n.capacity for n in alive] if not self.indexed else []
        if self.indexed:
            # (the set unordered first: whether some window opens does not depend on the order,
            # and the ordered list is rebuilt after each change of the set, which a busy owner's
            # every pass makes while most of its fill passes find nothing to fill)
            if not self._some_window_opens(self._rooms._fillable.members, low_water):
                return
            # Only nodes that can take part (``room_index``), and one that cannot, carrying the
            # largest capacity of each kind: the core scales binpack's score by it, as with all.
            # (the dict's own get: ``Nodes``' subscript is a Python-level slot call a node)
            nodes = [dict.get(self.nodes, name) for name in self._rooms.fillable()]  # type: ignore[misc]
            capacities = [n.capacity for n in nodes]
            capacities.append(self._rooms.top(alive))
        window = self.window
        loads = [self.outstanding.get(n.name, {}) for n in nodes]
        budgets = [self.budget(n.name) for n in nodes] if timed else None
        if self.indexed:
            loads.append({k: q * float(window) for k, q in capacities[-1].items()})  # no room
            if budgets is not None:
                budgets.append(0.0)
        fill = self._window_fill(
            capacities, loads, window, LOW_WATER if low_water else None, budgets
        )
        self._walk(fill, nodes, ready, dispatch, timed, block)

    def _some_window_opens(self, names: set[str], low_water: bool) -> bool:
        """Whether ``window_fill`` would open some of the live nodes ``names`` for a top-up:
        room in a kind it has and budget left (``may_take_part``: the same arithmetic), and,
        with ``low_water``, below the low-water mark (the core's ``below_low_water``, its test).
        The fillable set is as of the pass's start, and the free pass's dispatches may have
        closed every window in it since (one freed slot refilled: most passes of a busy owner):
        the core's pass and the walk were built then for no task."""
        below = self._below
        window = float(self.window)
        nodes = self.nodes
        for name in names:
            n = dict.get(nodes, name)
            if (
                n is not None
                and self.may_take_part(n)
                and (
                    not low_water
                    or below(n.capacity, self.outstanding.get(n.name, {}), window, LOW_WATER)
                )
            ):
                return True
        return False

    def _fill_waves(
        self,
        alive: list[NodeState],
        ready: ReadyQueue,
        dispatch: DispatchFn,
        block: BlockFn | None = None,
    ) -> None:
        """Queue ready tasks on nodes our outstanding demand does not fill, up to their capacity
        (see the module's docstring): the core's ``window_fill`` with a window of one wave and
        no time budget picks the node by the run's policy; pins and groups as in
        ``_fill_windows``. Nothing without a time budget."""
        if self.queue_seconds is None or self.window <= 1 or not ready:
            return
        nodes: list[NodeState] = []
        candidates = alive
        if self.indexed:
            # (the set unordered first, as ``_fill_windows``: no node has wave room now, the
            # walk below would find none, and the ordered list was rebuilt for nothing)
            for name in self._rooms._with_wave.members:
                if _wave_open(dict.get(self.nodes, name), self.outstanding):
                    break
            else:
                return
            # Only nodes with capacity above our demand somewhere (``room_index``), as of the
            # refresh at the start of this pass (``place``): since then only our dispatches
            # happened, which only raise our demand, so that set still holds every node that has
            # wave room now (a superset, checked against the books below). Refreshing again
            # recomputed the rooms of every node the pass dispatched to, which the next pass
            # recomputes anyway.
            candidates = [dict.get(self.nodes, name) for name in self._rooms.with_wave()]  # type: ignore[misc]
        outstanding = self.outstanding
        for n in candidates:
            if _wave_open(n, outstanding):
                nodes.append(n)
        if not nodes:
            return
        # (a node open in some kind may still have no room for any queued task: a saturated
        # owner's cpus full beside free memory, most of its passes; the fill and walk then
        # pick nothing)
        if not _some_wave_fits(nodes, outstanding, ready.shapes):
            return
        capacities = [n.capacity for n in nodes]
        loads = [self.outstanding.get(n.name, {}) for n in nodes]
        # One node that cannot take part, carrying the largest capacity of each kind: the core
        # scales binpack's score by it, as with all the live nodes (as ``_fill_windows``).
        top = self._rooms.top(alive)
        capacities.append(top)
        loads.append(dict(top))
        fill = self._window_fill(capacities, loads, 1, None, None)
        self._walk(fill, nodes, ready, dispatch, False, block)

    def _walk(
        self,
        fill: Any,
        nodes: list[NodeState],
        ready: ReadyQueue,
        dispatch: DispatchFn,
        timed: bool,
        block: BlockFn | None = None,
    ) -> None:
        """The fill passes' walk over the ready queue: each task (not in a group: its own pin only)
        to the node ``fill`` (the core's ``window_fill`` over ``nodes``) picks by its run's policy,
        charged its learned duration when ``timed``; a shape that found no room is skipped after,
        and the walk stops after ``MAX_MISSES`` misses in a row or once every queued shape missed.

        With ``block``, tasks picked one after another for one node, of one run and one cost
        object, are dispatched together by one ``block`` call, in the order picked, instead of one
        ``dispatch`` each: nothing the walk reads depends on them being sent yet (``fill`` keeps
        its own room, the queue's walk has popped them) except the queued shapes a miss looks at,
        so a miss sends the block first, as does a change of node, run or cost and the walk's end."""
        if not fill.left:
            return
        if not self.blocks:
            block = None
        durations = self.durations
        index = {n.name: i for i, n in enumerate(nodes)}
        misses = 0
        missed: set[tuple[Any, ...]] = set()  # room only shrinks during a pass
        recs: list[TaskRecord] = []  # the block: picked, not yet dispatched
        # The seconds each of ``recs`` was charged (a timed walk): the block's books (its charges,
        # the rebalance's check) read them, one estimate a task, not three. Nothing learns a
        # duration during a pass, so each is the estimate they would make.
        secs: list[float] | None = [] if timed else None
        to = -1  # its node's index
        of: RunState | None = None  # its run
        cost: Any = None  # its tasks' one cost object
        try:
            ready.begin()
            while True:
                item = ready.step()
                if item is None:
                    break
                run, rec = item
                if run.group_of and run.group_of.get(rec.id) is not None:
                    continue
                pin = rec.pin  # not in a group: its own pin only
                # (the shape tuple only once something missed: a walk that fits builds none)
                if missed and (pin, rec.cost_items) in missed:
                    misses += 1
                    if misses >= MAX_MISSES:
                        break
                    continue
                # (the record's keys: ``estimate(rec.id, rec.cost_items)``'s, built once)
                seconds = durations.estimate_keys(rec.duration_key, rec.shape_key) if timed else 0.0
                if seconds < 0.0:  # unknown: as long as UNKNOWN_CHARGE (see QUEUE_SECONDS)
                    seconds = UNKNOWN_CHARGE
                if pin is None:
                    chosen = fill.pick(rec.cost, -1, run.options.policy, seconds)
                else:  # (pinned to a node not alive: no room anywhere for it)
                    at = index.get(pin)
                    chosen = (
                        -1 if at is None else fill.pick(rec.cost, at, run.options.policy, seconds)
                    )
                if chosen < 0:
                    if recs:  # (the queued shapes below count what is dispatched)
                        block(of, recs, nodes[to].name, True, secs)  # type: ignore[misc,arg-type]
                        recs = []
                        secs = [] if timed else None
                    missed.add((pin, rec.cost_items))
                    misses += 1
                    if misses >= MAX_MISSES or missed.issuperset(ready.shapes):
                        break  # (every shape queued missed: the rest would too)
                    continue
                misses = 0
                if block is None:
                    # (discards it from the queue: the walk goes on)
                    dispatch(run, rec, nodes[chosen].name, True)
                else:
                    if recs and (chosen != to or run is not of or rec.cost is not cost):
                        block(of, recs, nodes[to].name, True, secs)  # type: ignore[misc,arg-type]
                        recs = []
                        secs = [] if timed else None
                    if not recs:
                        to = chosen
                        of = run
                        cost = rec.cost
                    recs.append(rec)
                    if secs is not None:
                        secs.append(seconds)
                    # The tasks after it of its cost and pin, as many as the core says its node
                    # takes one after another: one ``count`` and one ``follow`` a block, not a
                    # step and a pick a task (``ready.take_like``: only where the walk's order is
                    # its run's, so no other run's task is passed over).
                    if fill.left and not run.group_of and ready.like_next(run, rec):
                        more = fill.count(ready.size)
                        if more:
                            like = ready.take_like(run, rec, more)
                            if secs is not None:
                                charged = _seconds(durations, like)
                                took = fill.follow(len(like), charged)
                            else:
                                charged = None
                                took = fill.follow(len(like), None)
                            if took < len(like):  # (cuts ``like`` to ``took``)
                                ready.give_back(run, took)
                            recs.extend(like)
                            if secs is not None:
                                secs.extend(charged[:took])  # type: ignore[index]
                if not fill.left:
                    break
            if recs:
                block(of, recs, nodes[to].name, True, secs)  # type: ignore[misc,arg-type]
        finally:
            ready.restore()
