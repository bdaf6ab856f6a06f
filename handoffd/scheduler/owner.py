# cython: annotation_typing=False
# (the annotations are for mypy; owner.pxd beside it gives the compiled build its C types)
"""The owner's scheduler: every run this node owns, the task moves its nodes report, and placement.

Pure state machine (STYLE.md principle 1): ``handle(event, now)`` returns instructions and never awaits,
sends or reads a clock. The daemon turns instructions into messages and feeds replies back as events.

Parts composed here, each keeping its own state: the runs we own (``owned``), the cluster view and
the placement pass over it with the dispatch window (``cluster_view``), the ready queue (``ready``),
READY tasks held back after a refusal or an error (``delays``), messages lost while a node stays
ALIVE (``lost``), failover (``takeover``), releases (``release``), and the outbox they write to (``outbox``). A part gets what
it needs at construction (sibling parts, callables), never the scheduler. This module keeps every
decision about a task. The executing node's ledger has the last word: a refused task goes back to
READY. A node's outstanding demand (``ClusterView.outstanding``) follows task moves through the run's
mover (``moved``, in the base ``owner_books`` with the dispatches and cancels written out) and is
checked by ``validate()``.

Decisions: a task pinned to a node that is lost (DEAD or LEFT) fails its run with ``Unschedulable``
rather than waiting for a rejoin that may never come (the client can resubmit); likewise when a ready
task no longer fits any live node's capacity. Reports with a stale attempt, from the wrong node, or for
unknown runs are ignored (at-least-once execution, exactly-once acceptance).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from handoffd.errors import HandoffError, TaskFailed, ValidationError
from handoffd.scheduler import history, intake, owner_requests, placement, successes
from handoffd.scheduler.cluster_view import (
    QUEUE_SECONDS,
    WINDOW,
    ClusterView,
    NodeState,
)
from handoffd.scheduler.delays import REFUSAL_BACKOFF, DelayedTasks
from handoffd.scheduler.events import (
    FRAME_TOO_LARGE,
    CancelRequested,
    DispatchAnswered,
    Event,
    FreeResults,
    Instruction,
    NodeUpdate,
    PeerRestarted,
    ResultsReleased,
    RunFinished,
    RunProbed,
    RunSubmitted,
    StartTimer,
    SubmissionAccepted,
    SubmissionRejected,
    TaskErrored,
    TasksSucceeded,
    TaskStarted,
    TaskSucceeded,
    TimerFired,
    ValuesWanted,
    WithdrawAnswered,
)
from handoffd.scheduler.lost import ACK_TIMEOUT, PROBE_INTERVAL, LostMessages
from handoffd.scheduler.outbox import Outbox
from handoffd.scheduler.owned import OwnedRuns, OwnedRunStatus
from handoffd.scheduler.owner_books import OwnerBooks
from handoffd.scheduler.owner_timers import on_timer
from handoffd.scheduler.ready import ReadyQueue
from handoffd.scheduler.rebalance import Rebalance
from handoffd.scheduler.release import Releases
from handoffd.scheduler.room_index import ABSENT, FREED, SHRUNK
from handoffd.scheduler.run import (
    ACTIVE,
    ASSIGNED,
    DONE,
    EXTRA_LOSSES,
    FAILED,
    READY,
    RUN_DONE,
    RUN_FAILED,
    RUN_RUNNING,
    RUNNING,
    RunState,
    TaskRecord,
)
from handoffd.scheduler.takeover import Adoptable, Takeover

__all__ = ["ACK_TIMEOUT", "PROBE_INTERVAL", "REFUSAL_BACKOFF", "OwnedRunStatus", "OwnerScheduler"]

log = logging.getLogger("handoffd.scheduler")


class OwnerScheduler(OwnerBooks):
    """Schedules every run this node owns over its view of the cluster."""

    def __init__(
        self,
        node_name: str,
        *,
        now: float,
        term: int = 0,
        backend: str | None = None,
        window: int = WINDOW,
        probe_interval: float = PROBE_INTERVAL,
        queue_seconds: float | None = QUEUE_SECONDS,
        ack_timeout: float = ACK_TIMEOUT,
    ) -> None:
        self.node_name = node_name
        self.term = term  # ownership term: nodes fence dispatches from a lower one
        self._now = now
        self._backend = backend
        # Nodes, their outstanding demand (kept in step with task moves by moved) and our
        # unanswered dispatches.
        self._view = ClusterView(window=window, backend=backend, queue_seconds=queue_seconds)
        self._owned = OwnedRuns()
        self._live = self._owned.live
        # Invariant: exactly the READY, not delayed tasks of RUNNING runs, in placement order.
        self._ready = ReadyQueue()
        self._dirty = False  # something changed that may let a ready task fit
        self._out = Outbox()
        self._lost = LostMessages(
            self._view,
            self._out,
            run_of=self._owned.live.get,
            count_loss=self._count_loss,
            adopt=self._adopt,
            probe_interval=probe_interval,
            ack_timeout=ack_timeout,
        )
        self._rebalance = Rebalance(
            self._view,
            self._out,
            run_of=self._owned.live.get,
            give_back=self._give_back,
            held=self._ready.held,
        )
        self._delays = DelayedTasks(
            self._out, run_of=self._owned.live.get, enqueue=self._enqueue_later
        )
        self._releases = Releases(self._owned, self._view, self._ready, self._out)
        self._takeover = Takeover(
            alive=self._alive,
            own_as_is=self._own_as_is,
            lose_in_run=self._lose_in_run,
            recompute=self._recompute,
            count_loss=self._count_loss,
            order=self.order,
        )
        # Told (run_id, task_id) of every move that a standby owner must know (into or out of
        # DONE, into FAILED/CANCELLED): the replication log's feed. ``on_changes``, when set, is
        # told the moves of a whole ``handle_batch`` at its end, as (run_id, task_id, out to a
        # node) in order: one call per batch, not two Python calls per task; a dispatch block's
        # or a success table's moves as one entry, its ids a list (``replication.log.each_move``).
        self.on_change: Callable[[str, str], None] | None = None
        self.on_changes: Callable[[list[tuple[str, Any, bool]]], None] | None = None
        self._changed: list[tuple[str, Any, bool]] | None = None  # (only inside handle_batch)
        self._no_room: list[tuple[str | None, dict[str, float]]] | None = None  # (``_intake``)
        self._back_on: list[str] | None = None  # (``_on_all_succeeded``)
        self.wall_offset = 0.0  # wall clock minus ``now``: the shell sets it (task history)
        # Task moves of every run we owned (/metrics), a plain dict (``RunState.counters``).
        self.counters: dict[str, int] = {}

    # -- entry points ------------------------------------------------------------------------------

    def handle(self, event: Event, now: float) -> list[Instruction]:
        """Apply one event; return the instructions it causes."""
        return self.handle_batch((event,), now)

    def handle_batch(self, events: Iterable[Event], now: float) -> list[Instruction]:
        """Apply events in order, then place once: a daemon that drains its sockets batches for free."""
        self._now = max(self._now, now)
        tell = self.on_changes
        if tell is not None:
            self._changed = []
        try:
            for event in events:
                self._apply(event)
            self._place()
            return self._out.take(self._live, self.term)
        finally:  # (what moved before an error is still told, as one by one it was)
            changed, self._changed = self._changed, None
            if changed and tell is not None:
                tell(changed)

    def restore_run(
        self, data: dict[str, Any] | RunState | Adoptable, now: float, term: int | None = None
    ) -> list[Instruction]:
        """Adopt a replicated run (plain data or the run built from it; at ``term``: default the
        scheduler's); tasks on nodes we do not see alive are treated as lost (``Takeover.restore``)."""
        self._now = max(self._now, now)
        self._takeover.restore(data, self.term if term is None else term)
        self._dirty = True
        self._place()
        return self._out.take(self._live, self.term)

    def step_down(self, run_id: str) -> bool:
        """Drop a run another owner took over (higher term): no cancels, its attempts are the new
        owner's now. False if we did not own it."""
        return self._drop(run_id)

    def hold_dispatch(self, run_id: str, held: bool, now: float) -> list[Instruction]:
        """The run's dispatch lease lapsed (``held``) or holds again (``replication/lease.py``):
        while held none of its tasks is placed (they stay READY and queued: a task lost meanwhile
        waits too); its running attempts go on and their reports are taken as usual."""
        self._now = max(self._now, now)
        held_runs = self._ready.held
        if held:
            if run_id in self._owned.live:
                held_runs.add(run_id)
        elif run_id in held_runs:
            held_runs.discard(run_id)
            self._dirty = True
        self._place()
        return self._out.take(self._live, self.term)

    def _apply(self, event: Event) -> None:
        # A daemon's common events by their exact type first (a pointer test each), the rest
        # (and any subclass) by the ``isinstance`` chain: a node update and a dispatch's answer
        # went through two and five ``isinstance`` calls, which walk the type's bases on a miss.
        if type(event) is TasksSucceeded:
            self._on_all_succeeded(event)
        elif type(event) is NodeUpdate:
            self._on_node_update(event)
        elif type(event) is DispatchAnswered:
            self._on_replied(event)
        elif type(event) is TaskSucceeded:
            self._on_succeeded(event)
        elif type(event) is RunSubmitted:  # (a one-task run's submission and release: the
            self._on_submit(event)  # chain's 11th and 13th test, 27 ``isinstance`` a run)
        elif type(event) is ResultsReleased:
            self._releases.released(event)
        elif isinstance(event, TasksSucceeded):
            self._on_all_succeeded(event)
        elif isinstance(event, NodeUpdate):
            self._on_node_update(event)
        elif isinstance(event, TaskSucceeded):
            self._on_succeeded(event)
        elif isinstance(event, TaskStarted):
            self._on_started(event)
        elif isinstance(event, DispatchAnswered):
            self._on_replied(event)
        elif isinstance(event, RunProbed):
            self._lost.probed(event)
        elif isinstance(event, PeerRestarted):
            self._lost.restarted(event.name, self._now)
        elif isinstance(event, WithdrawAnswered):
            self._rebalance.answered(event)
        elif isinstance(event, TaskErrored):
            self._on_errored(event)
        elif isinstance(event, TimerFired):
            on_timer(self, event)
        elif isinstance(event, RunSubmitted):
            self._on_submit(event)
        elif isinstance(event, CancelRequested):
            owner_requests.on_cancel(self, event)
        elif isinstance(event, ResultsReleased):
            self._releases.released(event)
        elif isinstance(event, ValuesWanted):
            owner_requests.on_values_wanted(self, event)
        else:
            raise TypeError(f"not a scheduler event: {event!r}")

    def forget(self, run_id: str) -> None:
        """Drop a finished run entirely (after retention)."""
        run = self._owned.forget(run_id)
        self._ready.held.discard(run_id)
        if run is not None:
            self._ready.drop_run(run)

    # -- owning runs (a submission, a takeover) ------------------------------------------------------

    def _own(self, run: RunState) -> None:
        run.wall_offset = self.wall_offset
        run.counters = self.counters
        self._owned.add(run)
        run.mover = self

    def _own_as_is(self, run: RunState, active: Any = None, queued: Any = None) -> None:
        """Own ``run`` taken over, tasks as they are (``active``, ``queued``: ``takeover.prepare``)."""
        self._own(run)
        for rec in run.tasks.values() if active is None else active:
            if rec.state in ACTIVE and rec.node is not None:
                self._view.went_out(rec.node, rec)
                self._lost.went_out(run.run_id, rec.id, self._now)
            if active is None and rec.state == READY and not rec.delayed:
                self._enqueue(run, rec)
        self._ready.adopt(run, queued)

    def _drop(self, run_id: str) -> bool:
        """Forget a run we no longer own, without cancelling anything; False if it was not ours."""
        run = self._owned.pop(run_id)
        if run is None:
            return self._owned.pop_released(run_id)
        run.mover = None
        for rec in run.tasks.values():
            if rec.state in ACTIVE and rec.node is not None:
                self._view.came_back(rec.node, rec)
        self._delays.drop_run(run_id, run.tasks)
        self._lost.drop_run(run_id, run.tasks)
        self._rebalance.drop_run(run_id)
        self._ready.drop_run(run)
        self._ready.held.discard(run_id)
        self._view.forget_run(run_id)
        self._dirty = True
        return True

    # -- events ------------------------------------------------------------------------------------

    def order(
        self, priority: Any, consumers: Any, estimate: Any, size: Any
    ) -> tuple[list[int], list[float]]:
        return placement.order(priority, consumers, estimate, size, backend=self._backend)

    def _on_submit(self, ev: RunSubmitted) -> None:
        if ev.run_id in self._owned:
            # A retried submission (its answer was lost): idempotent.
            self._out.direct.append(SubmissionAccepted(ev.run_id))
            return
        try:
            run = intake.accept(ev, self.term, self.order, self._view)
        except HandoffError as error:
            self._out.direct.append(SubmissionRejected(ev.run_id, error))
            return
        self._own(run)
        self._out.direct.append(SubmissionAccepted(ev.run_id))
        if self._intake(run, self._now, intake.first_slice(run), True):
            self._out.direct.append(StartTimer(intake.intake_key(run.run_id), 0.0))
        if run.state == RUN_DONE:
            self._out.direct.append(RunFinished(ev.run_id, "DONE"))
        elif ev.options.timeout is not None:
            self._out.direct.append(StartTimer(("deadline", ev.run_id), float(ev.options.timeout)))

    def _take_in(self, run_id: str) -> None:
        """The next slice of a big run's tasks into the ready queue (``scheduler.intake``)."""
        run = self._owned.live.get(run_id)
        if (
            run is not None
            and run.state == RUN_RUNNING
            and self._intake(run, self._now, intake.SLICE, False)
        ):
            self._out.direct.append(StartTimer(intake.intake_key(run_id), 0.0))

    def _on_node_update(self, ev: NodeUpdate) -> None:
        if ev.alive:
            # A live node's report: its row written and its room marked in one C call
            # (``RoomIndex.report``), unless the node is new or back from the dead.
            changed = self._view._rooms.report(
                self._view.nodes, ev.name, ev.address, ev.capacity, ev.resource_version, ev.free
            )
            if changed != ABSENT:
                if changed & FREED:  # (a report with the same free changes nothing here)
                    self._dirty = True  # (``_view_changed`` written out: a Python call a report)
                    if self._delays.held:  # (nothing held: no call)
                        self._delays.view_changed()
                if changed & SHRUNK:
                    owner_requests.check_all_fit(self)
                return
        node = self._view.nodes.get(ev.name)
        if not ev.alive:
            if node is None:
                self._view.nodes[ev.name] = NodeState(
                    ev.name, ev.address, False, dict(ev.capacity), {}, ev.resource_version
                )
            elif node.alive:
                node.alive = False
                self._lose(ev.name)
            return
        # New, or back from the dead (its version counter may have restarted): take it all.
        self._view.nodes[ev.name] = NodeState(
            ev.name, ev.address, True, dict(ev.capacity), dict(ev.free), ev.resource_version
        )
        self._view.forget_unacked(ev.name)
        self._view_changed()

    def _on_replied(self, ev: DispatchAnswered) -> None:
        run_id, sender, refused = ev.run_id, ev.node, ev.refused
        run = self._live.get(run_id)
        running = run is not None and run.state == RUN_RUNNING
        # (the answered dispatches' entries in one call: their cost taken back once a batch)
        self._view.answered_all(sender, run_id, ev.accepted)
        if running and run is not None:  # (``run is not None``: for mypy, a C test)
            for task_id, attempt in ev.accepted:
                rec = run.tasks.get(task_id)
                # (``_superseded`` written out: a Python-level static call an accepted task)
                if rec is not None and (
                    rec.attempt != attempt
                    or rec.node != sender
                    or (rec.state != ASSIGNED and rec.state != RUNNING and rec.state != DONE)
                ):
                    # A late yes to an attempt we gave up on (its answer timed out): the node would
                    # run it for nothing; its report would be stale. Outstanding demand never counted it.
                    self._out.cancels.setdefault((sender, run_id), []).append((task_id, attempt))
        if not refused:  # (all accepted: nothing below applies)
            # The answer took its dispatches' cost off the sender's pending, and changed
            # nothing else a pass reads: a pass runs only when that may let placement do
            # something there (``room_opened``, as for demand that came back), or the rebalance
            # may move queued work. In W1 the sender is full when it answers (its free already
            # holds what it accepted), so the pass an answer ran found the same room and placed
            # nothing.
            if not self._dirty and (
                self._rebalance.queued or self._view.room_opened(sender, self._ready)
            ):
                self._dirty = True
            return
        self._dirty = True
        seen_at: dict[str, int] = {}
        for task_id, attempt, _ in refused:
            sent = self._view.answered(sender, (run_id, task_id, attempt))
            if sent is not None:
                seen_at[task_id] = sent[1]
        node = self._view.nodes.get(sender)
        version_now = node.version if node is not None else -1
        if run is None or run.state != RUN_RUNNING:
            return
        for task_id, attempt, reason in refused:
            rec = run.tasks.get(task_id)
            if rec is None or rec.state != ASSIGNED or rec.attempt != attempt or rec.node != sender:
                continue
            if reason.startswith(FRAME_TOO_LARGE):  # no node of this cluster's limits can read it
                message = reason[len(FRAME_TOO_LARGE) :].lstrip(": ")
                self._end_run(run, RUN_FAILED, ValidationError(FRAME_TOO_LARGE, task_id, message))
                return
            # Refused on a view the node has since refreshed: re-place now. Otherwise hold the task
            # until the view changes or a short timer fires, so a refusal never spins.
            fresh = version_now > seen_at.get(task_id, version_now)
            cause = f"refused by {sender}: {reason}"
            self._cancel(run.make_ready(rec, self._now, cause, delayed=not fresh), run)
            if rec.state == READY and rec.delayed:
                self._delays.refused(run, rec)

    def _current(
        self, run_id: str, task_id: str, attempt: int, node: str
    ) -> tuple[RunState, TaskRecord] | None:
        """The run and task a report is about, or None when it is stale or unknown. A report also
        answers its dispatch (the node got it, even if its reply was lost)."""
        if self._view.answered(node, (run_id, task_id, attempt)) is not None:
            self._dirty = True  # its cost no longer holds the node in our view (the reply's job)
        run = self._live.get(run_id)
        if run is None or run.state != RUN_RUNNING:
            return None
        rec = run.tasks.get(task_id)
        if rec is None or rec.state not in ACTIVE or rec.attempt != attempt or rec.node != node:
            return None
        return run, rec

    def _on_started(self, ev: TaskStarted) -> None:
        found = self._current(ev.run_id, ev.task_id, ev.attempt, ev.node)
        if found is not None and found[1].state == ASSIGNED:
            found[0].move(found[1], RUNNING, self._now, history.STARTED_ON, False, ev.node)

    def _on_succeeded(self, ev: TaskSucceeded) -> None:
        self._succeeded(ev.run_id, ev.task_id, ev.attempt, ev.node, ev.size, ev.value, ev.duration)

    def _on_all_succeeded(self, ev: TasksSucceeded) -> None:
        """Each attempt as its own ``TaskSucceeded`` would be, in order: in one compiled pass
        (``successes.apply``) while the run is ours and running and the node alive."""
        run_id, node, ids, tries, sizes = ev.run_id, ev.node, ev.task_ids, ev.attempts, ev.sizes
        values, took, pids = ev.values, ev.durations, ev.pids
        rest = 0
        run = self._live.get(run_id)
        if (
            run is not None
            and run.state == RUN_RUNNING
            and run.mover is self
            and run.listener is None
            and self._view.alive(node)
        ):
            run.holders.add(node)
            cancels: list[tuple[str, str, int]] = []
            # Whether the ends made room is asked once a node at the table's end, not once an
            # end (``_came_back``): within one table demand only leaves and the ready queue only
            # grows, so the last answer is yes if any earlier one was.
            back: list[str] = []
            self._back_on = back
            try:
                rest, answered = successes.apply(
                    run,
                    self._view,
                    node,
                    ids,
                    tries,
                    sizes,
                    values,
                    took,
                    self._now,
                    cancels,
                    pids,
                    ev.started,
                    ev.ended,
                    ev.bytes_in,
                    ev.delays,
                )
            finally:
                self._back_on = None
            if answered:
                self._dirty = True
            elif back and not self._dirty:
                for at in back:
                    if self._view.room_opened(at, self._ready):
                        self._dirty = True
                        break
            self._cancel(cancels, run)
            self._free(run)
            if run.state == RUN_DONE:
                self._out.direct.append(RunFinished(run.run_id, "DONE"))
        elif run is not None and pids is not None:  # (its rows' history first, as the shell's)
            successes.observe(
                run, node, ids, tries, sizes, pids, ev.started, ev.ended, ev.bytes_in, ev.delays
            )
        for i in range(rest, len(ids)):  # (after the run's end: as stale, one by one)
            self._succeeded(run_id, ids[i], tries[i], node, sizes[i], values[i], took[i])

    def _succeeded(
        self, run_id: str, task_id: str, attempt: int, node: str, size: int, value: Any, took: float
    ) -> None:
        run = self._live.get(run_id)
        if run is None:
            if self._owned.is_released(run_id):  # a late copy: drop it
                self._out.direct.append(FreeResults(run_id, (node,)))
            return
        alive = self._view.alive(node)
        if alive:
            run.holders.add(node)
        found = self._current(run_id, task_id, attempt, node)
        if found is None or not alive:
            return
        rec = found[1]
        self._view.durations.observe_keys(rec.duration_key, rec.shape_key, took)
        self._accept_result(run, rec, node, size, value)

    def _accept_result(
        self, run: RunState, rec: TaskRecord, node: str, size: int, value: bytes | None
    ) -> None:
        self._cancel(run.succeeded(rec, node, size, value, self._now), run)
        self._free(run)
        if run.state == RUN_DONE:
            self._out.direct.append(RunFinished(run.run_id, "DONE"))

    def _adopt(self, run: RunState, rec: TaskRecord, node: str, size: int) -> None:
        """A probe found the result of ``rec``'s attempt at ``node`` though its report was lost."""
        run.holders.add(node)
        self._accept_result(run, rec, node, size, None)

    def _give_back(self, run: RunState, rec: TaskRecord, cause: str) -> None:
        """``rec``'s node dropped its attempt unstarted (``Rebalance``): place it again, no loss."""
        self._cancel(run.make_ready(rec, self._now, cause), run)

    def _count_loss(self, run: RunState, rec: TaskRecord, cause: str) -> None:
        """``rec``'s attempt was lost to the cluster, not by its own fault: place it again (no
        retry used) unless the task has been lost too often."""
        rec.losses += 1
        self._cancel(run.make_ready(rec, self._now, cause), run)
        self._check_losses(run, rec)

    def _on_errored(self, ev: TaskErrored) -> None:
        found = self._current(ev.run_id, ev.task_id, ev.attempt, ev.node)
        if found is None:
            return
        run, rec = found
        if ev.kind in ("cancelled", "input_lost"):  # not the task's fault: no retry used
            self._count_loss(run, rec, f"cancelled by {ev.node}")
            return
        rec.failures += 1
        rec.last_error = (ev.exc_type, ev.message, ev.traceback)
        if rec.failures > run.max_retries(rec) or ev.kind == "storage":  # its store refused it
            error = TaskFailed(rec.id, rec.failures, ev.exc_type, ev.message, ev.traceback)
            run.move(rec, FAILED, self._now, f"{ev.kind} on {ev.node}: no retries left")
            self._end_run(run, RUN_FAILED, error, culprit=rec.id)
            return
        cause = f"{ev.kind} on {ev.node} ({ev.exc_type}): retry {rec.failures}"
        self._cancel(run.make_ready(rec, self._now, cause, delayed=True), run)
        if rec.delayed:
            self._delays.failed(run, rec)

    # -- failures ----------------------------------------------------------------------------------

    def _lose(self, node: str) -> None:
        """``node`` is DEAD or LEFT: its dispatches, tasks and result copies are gone."""
        self._view.forget_unacked(node)
        self._lost.node_lost(node)
        for run in list(self._owned.live.values()):
            self._lose_in_run(run, node)
        owner_requests.check_all_fit(self)
        self._dirty = True

    def _lose_in_run(self, run: RunState, node: str) -> None:
        was = run.state
        cancels, gave_up = run.node_lost(node, self._now)
        self._cancel(cancels, run)
        if gave_up is not None:
            self._check_losses(run, gave_up)
        elif was == RUN_DONE and run.state == RUN_RUNNING:
            log.info(
                "run %s reopened: an unreleased result was lost with node %s", run.run_id, node
            )

    def _check_losses(self, run: RunState, rec: TaskRecord) -> None:
        if (
            run.state == RUN_RUNNING
            and rec.failures + rec.losses > run.max_retries(rec) + EXTRA_LOSSES
        ):
            message = f"lost {rec.losses} time(s) to node failures or cancellations; giving up"
            error = TaskFailed(rec.id, rec.failures + rec.losses, "NodeLost", message)
            self._end_run(run, RUN_FAILED, error, culprit=rec.id)

    def _end_run(
        self, run: RunState, state: str, error: HandoffError, culprit: str | None = None
    ) -> None:
        active = self._lost.out_of(run.run_id)
        self._cancel(run.end(state, error, self._now, culprit, active), run)
        self._close(run)

    def _close(self, run: RunState) -> None:
        """The next slice of an ended run's unfinished tasks cancelled (``RunState.close``), its
        ready entries with them; the end is told with the last slice (``RunFinished``)."""
        lo = run.closing
        self._cancel(run.close(self._now, intake.CLOSE_SLICE), run)
        self._ready.drop_ended(run, lo, run.closing)
        if run.closing < len(run.ordered):
            self._out.direct.append(StartTimer(intake.close_key(run.run_id), 0.0))
        else:
            self._out.direct.append(RunFinished(run.run_id, run.state, run.error))  # type: ignore[arg-type]

    def _recompute(self, run: RunState) -> None:
        self._cancel(run.recompute_needed(self._now), run)

    # -- invariants --------------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise AssertionError when an invariant is broken (tests call it after every event)."""
        from handoffd.scheduler.invariants import validate_owner

        assert self._live is self._owned.live, "the owner's run look-up is not its runs' own"
        validate_owner(self._owned.live, self._view, self._lost, self._rebalance, self._ready)
