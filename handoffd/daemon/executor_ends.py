"""The executor state machine's ends of attempts (a base of ``executor_state.ExecutorState``): an
attempt's outcome ended (its value kept in the store, its report queued for the run's owner, its
chain's claim released when the chain is over, a refill asked when the chain is down to half) and
the reports flushed once per loop iteration, one batch per owner and run (``report_message`` to
another node, ``reported_here``'s record to our own node's owner).

The common end, a value of a chained task, is done in line in ``_ended`` over a whole read's
outcomes; any other (no value, an error, a store refusal, a task with no chain) takes ``_end_one``
and ``_finish``, the same steps in the same order. A read's block of KEPT replies (``Kept``) is
ended by the compiled ``executor_block`` (two C loops a block), or one by one when it cannot."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from handoffd.daemon.executor_block import SOON_FLUSH as _SOON_FLUSH
from handoffd.daemon.executor_block import ended_block, ended_each, ended_kept
from handoffd.daemon.executor_events import (
    FLUSH,
    Flush,
    Instruction,
    TaskEnded,
)
from handoffd.daemon.executor_records import (
    Key,
    QKey,
    Report,
    Row,
    Slot,
    Task,
    done_report,
    failed,
)
from handoffd.daemon.report_batch import ReportBatch, batch_here, batch_message
from handoffd.store.store import ResultStore, StoreError
from handoffd.worker._records import Ended, Kept, Outcome
from handoffd.worker.ledger import Ledger

log = logging.getLogger("handoffd.execution")


class Ends:
    """The ends' part of ``ExecutorState`` (which sets every attribute declared here)."""

    address: str
    ledger: Ledger
    store: ResultStore
    tasks: dict[Key, Task | Row]
    local: dict[Key, QKey]
    slots: dict[int, Slot]
    run_owners: dict[str, tuple[int, str, str]]
    counters: dict[str, int]
    flushed: bool
    wall_offset: float
    _now: float
    _out: list[Instruction]
    _changed: bool
    _fetched: set[tuple[str, str]]
    _inline_limit: int
    _mean_duration: float
    _half_chain: int
    _flush_scheduled: bool
    _refill_scheduled: bool
    _outbox: dict[tuple[str, str], ReportBatch]
    _send: Callable[..., None]
    _schedule_refill: Callable[[], None]
    _unqueue_local: Callable[[Key, Task | None], None]
    _apply: Callable[[Callable[[Any], None], Any, float], list[Instruction]]

    def tasks_ended(
        self, outcomes: list[Ended], now: float, flush_idle: bool = False
    ) -> list[Instruction]:
        """``handle(TaskEnded(outcome), now)`` of each, in one pass: no event built per task. An
        outcome may come as its ``Row`` (the pool's ``rows``): ended as its ``outcome_of``.
        ``flush_idle``: when no task is left and a report flush is due, the flush too, as
        ``handle(FLUSH, now)`` right after would do (its ``Soon(FLUSH)`` is not returned)."""
        return self._apply(self._ended_flush if flush_idle else self._ended, outcomes, now)

    def _ended_flush(self, outcomes: list[Ended]) -> None:
        # Nothing left here could end and join the report before a later flush, so it goes in
        # this pass: the shell's read of the last outcome needs no second event and pass.
        self.flushed = False
        self._ended(outcomes)
        if self._flush_scheduled and not self.tasks:
            self.flushed = True
            out = self._out
            if out and out[-1] is _SOON_FLUSH:  # (asked last, as mostly: no search)
                del out[-1]
            else:
                for i, ins in enumerate(out):
                    if ins is _SOON_FLUSH:
                        del out[i]
                        break
            self._on_flush(FLUSH)

    def _on_task_ended(self, ev: TaskEnded) -> None:
        self._ended((ev.outcome,))

    def _ended(self, outcomes: Sequence[Ended]) -> None:
        # A read's ``Kept`` block ends as a block (``_ended_block``) when it can, else as its
        # rows; what comes between blocks ends one by one (``_ended_each``), all in their order.
        if len(outcomes) == 1:  # (a one-task call's read: no pass to split it)
            outcome = outcomes[0]
            if type(outcome) is Kept:
                ended_kept(self, outcome)
            else:
                self._ended_each(outcomes)
            return
        start = 0
        for at, outcome in enumerate(outcomes):
            if type(outcome) is Kept:
                if at > start:
                    self._ended_each(outcomes[start:at])
                ended_kept(self, outcome)
                start = at + 1
        if not start:
            self._ended_each(outcomes)
        elif start < len(outcomes):
            self._ended_each(outcomes[start:])

    def _ended_block(self, block: Kept, first: Any) -> bool:
        """``_ended_each`` of the block's tasks done as a block (``first``: the first one's
        entry in ``tasks``), when that is the same; else False, nothing changed
        (``executor_block.ended_block``)."""
        return ended_block(self, block, first)

    # (no ``Kept`` among them: ``_ended`` takes those apart) The common end in line, the rest
    # by ``_end_one`` (``executor_block.ended_each``, compiled: a one-task call's end and a
    # block's front of ``Task``s run no bytecode a task)
    _ended_each = ended_each

    def _stored_not(self, task: Task, outcome: Outcome, exc: StoreError) -> Outcome:
        """The outcome of an attempt whose value the store refused: the run fails with why
        (not RUNNING forever)."""
        log.error("run %s task %s: %s", task.run_id, task.task_id, exc)
        why = f"{exc} [node at {self.address}]"
        outcome = replace(outcome, ok=False, kind="storage", exc_type="StoreError")
        return replace(outcome, value=None, message=why, traceback="")

    def _end_one(self, task: Task, outcome: Outcome, ended: float) -> None:
        """``_ended`` of an attempt off its common path (no value, an error, no chain)."""
        if outcome.ok and outcome.value is not None:
            value = outcome.value
            if task.slot is None:  # (the in-line path put the others')
                try:
                    self.store.put(task.run_id, task.task_id, value)
                except StoreError as exc:
                    outcome = self._stored_not(task, outcome, exc)
        if outcome.ok and outcome.value is not None:
            self._fetched.discard((task.run_id, task.task_id))  # ours now, not a copy
            inline = value if len(value) <= self._inline_limit else None
            started = ended - outcome.duration
            timing = (outcome.pid, started, ended)
            report: Report = done_report(task, len(value), timing, outcome.duration)
            self.counters["done"] += 1
            self._finish(task, report, inline, outcome.output)
        else:
            report = failed(
                task,
                outcome.kind or "error",
                outcome.exc_type,
                outcome.message,
                outcome.traceback,
                timing=(outcome.pid, ended - outcome.duration, ended),
            )
            self.counters["failed"] += 1
            self._finish(task, report, None, outcome.output)

    def _finish(self, task: Task, report: Report, value: bytes | None, output: str = "") -> None:
        slot = task.slot
        if slot is not None:
            slot.drop((task.run_id, task.task_id, task.attempt))
            left = slot.size()
            if not left:  # the chain is over: nothing of it runs any more
                del self.slots[slot.id]
                self.ledger.release(slot.cost, slot.gpus)
                self._changed = True
            if self.local and left <= self._half_chain:
                self._schedule_refill()
        elif task.claimed:
            self.ledger.release(task.cost, task.gpus)
            self._changed = True
            if self.local:
                self._schedule_refill()
        else:
            self._unqueue_local((task.run_id, task.task_id, task.attempt), task)
        box = self._outbox.get((task.owner_address, task.run_id))
        if box is None:
            box = self._outbox[task.owner_address, task.run_id] = ReportBatch()
        box.add(report, value, output)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._out.append(_SOON_FLUSH)

    def _on_flush(self, ev: Flush) -> None:
        self._flush_scheduled = False
        outbox, self._outbox = self._outbox, {}
        for (owner, run_id), batch in outbox.items():
            known = self.run_owners.get(run_id)
            term = 0
            if known is not None:
                owner = known[1]  # the run changed owner since the task was dispatched
                term = known[0]  # (``term_of``, read once)
            if owner == self.address:  # our own node's owner: a record, not a message
                self._out.append(batch_here(run_id, term, batch, self.ledger))
                continue
            msg, frames = batch_message(run_id, batch, self.ledger)
            self._send(owner, msg, frames, term=term)
