"""The executing side's decisions, as a pure state machine: accept dispatches against the local
ledger, gather inputs peer to peer, run tasks in the worker pool, store results, and report to each
run's owner.

``ExecutorState.handle(event, now)`` takes one event (``executor_events``: a dispatch, a value
fetched, a job's outcome, a cancel, a timer) and returns instructions (send, submit jobs to a pool
chain, cancel a job, set a timer, call me back soon, resources changed, a run's owner changed). It
calls nothing itself: no loop, no socket, no pool; the clock is the ``now`` it is given. It holds the
node's ledger and result store (pure containers; the store may spill to a file, synchronously).
``handoffd.daemon.executor`` is the I/O shell that feeds it and carries its instructions out. Reports
are batched per owner and flushed once per loop iteration (``Soon(FLUSH)``).

Local queue (pipelining): a dispatched task the ledger cannot claim right now is still accepted when
it fits the node's capacity and the queue holds less than ``queue_factor`` x capacity of demand. Its
inputs are fetched at once; it claims its cost from the ledger only when it starts, which happens here,
without asking the owner, as soon as a finishing task releases enough (skipping what does not fit
yet). Queued tasks start by priority (the function's plus its run's), then critical path (upward
rank), then arrival, across runs and owners; a task gains one priority level per ``AGING_SECONDS``
it waits, so none starves (``executor_records.queue_key``). The ledger stays the truth: resources
are never over-committed.

Chains: a started task holds its claim through a Slot, and the slot is one chain of the worker pool
(its jobs run one after another on one worker, never two at once). Queued tasks of the same cost
whose inputs are here join a running slot's chain instead of waiting for a claim: they inherit the
claim (and its GPU indices, so CUDA_VISIBLE_DEVICES stays right) without a round through the ledger,
which thus holds exactly one claim per slot; the claim is released when the slot's last task ends.
The pool sends chained jobs ahead to the worker, so it runs them back to back. Chaining takes queued
tasks in arrival order, skips those still fetching inputs and stops at the first one of another cost
(it then gets the claims as the slots drain); a slot holds about CHAIN_SECONDS of work (measured
durations), at most 1 + CHAIN_AHEAD tasks, so slow tasks are not bunched behind one worker; it is
refilled (once per loop iteration, in one pipe message) when down to half. A slot started in a pass
(a dispatch's claim, a refill's start) gets its chain in that pass, in its one ``Execute``: the
worker is sent its first task and those behind it in one pipe message, not two.

Rows: a queued plain task with no inputs is kept in ``tasks`` as a ``Row`` (``executor_records``),
not a ``Task``: the refill (``_refill``), a start through the ledger (``_start_row``: a chain's
first task once the claim is free again, W1's every chain after the first), the end
(``Ends._ended``) and the owner's change read and write it by index; every other path (cancel,
withdraw, leaving, live output) asks for the attempt's ``Task`` (``task``), which turns the row
into the record the intake made of such a task before rows, for good. Rows chained into the one slot down to half (a 1-cpu
node's, W1's) go to the pool as ``JobBlock``s (their keys, payloads and titles as columns, no
``Job`` a task), which the pool queues and feeds whole (``worker._feeds``); a job is made of a
block's row only where it leaves the block (a cancel, a loss, a feed of one). The refill's loop and the intake's of a plain table are
``executor_rows`` (compiled with the ``.pxd`` beside it; the ``.py`` is its twin).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from handoffd._core.api import EPS
from handoffd.daemon.executor_block import MIN_DURATION
from handoffd.daemon.executor_control import Control
from handoffd.daemon.executor_ends import Ends
from handoffd.daemon.executor_events import (
    LEDGER_CHANGED,
    REFILL,
    CancelAsked,
    ChunkArrived,
    Dispatched,
    Event,
    Execute,
    FetchTimedOut,
    Flush,
    HookFailedArrived,
    Instruction,
    Leaving,
    NewOwner,
    OwnerSeen,
    Refill,
    RunFreed,
    SendMessage,
    Soon,
    TaskEnded,
    ValuesArrived,
    ValuesAsked,
    ValuesFreed,
    WithdrawAsked,
)
from handoffd.daemon.executor_hooks import Encodes
from handoffd.daemon.executor_inputs import Inputs
from handoffd.daemon.executor_intake import Intake
from handoffd.daemon.executor_records import (
    CHAIN_AHEAD,
    CHAIN_SECONDS,
    QUEUE_FACTOR,
    R_COST,
    R_INCLUSION,
    R_OWNER,
    R_PAYLOAD,
    R_RUN,
    R_SLOT,
    R_TASK,
    R_TIMEOUT,
    Fetch,
    Key,
    QKey,
    QueueOrder,
    Row,
    Slot,
    Task,
    row_task,
)
from handoffd.daemon.executor_rows import refill, start_task
from handoffd.daemon.report_batch import ReportBatch
from handoffd.protocol import messages as m
from handoffd.replication.standby import outranks
from handoffd.store.chunks import CHUNK_MAX, is_far_key
from handoffd.store.store import ResultStore
from handoffd.worker._records import new_job
from handoffd.worker.ledger import Ledger

_SOON_REFILL = Soon(REFILL)
_new = object.__new__


class ExecutorState(Intake, Inputs, Control, Ends):
    def __init__(
        self,
        *,
        address: str,
        ledger: Ledger,
        store: ResultStore,
        inline_result_bytes: int,
        fetch_timeout: float = 5.0,
        queue_factor: float = QUEUE_FACTOR,
        chunk_bytes: int = CHUNK_MAX,
    ) -> None:
        self.address = address
        self._chunk_bytes = chunk_bytes  # values are pulled in chunks of this (store.chunks)
        self.ledger = ledger
        self.store = store
        self._inline_limit = inline_result_bytes
        self._fetch_timeout = fetch_timeout
        # accepted, outcome not reported yet: a ``Task``, or a queued plain task's ``Row``
        # (``task`` gives the ``Task`` of either)
        self.tasks: dict[Key, Task | Row] = {}
        # queue_factor x the ledger's capacity (fixed when the node starts)
        self._queue_limit = {k: q * queue_factor for k, q in ledger.capacity.items()}
        # accepted, not claimed yet, in arrival order: each one's ``Task.qkey`` (its start order)
        self.local: dict[Key, QKey] = {}
        self._order = QueueOrder()  # ``local`` in start order (``queue_key``)
        self._arrivals = itertools.count()
        self._local_cost: dict[str, float] = {}  # summed cost of the local queue
        # (run_id, dep_id) -> keys of tasks waiting for that value
        self._waiting: dict[tuple[str, str], set[Key]] = {}
        # (run_id, dep_id) -> locations not tried yet
        self._candidates: dict[tuple[str, str], list[str]] = {}
        self.fetches: dict[int, Fetch] = {}  # request id -> fetch under way
        # Memory: a copy fetched for local consumers is dropped once every local task that
        # needed it has started (the producer keeps its own copy; a later consumer fetches again).
        self._needs: dict[tuple[str, str], int] = {}  # (run_id, dep_id) -> local tasks not started
        self._fetched: set[tuple[str, str]] = set()  # copies in our store that came from peers
        self._request_ids = itertools.count(1)
        self._encodes: dict[str, Encodes] = {}  # run -> values fetched serialized (executor_hooks)
        # (owner, run) -> its reports to send, as columns (``report_batch``)
        self._outbox: dict[tuple[str, str], ReportBatch] = {}
        self._flush_scheduled = False
        self.flushed = False  # the last ``tasks_ended(flush_idle=True)`` flushed the reports
        self.draining = False  # refuse every dispatch (the node is stopping)
        self.counters = {"accepted": 0, "refused": 0, "done": 0, "failed": 0, "fetched": 0}
        self.slots: dict[int, Slot] = {}  # one per ledger claim held by a running chain
        self._slot_ids = itertools.count(1)
        self._mean_duration = 0.001  # of recent attempts (seconds), sizes chains
        self._half_chain = self._chain_target() // 2  # (``_ended`` keeps it)
        self._refill_scheduled = False
        # Fencing (DESIGN 3.5): run -> (highest owner term seen, that owner's address, name).
        # Dispatches and owner commands from a lower term are refused or ignored; reports go to
        # the owner of the highest term.
        self.run_owners: dict[str, tuple[int, str, str]] = {}
        self._now = 0.0
        self.wall_offset = 0.0  # wall clock minus ``now`` (the shell sets it): report times
        self._out: list[Instruction] = []
        self._changed = False  # the ledger changed during this event: gossip once, at the end
        self._handlers: dict[type, Callable[[Any], None]] = {
            Dispatched: self._on_dispatch,
            TaskEnded: self._on_task_ended,
            Flush: self._on_flush,
            Refill: self._on_refill,
            ValuesAsked: self._on_values_asked,
            ValuesArrived: self._on_values_arrived,
            ChunkArrived: self._on_chunk,
            FetchTimedOut: self._on_fetch_timed_out,
            CancelAsked: self._on_cancel,
            Leaving: self._on_leaving,
            WithdrawAsked: self._on_withdraw,
            RunFreed: self._on_run_freed,
            ValuesFreed: self._on_values_freed,
            OwnerSeen: self._on_owner_seen,
            HookFailedArrived: self._on_hook_failed,
        }

    def handle(self, event: Event, now: float) -> list[Instruction]:
        """Apply one event at time ``now``; the instructions to carry out, in order."""
        return self._apply(self._handlers[type(event)], event, now)

    def _apply(self, handler: Callable[[Any], None], arg: Any, now: float) -> list[Instruction]:
        self._now = now
        out = self._out = []
        self._changed = False
        handler(arg)
        if self._changed:
            out.append(LEDGER_CHANGED)
        return out

    def _send(self, address: str, msg: Any, frames: list[bytes], term: int = 0) -> None:
        self._out.append(SendMessage(address, msg, frames, term))

    # -- queries -------------------------------------------------------------------------------

    def task(self, key: Key) -> Task | None:
        """The accepted attempt ``key`` as its ``Task`` (a row turned into one, for good)."""
        task = self.tasks.get(key)
        if isinstance(task, list):
            row = task
            task = self.tasks[key] = row_task(row)
            row[R_SLOT] = None  # (not its slot's row any more: ``Row``)
        return task  # type: ignore[return-value]

    def task_records(self) -> dict[Key, Task]:
        """Every accepted attempt as a ``Task``, in ``tasks``' order; rows are left rows (what
        ``task`` would turn each into, as a copy)."""
        return {k: row_task(t) if isinstance(t, list) else t for k, t in self.tasks.items()}  # type: ignore[misc]

    def _tasks_as_records(self) -> dict[Key, Task]:
        """``tasks`` with every row turned into its ``Task`` (a rare path that reads them all)."""
        tasks = self.tasks
        for key, task in tasks.items():
            if isinstance(task, list):
                tasks[key] = row_task(task)
                task[R_SLOT] = None  # (not its slot's row any more: ``Row``)
        return tasks  # type: ignore[return-value]

    def term_of(self, run_id: str) -> int:
        known = self.run_owners.get(run_id)
        return known[0] if known is not None else 0

    def is_stale(self, run_id: str, term: int) -> bool:
        """A message of the run's owner at ``term`` comes from a deposed owner."""
        known = self.run_owners.get(run_id)
        return known is not None and term < known[0]

    def holdings(self, request_id: int, run_id: str, term: int) -> m.RunHoldings:
        """What we hold and run for the run (a new owner's reconciliation, or a probe)."""
        held = tuple(
            m.HeldValue(t, self.store.size(run_id, t))
            for t in sorted(self.store.tasks_of(run_id))
            if not is_far_key(t)  # a dispatch's argument kept or pulled here, not a value
        )
        running = tuple(m.TaskAttempt(t, a) for r, t, a in self.tasks if r == run_id)
        return m.RunHoldings(request_id, run_id, term, held, running)

    def running_count(self) -> int:
        return len(self.tasks)

    # -- fencing -------------------------------------------------------------------------------

    def _on_owner_seen(self, ev: OwnerSeen) -> None:
        self._learn_owner(ev.run_id, ev.term, ev.address, ev.name)

    def _learn_owner(self, run_id: str, term: int, address: str, name: str = "") -> bool:
        """Record the run's owner at ``term``; False when ``term`` is stale (lower than seen) or
        ``name``'s claim yields to the one we follow at that term (two takeovers at one term:
        the higher name keeps the run, ``replication.standby.outranks``)."""
        known = self.run_owners.get(run_id)
        if known is not None and term < known[0]:
            return False
        if (
            known is not None
            and address != known[1]
            and name
            and outranks(known[0], known[2], term, name)
        ):
            return False
        if known is None or term > known[0] or address != known[1]:
            # (a name is known per term: a higher term's owner without one is not the old one)
            kept = known[2] if known is not None and term == known[0] else ""
            self.run_owners[run_id] = (term, address, name or kept)
            for task in self.tasks.values():
                if isinstance(task, list):
                    if task[R_RUN] == run_id:
                        task[R_OWNER] = address
                elif task.run_id == run_id:
                    task.owner_address = address
            if known is not None and term > known[0]:
                self._out.append(NewOwner(run_id, term, name))
        return True

    # -- the local queue -----------------------------------------------------------------------

    def queue_order(self) -> list[Key]:
        """The local queue in start order (keys no longer queued are skipped by the callers)."""
        return self._order.keys_of(self.local)

    def _pump_local(self) -> None:
        """Start queued tasks the ledger can claim now, in queue order. A cost the ledger refused
        is not offered again in the same pass: claims only shrink what is free, so it would be
        refused again (with a chain holding the only cpu, every task of the queue was tried)."""
        # (a row started here: its key, the row, its claim's gpus; see ``_start_row``)
        started: list[Task | tuple[Key, Row, list[int]]] = []
        free = self.ledger.free
        local = self.local
        refused: set[tuple[tuple[str, float], ...]] = set()
        room = any(q > EPS for q in free.values())
        if not room:  # (a chain holds the only cpu: nothing to order, copy or try)
            return
        for key in list(self.queue_order()):
            if not room:
                break
            if key not in local:
                continue
            got = self.tasks.get(key)
            if got is None:
                self._unqueue_local(key, None)
                continue
            cost = got[R_COST] if isinstance(got, list) else got.cost
            shape = tuple(cost.items())
            if shape in refused:
                continue
            gpus = self.ledger.try_claim(cost)
            if gpus is None:
                refused.add(shape)
                continue
            room = any(q > EPS for q in free.values())
            if isinstance(got, list):  # (a row stays a row: ``_start_row``)
                self._unqueue_local(key, got)
                started.append((key, got, gpus))
                continue
            self._unqueue_local(key, got)
            got.claimed = True
            got.gpus = gpus
            started.append(got)
        if started:
            self._changed = True
        for task in started:
            if isinstance(task, tuple):
                self._start_row(*task)
            elif not task.missing:
                self._start(task)

    def _unqueue_local(self, key: Key, task: Task | Row | None) -> None:
        if key in self.local:
            del self.local[key]
            if task is not None:  # (summed in place, no call: once per queued task)
                total = self._local_cost
                cost = task[R_COST] if isinstance(task, list) else task.cost
                for kind, qty in cost.items():
                    total[kind] = total.get(kind, 0.0) - qty
            if not self.local:
                self._local_cost = {}

    # -- running -------------------------------------------------------------------------------

    # A claimed task with its inputs here starts under a slot of its own (compiled:
    # ``executor_rows.start_task``)
    _start = start_task

    def _start_row(self, key: Key, row: Row, gpus: list[int]) -> None:
        """``_start`` of a queued row the ledger claimed ``gpus`` for, which stays a row: its
        slot set, as the refill chains a row (``row_task`` then gives the ``Task`` that
        ``_start`` would have made of it and run), so its end is a row's (``ended_block``) with
        the rows chained behind it, and its ``Task`` is made only if a look-up asks for it."""
        cost = row[R_COST]
        # (the slot's cost a copy, as the ``Task``'s own: ``row_task``)
        slot = Slot(next(self._slot_ids), dict(cost), gpus, self.ledger.visible(gpus))
        self.slots[slot.id] = slot
        row[R_SLOT] = slot
        slot.rows.append(row)  # (the chain's first row: ended with those behind it by position)
        job = new_job(  # (``start_task``'s Job of the task: no inputs)
            key,
            row[R_PAYLOAD],
            [],
            row[R_INCLUSION],
            row[R_TIMEOUT],
            slot.devices,
            cost.get("memory"),
            f"run {row[R_RUN]} task {row[R_TASK]}",
        )
        self._out.append(Execute(slot.id, [job]))

    def _chain_target(self) -> int:
        """Tasks a slot should hold (the running one included)."""
        per_task = max(self._mean_duration, MIN_DURATION)
        return 1 + max(1, min(CHAIN_AHEAD, int(CHAIN_SECONDS / per_task)))

    def _schedule_refill(self) -> None:
        if not self._refill_scheduled:
            self._refill_scheduled = True
            self._out.append(_SOON_REFILL)

    def _on_refill(self, ev: Refill) -> None:
        self._refill_scheduled = False
        if self.local:
            self._pump_local()
            self._refill()

    def _refill(self) -> None:
        """Chain queued tasks behind running slots of the same cost (see the module docstring;
        the loop is ``executor_rows.refill``)."""
        refill(self)
