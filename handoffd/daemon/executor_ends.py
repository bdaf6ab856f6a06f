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

from handoffd.daemon.executor_block import MIN_DURATION, ended_block, ended_kept
from handoffd.daemon.executor_block import SOON_FLUSH as _SOON_FLUSH
from handoffd.daemon.executor_events import (
    FLUSH,
    Flush,
    Instruction,
    TaskEnded,
)
from handoffd.daemon.executor_records import (
    CHAIN_AHEAD,
    CHAIN_SECONDS,
    R_OWNER,
    R_PAYLOAD,
    R_RUN,
    R_SLOT,
    Key,
    QKey,
    Report,
    Row,
    Slot,
    Task,
    done_report,
    failed,
    row_task,
)
from handoffd.daemon.report_batch import ReportBatch, batch_here, batch_message
from handoffd.store.store import ResultStore, StoreError
from handoffd.worker._records import Ended, Kept, Outcome, outcome_of
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

    def _ended_each(self, outcomes: Sequence[Ended]) -> None:
        # (no ``Kept`` among them: ``_ended`` takes those apart)
        # The common end (a value, a task of a chain) is done here in line: its store put, its
        # report (its fields appended to its batch's columns) and its chain's bookkeeping, with
        # one outbox look-up per run of the batch (``_finish`` for any other; the same steps in
        # the same order). The mean duration and the half chain it gives are kept in locals and
        # written back before any call that reads them (``_end_one``) and at the end.
        tasks, store, fetched, local = self.tasks, self.store, self._fetched, self.local
        ended = self._now + self.wall_offset
        limit = self._inline_limit
        mean, half = self._mean_duration, self._half_chain
        seconds, most = CHAIN_SECONDS, CHAIN_AHEAD
        # A mean under ``fast`` gives the chain cap's half chain (``_chain_target``): most tasks
        # of a busy node are that short
        fast, fast_half = seconds / (most + 1), (1 + most) // 2
        if fast <= MIN_DURATION:  # (the floor would then be what sizes the chain)
            fast = 0.0
        done = 0
        box_owner: str | None = None
        box_run = ""
        # The batch of the outcomes' (owner, run), its columns as locals (``report_batch``: the
        # report's columns appended to, no row or entry a task); set again when the batch changes
        outbox = self._outbox
        ids: list[str] = []
        tries: list[int] = []
        sizes: list[int] = []
        durations: list[float] = []
        pids: list[int] = []
        starts: list[float] = []
        ends: list[float] = []
        bytes_ins: list[int] = []
        values: list[bytes | None] = []
        outputs: list[str] = []
        key: Any
        output: str
        for outcome in outcomes:
            if type(outcome) is tuple:  # a KEPT reply's ``Row``: ok, a value, nothing printed
                key, value, duration, pid = outcome
                task = tasks.pop(key, None)
                if task is None:
                    continue
                ok, output = True, ""
                mean += 0.1 * (duration - mean)  # (its kind is "": it counts)
            else:
                key = outcome.key  # type: ignore[union-attr]  # (not a tuple: an Outcome)
                task = tasks.pop(key, None)
                if task is None:
                    continue
                kind, duration = outcome.kind, outcome.duration  # type: ignore[union-attr]
                value, ok = outcome.value, outcome.ok  # type: ignore[union-attr]
                pid, output = outcome.pid, outcome.output  # type: ignore[union-attr]
                if kind == "" or kind == "error":
                    mean += 0.1 * (duration - mean)
            # The half chain of the mean (``_chain_target() // 2``; the same as before when the
            # mean did not change)
            if mean < fast:
                # (``seconds / mean`` is then above ``most + 1``, rounded or not: the chain is
                # at its cap, so the half chain is the cap's, with no division)
                half = fast_half
            else:
                per_task = mean if mean > MIN_DURATION else MIN_DURATION
                # (``_chain_target() // 2``, clamped by comparisons: no max/min call a task)
                ahead = int(seconds / per_task)
                if ahead > most:
                    ahead = most
                elif ahead < 1:
                    ahead = 1
                half = (1 + ahead) // 2
            # What the common end reads of the attempt (its ids are its key's): a queued
            # task's row (``executor_records.Row``) by index, a ``Task`` by name
            if isinstance(task, list):
                slot = task[R_SLOT]
                run_id, owner, bytes_in = task[R_RUN], task[R_OWNER], len(task[R_PAYLOAD])
                if slot is None or not ok or value is None:  # (off the common end)
                    task = row_task(task)
            else:
                slot = task.slot
                run_id, owner, bytes_in = task.run_id, task.owner_address, task.bytes_in
            if ok and value is not None and slot is not None:
                try:
                    store.put(run_id, key[1], value)
                except StoreError as exc:
                    self._mean_duration, self._half_chain = mean, half
                    if isinstance(task, list):
                        task = row_task(task)
                    refused = self._stored_not(task, outcome_of(outcome), exc)  # type: ignore[arg-type]
                    self._end_one(task, refused, ended)
                    continue
                if fetched:
                    fetched.discard((run_id, key[1]))  # ours now, not a copy
                size = len(value)
                done += 1
                rows, first = slot.rows, slot.first
                if first < len(rows) and rows[first] is task:  # (its chain's next row)
                    first += 1
                    if first == len(rows):
                        rows.clear()
                        first = 0
                    slot.first = first
                else:
                    slot.drop(key)
                left = len(slot.keys) + len(rows) - slot.first
                if not left:  # the chain is over: nothing of it runs any more
                    del self.slots[slot.id]
                    self.ledger.release(slot.cost, slot.gpus)
                    self._changed = True
                if local and left <= half and not self._refill_scheduled:
                    self._schedule_refill()  # (not called again once a refill is due)
                if owner != box_owner or run_id != box_run:  # (no tuple a task)
                    box_owner, box_run = owner, run_id
                    box = outbox.get((owner, run_id))
                    if box is None:
                        box = outbox[owner, run_id] = ReportBatch()
                    ids, tries, sizes, durations = (
                        box.task_ids,
                        box.attempts,
                        box.sizes,
                        box.durations,
                    )
                    pids, starts, ends, bytes_ins = box.pids, box.started, box.ended, box.bytes_in
                    values, outputs = box.values, box.outputs
                # (``done_report``'s row, a column each; bytes in: a row's is its payload's, it
                # has no inputs)
                ids.append(key[1])
                tries.append(key[2])
                sizes.append(size)
                durations.append(duration)
                pids.append(pid)
                starts.append(ended - duration)
                ends.append(ended)
                bytes_ins.append(bytes_in)
                values.append(value if size <= limit else None)
                outputs.append(output)
                if not self._flush_scheduled:
                    self._flush_scheduled = True
                    self._out.append(_SOON_FLUSH)
                continue
            self._mean_duration, self._half_chain = mean, half
            self._end_one(task, outcome_of(outcome), ended)  # type: ignore[arg-type]
        self._mean_duration, self._half_chain = mean, half
        if done:
            self.counters["done"] += done

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
