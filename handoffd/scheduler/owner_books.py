# cython: annotation_typing=False
# (the annotations are for mypy; owner_books.pxd beside it gives the compiled build its C types)
"""The owner's books kept through its tasks' moves, and its dispatches and cancels written out.

The base of ``OwnerScheduler`` (``scheduler/owner.py``), split from it by responsibility: the
scheduler's module keeps the decisions about a task (which event moves it where); this one keeps
what every move must update whatever caused it (``moved``, the runs' ``MoveListener`` hook): a
node's outstanding demand and unanswered dispatches (``ClusterView``), the ready queue, the lost
messages' watch, the rebalance queue and the replication feed; and what a placement or an ended
attempt writes to the outbox (``_dispatch``, ``_cancel``, ``_free``). Its fields are set by
``OwnerScheduler.__init__``.
"""

from __future__ import annotations

from typing import Any

from handoffd.scheduler import history as hist
from handoffd.scheduler.delays import DelayedTasks
from handoffd.scheduler.history import DISPATCHED_TO
from handoffd.scheduler.outbox import Outbox, Placed
from handoffd.scheduler.owner_queries import OwnerQueries
from handoffd.scheduler.ready import ReadyQueue
from handoffd.scheduler.rebalance import Rebalance
from handoffd.scheduler.run import _MOVES_LIMIT, RunState, TaskRecord
from handoffd.scheduler.states import (
    ASSIGNED,
    CANCELLED,
    DONE,
    FAILED,
    PENDING,
    READY,
    RUN_RUNNING,
    RUNNING,
)

__all__ = ["OwnerBooks"]

_REPLICATED = (DONE, FAILED, CANCELLED)  # (the moves a standby owner must know: ``moved``)
_NO_ROOM_SHAPES = 8  # (the shapes ``_intake`` remembers: a slice has few; more are asked anew)


