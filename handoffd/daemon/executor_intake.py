"""The executor state machine's dispatch intake (a base of ``executor_state.ExecutorState``):
admit a dispatch's tasks against the ledger and the local queue, record them, answer the owner.

A dispatch comes two ways: ``DispatchTasks`` (our own node's owner when an input is inline, a node
of the previous build, tests) or a ``columns.DispatchTable``: a received ``DispatchColumns`` read
once, or our own node's owner's built without packing (``dispatch.HereTable``). A table whose
inputs are all direct values (``plain``: no inline function, no serialization hook, no far frame)
and whose frame references are all in range is accepted straight from its columns: a task's inputs
are its slice of the input columns, kept as one tuple of frame numbers (a value sent along) and
store keys (a value here or to fetch) in argument order (``Task.flat``), with no ``DispatchItem`` or
``InputRef`` built. Where a missing value's holders are comes from the table while the task is
gathered (``Task.source``), which is only then. A task of such a table that has no inputs and
queues (most of a big run's) is not even a ``Task``: it is kept as its row (``executor_records.Row``:
ids, owner, the table's cost, payload, queue key, slot), which the refill chains and the end reports
from; a rarer path asks for its ``Task`` (``ExecutorState.task``). Anything else is read back
into ``DispatchTasks`` (``DispatchTable.tasks``) and takes the per-item path, which checks and
refuses item by item.
On that path too an item with plain inputs is read in one pass (``_plain``: its frames, ``flat``
and ``needs``), not by ``check_item``, ``lazy_inputs`` and ``accepted_task`` in turn.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from handoffd import resources
from handoffd.daemon.executor_events import AnsweredHere, Dispatched, Execute, Instruction
from handoffd.daemon.executor_hooks import Encodes, lazy_inputs
from handoffd.daemon.executor_records import (
    NO_MISSING,
    Key,
    QKey,
    QueueOrder,
    Row,
    Task,
    accepted_task,
    check_item,
    queue_key,
    replied_message,
)
from handoffd.daemon.executor_rows import accept_columns
from handoffd.protocol import messages as m
from handoffd.protocol.columns import DispatchTable
from handoffd.store.store import ResultStore
from handoffd.worker.ledger import Ledger

_new = object.__new__


def _fast(table: DispatchTable, frames: list[Any]) -> bool:
    """Whether ``table`` can be accepted from its columns: every frame it names was received
    (else its tasks are refused one by one, "bad payload frame" / "bad input reference")."""
    if not table.plain or table.far:
        return False
    n, payloads, inputs = len(frames), table.payloads, table.frames
    if payloads and (min(payloads) < 0 or max(payloads) >= n):
        return False
    return not inputs or max(inputs) < n


def _without(
    tasks: list[tuple[str, int]], refused: list[tuple[str, int, str]]
) -> list[tuple[str, int]]:
    """``tasks`` (a table's, in order) without ``refused`` (some of them, in the same order)."""
    kept: list[tuple[str, int]] = []
    j, n = 0, len(refused)
    for task_id, attempt in tasks:
        if j < n and refused[j][0] == task_id and refused[j][1] == attempt:
            j += 1
        else:
            kept.append((task_id, attempt))
    return kept


def _plain(
    item: m.DispatchItem, frames: list[Any]
) -> tuple[dict[int, Any], tuple[Any, ...], tuple[str, ...]] | None:
    """(frames kept, ``Task.flat``, ``Task.needs``) of an item whose inputs are all direct values
    and whose frame numbers are in range, in one pass; None for any other (``check_item``,
    ``lazy_inputs`` and ``accepted_task`` then look at it)."""
    n, payload_frame = len(frames), item.payload_frame
    if not 0 <= payload_frame < n:
        return None
    kept = {payload_frame: frames[payload_frame]}
    if not item.inputs:
        return kept, (), ()
    flat: list[Any] = []
    needs: list[str] = []
    for ref in item.inputs:
        if ref.kind != "value" or ref.parent != -1:
            return None
        frame = ref.frame
        if frame < 0:
            needs.append(ref.task_id)
            flat.append(ref.task_id)
        elif frame < n:
            kept[frame] = frames[frame]
            flat.append(frame)
        else:
            return None
    return kept, tuple(flat), tuple(needs)


def _task(
    run_id: str,
    owner_address: str,
    head: tuple[str, int, dict[str, float], str, float | None, tuple[int, float, int]],
    gpus: list[int] | None,
    payload_frame: int,
    kept: dict[int, Any],
    flat: tuple[Any, ...],
    needs: tuple[str, ...],
    source: Any = None,
) -> Task:
    """The record of an item just accepted with plain inputs (``_plain``, or a table's task:
    ``source`` is then where its missing values are held, read while it is gathered);
    ``head``: (task id, attempt, cost, argument inclusion, timeout, queue key); ``gpus``: its
    claim, None when queued."""
    task_id, attempt, cost, inclusion, timeout, qkey = head
    # Every field set here, in ``Task``'s order, without its dataclass ``__init__`` call (one an
    # accepted task): the same record as ``Task(...)`` by position, field for field
    # (``tests/unit/test_record_makers.py`` compares them on random inputs). ``accept_columns``
    # sets the same fields in line: change both.
    task = _new(Task)
    task.run_id = run_id
    task.task_id = task_id
    task.attempt = attempt
    task.owner_address = owner_address
    task.cost = dict(cost)
    task.gpus = [] if gpus is None else gpus  # (the claim's own list: not copied)
    task.argument_inclusion = inclusion
    task.timeout = timeout
    task.payload = kept[payload_frame]
    task.inputs = ()
    task.frames = kept
    task.missing = NO_MISSING
    task.running = False
    task.claimed = gpus is not None
    task.slot = None
    task.bytes_in = 0
    task.payload_frame = payload_frame
    task.needs = needs
    task.far = ()
    task.flat = flat
    task.source = source
    task.qkey = qkey
    return task


class Intake:
    """The intake's part of ``ExecutorState`` (which sets every attribute declared here)."""

    address: str
    ledger: Ledger
    store: ResultStore
    tasks: dict[Key, Task | Row]
    local: dict[Key, QKey]
    draining: bool
    run_owners: dict[str, tuple[int, str, str]]
    counters: dict[str, int]
    _now: float
    _out: list[Instruction]
    _order: QueueOrder
    _arrivals: itertools.count[int]
    _local_cost: dict[str, float]
    _queue_limit: dict[str, float]
    _encodes: dict[str, Encodes]
    _changed: bool
    _send: Callable[..., None]
    _gather: Callable[[Task], None]
    _start: Callable[[Task], None]
    _pump_local: Callable[[], None]
    _schedule_refill: Callable[[], None]
    _refill: Callable[[], None]
    _learn_owner: Callable[..., bool]
    term_of: Callable[[str], int]

    def _on_dispatch(self, ev: Dispatched) -> None:
        msg, frames = ev.msg, ev.frames
        if isinstance(msg, DispatchTable):
            if not self.draining and _fast(msg, frames):
                self._accept_table(msg, frames, ev.term, ev.owner)
                return
            msg = msg.tasks()
        self._accept_items(msg, frames, ev.term, ev.owner)

    def _stale(self, run_id: str, owner_address: str, term: int, owner: str) -> str:
        """Why a dispatch at ``term`` from ``owner`` (its name) is refused ("" if its owner is
        current)."""
        if self._learn_owner(run_id, term, owner_address, owner):
            return ""
        stale = f"stale term {term}: the run's owner is at term {self.term_of(run_id)}"
        known = self.run_owners[run_id]
        if known[0] == term:  # two takeovers at one term: tell the yielding one at once
            stale = f"the claim at term {term} yields to {known[2]}'s"
            follow = m.FollowOwner(run_id, term, known[2], known[1])
            self._send(owner_address, follow, [], term=term)
        return stale

    def _accept_items(
        self, msg: m.DispatchTasks, frames: list[bytes], term: int, owner: str
    ) -> None:
        accepted: list[tuple[str, int]] = []
        refused: list[tuple[str, int, str]] = []
        started: list[Task] = []
        stale = self._stale(msg.run_id, msg.owner_address, term, owner)
        if stale:
            refused = [(i.task_id, i.attempt, stale) for i in msg.items]
            self._reply(msg.run_id, msg.owner_address, accepted, refused)
            return
        run_id, owner_address = msg.run_id, msg.owner_address
        plain_ok = not self.draining and not msg.far
        for item in msg.items:
            key = (run_id, item.task_id, item.attempt)
            if key in self.tasks:  # a duplicate delivery: already ours
                accepted.append((item.task_id, item.attempt))
                continue
            plain = _plain(item, frames) if plain_ok else None
            reason = ""
            if plain is None:  # (checked item by item)
                reason = "draining" if self.draining else check_item(item, frames)
            gpus = None if reason or self.local else self.ledger.try_claim(item.cost)
            if not reason and gpus is None:
                reason = self._queue_refusal(item.cost)
            if reason:
                refused.append((item.task_id, item.attempt, reason))
                continue
            qkey = queue_key(item.priority, item.rank, self._now, next(self._arrivals))
            if plain is not None:
                head = (item.task_id, item.attempt, item.cost, item.argument_inclusion)
                task = _task(
                    run_id,
                    owner_address,
                    (*head, item.timeout, qkey),
                    gpus,
                    item.payload_frame,
                    *plain,
                )
                task.inputs = item.inputs  # (where the values to fetch are held: ``_holders``)
            else:
                inputs = lazy_inputs(item.inputs, run_id, self.store.has, frames, self._encodes)
                task = accepted_task(msg, item, frames, inputs, gpus, qkey)
            self._keep(key, task, gpus)
            accepted.append((item.task_id, item.attempt))
            started.append(task)
        self._reply(msg.run_id, msg.owner_address, accepted, refused)
        self._gather_all(started)

    def _accept_table(self, t: DispatchTable, frames: list[Any], term: int, owner: str) -> None:
        """``_accept_items`` of a plain table (``_fast``), read straight from its columns."""
        run_id, owner_address = t.run_id, t.owner_address
        accepted: list[tuple[str, int]] = []
        refused: list[tuple[str, int, str]] = []
        started: list[Task] = []
        stale = self._stale(run_id, owner_address, term, owner)
        if stale:
            refused = [(i, a, stale) for i, a in zip(t.task_ids, t.attempts, strict=True)]
            self._reply(run_id, owner_address, accepted, refused)
            return
        queued: list[Key] = []  # (keys that joined the local queue, in arrival order)
        accept_columns(self, t, frames, refused, started, queued)
        if queued:
            # One aging level (one ``now``), so the keys ascend in arrival order when the table
            # has one priority and one rank (not NaN): the order takes them without a sort
            priorities, ranks = t.priorities, t.ranks
            first, rank = priorities[0], ranks[0]
            self._order.arrived(
                self.local,
                queued,
                rank == rank
                and priorities.count(first) == len(priorities)
                and ranks.count(rank) == len(ranks),
            )
        accepted = list(zip(t.task_ids, t.attempts, strict=True))
        if refused:  # (the refused are a subsequence of the table, in order: taken out)
            accepted = _without(accepted, refused)
        self._reply(run_id, owner_address, accepted, refused)
        self._gather_all(started)

    def _keep(self, key: Key, task: Task, gpus: list[int] | None) -> None:
        # (``executor_rows.accept_columns`` does the same in line: change both)
        self.tasks[key] = task
        if gpus is None:
            self.local[key] = task.qkey
            self._order.dirty = True
            total = self._local_cost  # (summed in place, no call: once per queued task)
            for kind, qty in task.cost.items():
                total[kind] = total.get(kind, 0.0) + qty

    def _gather_all(self, started: list[Task]) -> None:
        gather, start = self._gather, self._start
        for task in started:
            if task.claimed:  # the ledger changed (a task only queued changed nothing in it)
                self._changed = True
            if task.needs:
                gather(task)
                task.source = None  # (the holders were read: the table may go)
            elif task.claimed:  # (``_gather`` of a task with nothing to fetch: it starts)
                start(task)
        if self.local:
            self._pump_local()
            out = self._out
            if out and type(out[-1]) is Execute:
                # A slot started in this pass (a task claimed at once, or a queued one): the
                # tasks queued behind it chained now, into its Execute (``_refill``), so the
                # worker gets them in one pipe message with it, not a turn later in another.
                self._refill()
            if self.local:  # (a refill with an empty queue does nothing: no turn for it)
                self._schedule_refill()

    def _reply(
        self,
        run_id: str,
        owner_address: str,
        accepted: list[tuple[str, int]],
        refused: list[tuple[str, int, str]],
    ) -> None:
        """Answer a dispatch at once, queued tasks included: the owner counts silence as loss.
        Our own node's owner gets a record (``AnsweredHere``), any other ``RepliedColumns``."""
        counters = self.counters
        counters["accepted"] += len(accepted)
        if refused:
            counters["refused"] += len(refused)
        free = dict(self.ledger.free)
        known = self.run_owners.get(run_id)  # (``term_of``, read once)
        term, version = known[0] if known is not None else 0, self.ledger.version
        if owner_address == self.address:
            self._out.append(
                AnsweredHere(run_id, term, tuple(accepted), tuple(refused), free, version)
            )
            return
        reply = replied_message(run_id, accepted, refused, free, version)
        self._send(owner_address, reply, [], term)

    def _queue_refusal(self, cost: dict[str, float]) -> str:
        """Why a task that cannot start now may not wait in the local queue ("" if it may)."""
        capacity = self.ledger.capacity
        if not resources.fits(cost, capacity):
            return "no room: exceeds the node's capacity"
        return self._queue_full(cost)

    def _queue_full(self, cost: dict[str, float]) -> str:
        """``_queue_refusal`` of a cost that fits the node's capacity."""
        # ``fits(add(local cost, cost), limit)`` without the sum's dict (once per queued task):
        # the queue's other kinds fit already, as they only grow by costs checked here.
        total, limit = self._local_cost, self._queue_limit
        for kind, qty in cost.items():
            if qty > 0 and total.get(kind, 0.0) + qty > limit.get(kind, 0.0) + resources.EPS:
                return "no room: queue full"
        return ""