class OwnerBooks(OwnerQueries):
    """The books ``OwnerScheduler`` keeps through task moves, and its outbox writes per task."""

    _now: float
    # Invariant: exactly the READY, not delayed tasks of RUNNING runs, in placement order.
    _ready: ReadyQueue
    _dirty: bool  # something changed that may let a ready task fit
    _out: Outbox
    _rebalance: Rebalance
    _delays: DelayedTasks
    on_change: Any
    # (run_id, task_id or a block's ids as a list, out to a node): ``ReplicationLog.tasks_changed``
    _changed: list[tuple[str, Any, bool]] | None
    # The (pin, cost) shapes ``could_take`` said no to, kept only while a run takes in a slice
    # of its tasks (``_intake``): there a move is PENDING -> READY, which changes the ready
    # queue but nothing ``could_take`` reads (nodes, demand, dispatches, budgets), so the answer
    # for a shape seen stands; None elsewhere.
    _no_room: list[tuple[str | None, dict[str, float]]] | None
    # The nodes whose demand left while a success table is applied, asked ``room_opened`` once
    # each at its end (``OwnerScheduler._on_all_succeeded``); None elsewhere (asked at once).
    _back_on: list[str] | None

    def _cancel(self, cancels: list[tuple[str, str, int]], run: RunState) -> None:
        for node, task_id, attempt in cancels:
            if self._view.alive(node):
                self._out.cancels.setdefault((node, run.run_id), []).append((task_id, attempt))

    def _free(self, run: RunState) -> None:
        """Delete the values the run no longer needs on their live holders (batched per node)."""
        for task_id, holders in run.take_freed() if run.freed else ():  # (none: no new list)
            for node in holders:
                if self._view.alive(node):
                    self._out.frees.setdefault((node, run.run_id), []).append(task_id)

    # -- bookkeeping through task moves --------------------------------------------------------------

    def moved(self, run: RunState, rec: TaskRecord, old: str, new: str) -> None:
        if new is DONE and (old is ASSIGNED or old is RUNNING):
            # An attempt's success (every task's last move, from ``successes.finish``): the
            # general case's string compares below, for its one answer (pointer tests: a
            # state that is equal but not the interned constant takes the general way).
            if self._changed is not None:
                self._changed.append((run.run_id, rec.id, False))
            elif self.on_change is not None:
                self.on_change(run.run_id, rec.id)
            if rec.node is not None:
                self._came_back(run, rec, rec.node)
            return
        # (each test once, as string compares: a state is one of the module's interned
        # constants, so a compiled compare is a pointer test, where a tuple search was not)
        was_out = old == ASSIGNED or old == RUNNING  # (``ACTIVE``)
        is_out = new == ASSIGNED or new == RUNNING
        # Attempts that start and end are replicated too: task history survives a takeover.
        if (
            was_out
            or is_out
            or old == DONE
            or new == DONE  # (``_REPLICATED``)
            or new == FAILED
            or new == CANCELLED
        ):
            if self._changed is not None:
                self._changed.append((run.run_id, rec.id, is_out))
            elif self.on_change is not None:
                self.on_change(run.run_id, rec.id)
        if was_out and not is_out and rec.node is not None:
            self._came_back(run, rec, rec.node)
        if is_out and not was_out and rec.node is not None:
            self._view.went_out(rec.node, rec)
            self._lost.went_out(run.run_id, rec.id, self._now)
        if old == READY:
            self._ready.discard(rec)
        if new == READY and not rec.delayed:
            self._enqueue(run, rec)

    def succeeded_on(self, run: RunState, node: str, recs: list[TaskRecord]) -> None:
        """``moved(run, rec, old, DONE)`` for each of ``recs``, in order: attempts out on ``node``
        that succeeded in one report table (``successes.apply``, which calls this before anything
        of the table reads the books: at its end and before a task's consumers turn ready). The
        node's demand is walked once for them all (the lost messages' watch reads the records'
        states: nothing to write); whether room opened is asked once, of the books after the
        last (room only grows as demand leaves, so that answer is what any of the one-by-one
        answers would have made of ``_dirty``)."""
        if not recs:
            return
        run_id = run.run_id
        changed = self._changed
        if changed is not None:  # (one entry for the table: its ids, ``ReplicationLog``'s block)
            changed.append((run_id, [rec.id for rec in recs], False))
        elif self.on_change is not None:
            for rec in recs:
                self.on_change(run_id, rec.id)
        self._view.came_back_all(node, recs)
        if self._rebalance.queued:
            for rec in recs:
                self._rebalance.came_back(node, (run_id, rec.id, rec.attempt))
        if not self._dirty and self._view.room_opened(node, self._ready):
            self._dirty = True

    def _came_back(self, run: RunState, rec: TaskRecord, node: str) -> None:
        """``rec``'s attempt on ``node`` is no longer out (``moved``): its demand leaves the node."""
        self._view.came_back(node, rec)
        if self._rebalance.queued:
            self._rebalance.came_back(node, (run.run_id, rec.id, rec.attempt))
        if not self._dirty:
            back = self._back_on
            if back is None:
                if self._view.room_opened(node, self._ready):
                    self._dirty = True
            elif not back or back[-1] != node:  # (asked at the table's end: ``_on_all_succeeded``)
                back.append(node)

    def _enqueue(self, run: RunState, rec: TaskRecord) -> None:
        if run.state == RUN_RUNNING and self._ready.push(run, rec) and not self._dirty:
            # (``run.pin_of`` only when the run has groups: its task look-up for a record in hand)
            pin = rec.pin
            if pin is None and run.group_of:
                pin = run.pin_of(rec.id)
            self._ask_room(pin, rec.cost)

    def _intake(self, run: RunState, now: float, limit: Any, first: bool) -> bool:
        """``run.start`` (``first``) or ``run.take_in`` at ``now`` for ``limit`` tasks, with
        ``could_take`` asked once a shape (``_no_room``); True if the run has more to take in."""
        self._no_room = []
        try:
            if run.mover is not self or run.listener is not None:
                return run.start(now, limit) if first else run.take_in(now, limit)
            if first:
                run.start(now, 0)  # (its stamps and an empty run's end: no task taken in)
            return self._take_slice(run, now, limit)
        finally:
            self._no_room = None

    def _take_slice(self, run: RunState, now: float, limit: Any) -> bool:
        """``run.take_in(now, limit)`` for a run whose mover is this owner and which has no
        listener: each PENDING -> READY move (``RunState.move``) and this owner's books for it
        (``moved``: the ready queue) written out for the one case, in their order, the slice's
        moves made as one block (``_ready_block``)."""
        ordered, deps = run.ordered, run.effective_deps
        size = len(ordered)
        end = size if limit is None else min(size, run.intake + limit)
        block: list[TaskRecord] = []
        for at in range(run.intake, end):
            rec = ordered[at]
            if deps[rec.id]:
                continue
            if rec.state is not PENDING:
                if rec.state == PENDING:  # (an equal, not the interned, state: the generic move)
                    if block:  # (what came before it first, as one by one)
                        self._ready_block(run, block, now)
                        block = []
                    run.move(rec, READY, now, "submitted")
                continue
            block.append(rec)
        if block:
            self._ready_block(run, block, now)
        run.intake = end
        return end < size

    def _ready_block(self, run: RunState, recs: list[TaskRecord], now: float) -> None:
        """The PENDING -> READY moves of ``recs`` (PENDING, of a run whose mover is this owner
        and which has no listener), in order: each record's state and history row in one loop
        (one row tuple for all: they are alike), the run's tally and counters once, the ready
        queue's pushes as one (``ReadyQueue.push_all``) and ``could_take`` asked once a shape
        newly queued, as ``_enqueue`` of each asked it (its answer is the view's, which these
        moves do not change)."""
        row = (now, PENDING, READY, "submitted", None, None)
        for rec in recs:
            rec.state = READY
            rec.delayed = False
            moves = rec.moves
            moves.extend(row)
            if len(moves) > _MOVES_LIMIT:
                del moves[: len(moves) - _MOVES_LIMIT]
        k = len(recs)
        tally = run.tally
        tally[PENDING] -= k
        tally[READY] += k
        c = run.counters
        if c is not None:
            c[READY] = c.get(READY, 0) + k
        # (``moved``: nothing to replicate, nothing out or back; ``_enqueue`` of each)
        if run.state != RUN_RUNNING:
            return
        if run.group_of:  # (a group member's pin is its group's: ``_enqueue`` asks it)
            for rec in recs:
                self._enqueue(run, rec)
            return
        for rec in self._ready.push_all(run, recs):
            if self._dirty:
                return
            self._ask_room(rec.pin, rec.cost)

    def _ask_room(self, pin: Any, cost: Any) -> None:
        """``_dirty`` from ``could_take(pin, cost)`` for a task newly queued (``_enqueue``),
        once a (pin, cost) shape while a slice is taken in (``_no_room``)."""
        no_room = self._no_room
        if no_room is not None:
            for seen in no_room:
                if seen[0] == pin and (seen[1] is cost or seen[1] == cost):
                    return
        self._dirty = self._view.could_take(pin, cost)
        if no_room is not None and not self._dirty and len(no_room) < _NO_ROOM_SHAPES:
            no_room.append((pin, cost))

    # (Callables handed to the parts and runs are these plain methods: a compiled cpdef method
    # taken as a value does not convert; each calls its typed twin.)

    def _enqueue_later(self, run: RunState, rec: TaskRecord) -> None:
        self._enqueue(run, rec)

    def _send(self, run: RunState, rec: TaskRecord, node: str, queued: bool = False) -> None:
        self._dispatch(run, rec, node, queued)

    def _send_block(
        self,
        run: RunState,
        recs: list[TaskRecord],
        node: str,
        queued: bool = False,
        seconds: list[float] | None = None,
    ) -> None:
        self._dispatch_block(run, recs, node, queued, seconds)

    def _alive(self, name: str) -> bool:
        return self._view.alive(name)

    def _view_changed(self) -> None:
        self._dirty = True
        if self._delays.held:
            self._delays.view_changed()

    # -- placement ---------------------------------------------------------------------------------

    def _place(self) -> None:
        if not self._dirty:
            return
        if self._ready:
            self._dirty = False
            self._view.place(self._ready, self._send, self._send_block)
        if self._rebalance.queued:  # free left where nothing ready went: move queued work there
            self._rebalance.offer()

    def _dispatch(self, run: RunState, rec: TaskRecord, node: str, queued: bool = False) -> None:
        now = self._now
        if rec.state is READY and run.mover is self and run.listener is None:
            self._assign(run, rec, node, now)
        else:  # (anything else: the run's own move, its table's check and listener included)
            run.assign(rec, node, now)
        if queued:
            self._rebalance.sent(run, rec, node)
        spec = rec.spec
        cost = rec.cost
        task_id = rec.id
        attempt = rec.attempt
        self._view.sent(node, run.run_id, task_id, attempt, cost, now)
        self._lost.sent(node)
        # The task appended to its (node, run) batch's columns (``outbox.Placed``): no item
        # object a task; what consecutive tasks of one function share is kept once a group.
        dispatches = self._out.dispatches  # (a look-up: ``setdefault`` made a batch every time)
        key = (node, run.run_id)
        placed = dispatches.get(key)
        if placed is None:
            placed = dispatches[key] = Placed()
        placed.add(
            task_id,
            attempt,
            spec.payload,
            cost,
            spec.argument_inclusion,
            spec.timeout,
            run.input_refs(task_id) if spec.deps else (),
            spec.priority,
            rec.upward_rank,
        )

    def _dispatch_block(
        self,
        run: RunState,
        recs: list[TaskRecord],
        node: str,
        queued: bool = False,
        seconds: list[float] | None = None,
    ) -> None:
        """``_dispatch(run, rec, node, queued)`` for each of ``recs`` in order: tasks a fill
        pass's walk sent one after another to ``node``, every one's ``spec.cost`` one object (a
        block: ``FillPasses._walk``). Each part of the books is written for the whole block in
        one call (``_assign_block``, the rebalance's, the unanswered dispatches', the outbox's
        columns) instead of the chain of calls a task: every part keeps its own state, and what
        each writes a task, and in which order, is what the one-by-one chain wrote. ``seconds``:
        each task's learned estimate as the walk charged it (an unknown one ``UNKNOWN_CHARGE``),
        read by the charges and the rebalance's check instead of an estimate of each there."""
        if not recs:
            return
        if run.mover is not self or run.listener is not None:
            for rec in recs:  # (the run's own moves: its table's check and listener)
                self._dispatch(run, rec, node, queued)
            return
        for rec in recs:
            if rec.state is not READY:
                for rec in recs:
                    self._dispatch(run, rec, node, queued)
                return
        now = self._now
        first = recs[0]
        cost = first.cost
        self._assign_block(run, recs, node, now, cost, seconds)
        if queued:
            self._rebalance.sent_all(run, recs, node, seconds)
        run_id = run.run_id
        self._view.sent_all(node, run_id, recs, cost, now)
        self._lost.sent(node)
        dispatches = self._out.dispatches
        key = (node, run_id)
        placed = dispatches.get(key)
        if placed is None:
            placed = dispatches[key] = Placed()
        placed.add_all(run, recs)

    def _assign_block(
        self,
        run: RunState,
        recs: list[TaskRecord],
        node: str,
        now: float,
        cost: dict[str, float],
        seconds: list[float] | None = None,
    ) -> None:
        """``_assign(run, rec, node, now)`` for each of ``recs`` (READY, of a run whose mover is
        this owner and which has no listener; ``cost`` every one's ``spec.cost``): each record's
        own move and history row in one loop, the run's tally and counters once for all, the
        node's demand and the lost messages' watch once a block (``Demand.went_out_all``,
        ``LostMessages.went_out_all``), the ready queue's discards last, as each task's were."""
        floor = run.attempt_floor
        placed = run.placed
        group_of = run.group_of
        wall = now + run.wall_offset
        changed = self._changed
        on_change = self.on_change
        run_id = run.run_id
        # The history row ``hist.opened`` appends and the move row, made once for the block's
        # tasks of one attempt number (a W1 block: all of them) and shared by their records:
        # a row is a tuple of atoms that is replaced, never changed, so each record's lists hold
        # what ``opened`` and the move's own tuple gave them, without a 13-field tuple, a
        # 6-field tuple and two floats a task.
        row_of = -1  # the attempt number ``row`` and ``step`` are of (none yet: attempts are >= 1)
        row: Any = None
        step: Any = None
        ids: list[str] = []  # (the block's ids, read once: the feed's entry and the watch's)
        for rec in recs:
            # (``RunState.assign``)
            attempt = max(rec.attempt, floor) + 1
            rec.attempt = attempt
            rec.node = node
            task_id = rec.id
            ids.append(task_id)
            placed[task_id] = node
            if group_of:
                gid = group_of.get(task_id)
                if gid is not None:
                    run.group_node[gid] = node
            if attempt != row_of:
                row_of = attempt
                row = hist.new_row(attempt, node, wall)
                step = (now, READY, ASSIGNED, DISPATCHED_TO, node, attempt)
            hist._append(rec.attempts, row)  # (``hist.opened(rec.attempts, attempt, node, wall)``)
            # (``RunState.move``: READY -> ASSIGNED is in the table; no attempt row ends or starts)
            rec.state = ASSIGNED
            rec.delayed = False
            moves = rec.moves
            moves.extend(step)
            if len(moves) > _MOVES_LIMIT:
                del moves[: len(moves) - _MOVES_LIMIT]
            # (``moved``: a move out to a node is replicated; the block's ids as one entry below)
            if changed is None and on_change is not None:
                on_change(run_id, task_id)
        if changed is not None:
            changed.append((run_id, ids, True))
        k = len(recs)
        c = run.counters
        if c is not None:
            key = run._policy_key
            c[key] = c.get(key, 0) + k
            c[ASSIGNED] = c.get(ASSIGNED, 0) + k
        tally = run.tally
        tally[READY] -= k
        tally[ASSIGNED] += k
        # (``moved``: it goes out; it leaves the queue)
        self._view.went_out_all(node, recs, cost, seconds)
        self._lost.went_out_all(run_id, tuple(ids), now)
        self._ready.discard_all(recs)

    def _assign(self, run: RunState, rec: TaskRecord, node: str, now: float) -> None:
        """``run.assign(rec, node, now)`` for a READY ``rec`` of a run whose mover is this owner
        and which has no listener: its READY -> ASSIGNED move (``RunState.move``) and this
        owner's books for it (``moved``) written out for the one case, in their order. The
        owner's most common move, once a dispatch: the generic move's table look-up and its
        state compares, twice over (the run's and the books'), were most of its cost."""
        # (``RunState.assign``)
        attempt = max(rec.attempt, run.attempt_floor) + 1
        rec.attempt = attempt
        rec.node = node
        task_id = rec.id
        run.placed[task_id] = node
        if run.group_of:
            gid = run.group_of.get(task_id)
            if gid is not None:
                run.group_node[gid] = node
        hist.opened(rec.attempts, attempt, node, now + run.wall_offset)
        c = run.counters
        if c is not None:
            key = run._policy_key
            c[key] = c.get(key, 0) + 1
        # (``RunState.move``: READY -> ASSIGNED is in the table; no attempt row ends or starts)
        rec.state = ASSIGNED
        rec.delayed = False
        tally = run.tally
        tally[READY] -= 1
        tally[ASSIGNED] += 1
        moves = rec.moves
        moves.extend((now, READY, ASSIGNED, DISPATCHED_TO, node, attempt))
        if len(moves) > _MOVES_LIMIT:
            del moves[: len(moves) - _MOVES_LIMIT]
        if c is not None:
            c[ASSIGNED] = c.get(ASSIGNED, 0) + 1
        # (``moved``: a move out to a node is replicated; it goes out; it leaves the queue)
        if self._changed is not None:
            self._changed.append((run.run_id, task_id, True))
        elif self.on_change is not None:
            self.on_change(run.run_id, task_id)
        self._view.went_out(node, rec)
        self._lost.went_out(run.run_id, task_id, now)
        self._ready.discard(rec)
