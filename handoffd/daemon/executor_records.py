"""What the executor's state machine (handoffd.daemon.executor_state) keeps per accepted task, per
claim and per fetch."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import Any

from handoffd.daemon.executor_events import AnsweredHere, ReportedHere
from handoffd.protocol import messages as m
from handoffd.protocol.columns import ReportRow, ReportTable, pack, reports_as_columns
from handoffd.protocol.messages_columns import RepliedColumns, ReportColumns
from handoffd.protocol.registry import maker
from handoffd.scheduler.cluster_view import WINDOW
from handoffd.store.store import ResultStore

_new = object.__new__

Key = tuple[str, str, int]  # run_id, task_id, attempt
QKey = tuple[int, float, int]  # a queued task's start order (``queue_key``)

CHAIN_AHEAD = 32  # tasks chained behind the running one of a slot, at most
CHAIN_SECONDS = 0.005  # ... and about this much work (by the mean measured duration)
CHAIN_SCAN = 256  # queued tasks looked at per refill
#: The local queue's default limit, in multiples of the node's capacity. An owner keeps up to
#: ``WINDOW`` x capacity outstanding on a node; a limit below that refuses part of every window
#: ("queue full"), and each refused task costs a dispatch, a refusal and a placement again on both
#: sides. Twice the window holds two owners' full windows (and one owner's with its chains).
QUEUE_FACTOR = 2.0 * WINDOW
#: Aging in the local queue: a task that waited this long ranks one priority level higher, so a
#: stream of higher-priority work delays a task by at most (their priority gap) x AGING_SECONDS.
AGING_SECONDS = 1.0
#: ``Task.missing`` of a task with nothing being fetched: one immutable empty set shared by all
#: (no set made and freed a task); ``_gather`` gives a task its own set when it fetches.
NO_MISSING: frozenset[str] = frozenset()


@dataclass(slots=True)
class Slot:
    """One ledger claim, held by a chain of tasks that run one after another on one worker."""

    id: int
    cost: dict[str, float]
    gpus: list[int]
    devices: str  # CUDA_VISIBLE_DEVICES of its tasks: the devices of ``gpus`` ("" for none)
    # The chain's tasks whose outcome is not in yet: its ``Task``s by key, its rows (``Row``)
    # as a list in chain order from ``first`` (those before ended), with no key entry: a read's
    # block of replies ends them by position (``executor_block``), not a look-up a task.
    # (``rows`` is left out of comparisons and repr: a row names its slot.)
    keys: dict[Key, None] = field(default_factory=dict)
    rows: list[Any] = field(default_factory=list, compare=False, repr=False)
    first: int = 0

    def size(self) -> int:
        """Tasks in the chain, outcome not in yet."""
        return len(self.keys) + len(self.rows) - self.first

    def __eq__(self, other: object) -> bool:
        # (the chain's tasks compared as a set, as its keys were when they were one dict: which
        # of them are rows is the way they were chained, not what the slot holds)
        if type(other) is not Slot:
            return NotImplemented
        return (self.id, self.cost, self.gpus, self.devices) == (
            other.id,
            other.cost,
            other.gpus,
            other.devices,
        ) and set(self.members()) == set(other.members())

    def members(self) -> list[Key]:
        """The keys of the chain's tasks whose outcome is not in yet: its ``Task``s', then its
        rows' in chain order (the views and tests read them; the hot paths do not)."""
        return [*self.keys, *(row[R_KEY] for row in self.rows[self.first :])]

    def drop(self, key: Key) -> None:
        """``key``'s task off the chain (its outcome is in): its key entry, else its row."""
        keys = self.keys
        if keys.pop(key, _NOT_IN) is not _NOT_IN:  # type: ignore[arg-type]
            return
        rows, first = self.rows, self.first
        if first < len(rows) and rows[first][R_KEY] == key:  # (the next: rows end in order)
            first += 1
            if first == len(rows):
                rows.clear()
                first = 0
            self.first = first
            return
        for at in range(first + 1, len(rows)):
            if rows[at][R_KEY] == key:
                del rows[at]
                return
        raise KeyError(key)


@dataclass(slots=True)
class Task:
    """An accepted attempt (``executor_intake._task`` builds one with every field by position,
    in this order)."""

    run_id: str
    task_id: str
    attempt: int
    owner_address: str
    cost: dict[str, float]
    gpus: list[int]
    argument_inclusion: str
    timeout: float | None
    payload: bytes
    inputs: tuple[m.InputRef, ...]
    frames: dict[int, bytes]  # frame index -> bytes, for the frames this task refers to
    # dependency ids still being fetched (``NO_MISSING`` until one is)
    missing: set[str] | frozenset[str] = NO_MISSING
    running: bool = False  # submitted to the worker pool
    claimed: bool = True  # False while in the local queue: holds no ledger claim yet
    slot: Slot | None = None  # set once started: the slot's claim covers it (not its own)
    bytes_in: int = 0  # payload and input values handed to the job (task history)
    payload_frame: int = -1  # the frame that is ``payload``
    # The store keys it needs before it starts (values fetched from peers, far frames): counted
    # in the executor's ``_needs`` when gathered, given back when it starts or is withdrawn.
    needs: tuple[str, ...] = ()
    # (frame, store key, holder address) of frames sent by reference, pulled before it starts
    far: tuple[tuple[int, str, str], ...] = ()
    # Its inputs when every one is a direct value (no inline function, no hook), in argument
    # order: a frame number (the value came in the dispatch) or a store key (a value here or
    # fetched); None: read ``inputs`` (``job_inputs``). Built without an ``InputRef`` per input
    # from a received table (``executor_intake``), whose ``inputs`` are then empty.
    flat: tuple[int | str, ...] | None = None
    # (the received table, the index of its first input) until it is gathered: where the values
    # it needs are held (``Inputs._holders``)
    source: tuple[Any, int] | None = None
    # Its place in the local queue, smallest first: (-(priority - arrival's aging level),
    # -upward rank, arrival number); see ``queue_key``.
    qkey: tuple[int, float, int] = (0, 0.0, 0)


#: A queued plain task with no inputs, accepted from a received table (``Intake._accept_table``),
#: is kept in ``tasks`` as this row rather than a ``Task``: a list of the fields it can differ in,
#: at these indices (its slot is set when a refill chains it, its key is the one ``tasks`` holds
#: it under, and a chained row is on its slot's ``rows``; a row replaced by its ``Task`` in
#: ``tasks`` has its slot cleared, so the slot's rows know it is not theirs to end). The hot paths (``_refill``,
#: ``_ended``) read rows in place; any other path asks for the task (``ExecutorState.task``),
#: which turns the row into its ``Task`` (``row_task``) for good.
Row = list[Any]
R_RUN, R_TASK, R_ATTEMPT, R_OWNER, R_COST, R_INCLUSION, R_TIMEOUT, R_PAYLOAD = range(8)
R_FRAME, R_QKEY, R_SLOT, R_KEY = 8, 9, 10, 11
_NOT_IN = object()  # (``Slot.drop``'s: a key with no entry)


def row_task(row: Row) -> Task:
    """The ``Task`` a row stands for: the record ``_accept_table`` made of such a task before
    rows (a copy of its table's cost, a frames map of its payload), then chained when it has a
    slot (``start_task``'s fields, its bytes in its payload's: it has no inputs)."""
    slot: Slot | None = row[R_SLOT]
    payload = row[R_PAYLOAD]
    task = _new(Task)
    task.run_id = row[R_RUN]
    task.task_id = row[R_TASK]
    task.attempt = row[R_ATTEMPT]
    task.owner_address = row[R_OWNER]
    task.cost = dict(row[R_COST])
    task.gpus = [] if slot is None else slot.gpus
    task.argument_inclusion = row[R_INCLUSION]
    task.timeout = row[R_TIMEOUT]
    task.payload = payload
    task.inputs = ()
    task.frames = {row[R_FRAME]: payload}
    task.missing = NO_MISSING
    task.running = slot is not None
    task.claimed = slot is not None
    task.slot = slot
    task.bytes_in = 0 if slot is None else len(payload)
    task.payload_frame = row[R_FRAME]
    task.needs = ()
    task.far = ()
    task.flat = ()
    task.source = None
    task.qkey = row[R_QKEY]
    return task


@dataclass
class Fetch:
    run_id: str
    task_ids: tuple[str, ...]
    address: str
    deadline: float  # the clock's time the fetch is given up (then the next holder is asked)
    pull: Any = None  # a value pulled in chunks: its ``store.chunks.Pull``


def accepted_task(
    msg: m.DispatchTasks,
    item: m.DispatchItem,
    frames: list[bytes],
    inputs: tuple[m.InputRef, ...],
    gpus: list[int] | None,
    qkey: tuple[int, float, int],
) -> Task:
    """The record of a dispatched item just accepted (``gpus``: its claim, None when queued)."""
    payload_frame = item.payload_frame
    kept = {payload_frame: frames[payload_frame]}
    needs: list[str] = []
    flat: list[int | str] = []
    tree = False  # an inline input (or one under it): ``job_inputs`` reads ``inputs``
    if inputs is item.inputs:  # (no serialize hook: one pass for frames and values to have)
        for ref in inputs:
            if ref.frame >= 0:
                kept[ref.frame] = frames[ref.frame]
                flat.append(ref.frame)
            elif ref.kind == "value":
                needs.append(ref.task_id)
                flat.append(ref.task_id)
            if ref.parent != -1 or ref.kind != "value":
                tree = True
    elif item.inputs:  # the hooks' inputs: frames of what was sent, values of what is run
        tree = True
        for ref in item.inputs:
            if ref.frame >= 0:
                kept[ref.frame] = frames[ref.frame]
        needs = [r.task_id for r in inputs if r.kind == "value" and r.frame < 0]
    far: tuple[tuple[int, str, str], ...] = ()
    if msg.far:  # big arguments sent by reference: pulled like values
        far = tuple((f.frame, f.key, f.holder) for f in msg.far if f.frame in kept)
        needs += [key for _, key, _ in far]
    return Task(
        run_id=msg.run_id,
        task_id=item.task_id,
        attempt=item.attempt,
        owner_address=msg.owner_address,
        cost=dict(item.cost),
        argument_inclusion=item.argument_inclusion,
        timeout=item.timeout,
        payload=frames[payload_frame],
        payload_frame=payload_frame,
        inputs=inputs,
        frames=kept,
        needs=tuple(needs),
        far=far,
        flat=None if tree else tuple(flat),
        gpus=[] if gpus is None else gpus,
        claimed=gpus is not None,
        qkey=qkey,
    )


def queue_key(priority: int, rank: float, arrived: float, seq: int) -> tuple[int, float, int]:
    """The local queue's order of a task: priority plus one level per ``AGING_SECONDS`` waited,
    then the longer critical path (upward rank), then arrival. Every queued task ages at the same
    rate, so the order by ``priority + (now - arrived) / AGING_SECONDS`` is the order by
    ``priority - arrived / AGING_SECONDS``: a key fixed on arrival (levels are whole, so tasks
    that arrived within one aging step compare by critical path)."""
    return (-(priority - math.floor(arrived / AGING_SECONDS)), -rank, seq)


class QueueOrder:
    """A node's local queue in start order (``queue_key``): sorted again after arrivals (timsort:
    near linear on the sorted run plus a batch), or the arrivals appended when they come after
    the order's last key in their own order (``arrived``: a run's table of one priority and rank,
    W1's every one); keys that left the queue stay until compacted or trimmed off the front
    (``executor_rows.refill``)."""

    def __init__(self) -> None:
        # Every queued key once, in start order, among keys that left the queue (unless dirty)
        self.keys: list[Key] = []
        self.dirty = False  # a task joined the queue since the last sort

    def arrived(self, local: dict[Key, QKey], queued: list[Key], in_order: bool) -> None:
        """``queued`` (keys that just joined ``local``, in arrival order; ``in_order``: their
        queue keys ascend in that order) taken into the order: appended when that is where a
        sort would put them, else the order is sorted again at its next read. Appended only
        when ``keys`` holds no key that left the queue (its length is the queue's before them):
        a key that left and came back must not be found at its old place too."""
        keys = self.keys
        if (
            not in_order
            or self.dirty
            or len(keys) + len(queued) != len(local)
            or (keys and not local[keys[-1]] < local[queued[0]])
        ):
            self.dirty = True
        else:
            keys += queued

    def keys_of(self, local: dict[Key, QKey]) -> list[Key]:
        """``local`` maps each queued task's key to its ``Task.qkey``: sorted by the dict's own
        look-up (no Python call and no second dict a queued task)."""
        if self.dirty:
            self.keys = sorted(local, key=local.__getitem__)
            self.dirty = False
        elif len(self.keys) > 2 * len(local) + 16:
            self.keys = [k for k in self.keys if k in local]
        return self.keys


_task_report = maker(m.TaskReport)  # one per attempt that ends without a value (registry.maker)
Report = ReportRow | m.TaskReport  # what an ended attempt leaves for its owner (``done_report``)


def done_report(
    task: Task, size: int, timing: tuple[int, float, float], duration: float
) -> ReportRow:
    """The report of an attempt that produced a value of ``size`` bytes, as the row its batch's
    columns are transposed from (``columns.ReportTable.of_rows``: no ``TaskReport`` per task);
    ``timing``: (worker pid, wall-clock start, end); ``duration``: seconds it ran in the worker."""
    pid, started, ended = timing
    return (task.task_id, task.attempt, 1, size, duration, pid, started, ended, task.bytes_in)


def failed(
    task: Task,
    kind: str,
    exc_type: str,
    message: str,
    traceback: str = "",
    timing: tuple[int, float, float] = (0, 0.0, 0.0),
) -> m.TaskReport:
    """The report of an attempt that ended without a value; ``timing``: (worker pid, wall-clock
    start, end) when it ran."""
    pid, started, ended = timing
    return _task_report(
        task.task_id,
        task.attempt,
        "FAILED",
        0,
        -1,
        kind,
        exc_type,
        message,
        traceback,
        pid,
        started,
        ended,
        task.bytes_in,
    )


def report_message(
    run_id: str, entries: list[tuple[Report, bytes | None, str]], ledger: Any
) -> tuple[ReportColumns, list[Any]]:
    """One owner's batch of reports for a run, to another node: each entry (report, inline value
    or None, output) in ``ReportColumns`` built straight from the entries
    (``columns.reports_as_columns``), the values packed into one frame. ``ledger``: our free
    resources go along."""
    reports, values, outputs = zip(*entries, strict=True)  # (never empty: a flushed batch)
    return reports_as_columns(
        run_id,
        reports,
        values,
        outputs if any(outputs) else (),
        dict(ledger.free),
        ledger.version,
    )


_REPORT_FIELDS = attrgetter(*(f.name for f in fields(m.TaskReport)))
_FRAME = [f.name for f in fields(m.TaskReport)].index("frame")


def with_frame(report: m.TaskReport, frame: int) -> m.TaskReport:
    """``report`` naming ``frame`` for its inline value. Positional: ``dataclasses.replace`` reads
    every field by name and takes keywords, ~1.7x the time (once per W1/W2 task sent)."""
    row = _REPORT_FIELDS(report)
    return _task_report(*row[:_FRAME], frame, *row[_FRAME + 1 :])


def _reports_message(
    run_id: str,
    entries: Sequence[m.TaskReport],
    values: Sequence[bytes | None],
    outputs: tuple[str, ...],
    free: dict[str, float],
    version: int,
) -> tuple[m.TasksReported, list[bytes]]:
    reports: list[m.TaskReport] = []
    frames: list[bytes] = []
    for report, value in zip(entries, values, strict=True):
        if value is not None:
            report = with_frame(report, len(frames))
            frames.append(value)
        reports.append(report)
    return m.TasksReported(run_id, tuple(reports), free, version, outputs), frames


def reported_here(
    run_id: str, term: int, entries: list[tuple[Report, bytes | None, str]], ledger: Any
) -> ReportedHere:
    """``report_message`` for our own node's owner: the table it reads a remote batch into
    (``columns.ReportTable``, no value frame named), the values beside it."""
    reports, values, outputs = zip(*entries, strict=True)  # (never empty: a flushed batch)
    table = ReportTable.of_rows(reports, [-1] * len(values), outputs if any(outputs) else ())
    return ReportedHere(run_id, term, table, values, dict(ledger.free), ledger.version)


_task_attempt = maker(m.TaskAttempt)  # one per accepted task (registry.maker)


def dispatch_replied(
    run_id: str,
    accepted: Sequence[tuple[str, int]],
    refused: Sequence[tuple[str, int, str]],
    free: dict[str, float],
    version: int,
) -> m.DispatchReplied:
    """The answer to a dispatch from another node's owner (or what ``AnsweredHere`` stands for)."""
    attempts = tuple(_task_attempt(t, a) for t, a in accepted)
    refusals = tuple(m.Refusal(t, a, why) for t, a, why in refused)
    return m.DispatchReplied(run_id, attempts, refusals, free, version)


def replied_message(
    run_id: str,
    accepted: Sequence[tuple[str, int]],
    refused: Sequence[tuple[str, int, str]],
    free: dict[str, float],
    version: int,
) -> RepliedColumns:
    """The answer to a dispatch from another node's owner as the columns it is sent as: what
    ``columns.replied_columns`` of ``dispatch_replied``'s message gives, without a
    ``TaskAttempt`` per accepted task."""
    ids, attempts = zip(*accepted, strict=True) if accepted else ((), ())
    no, tries, why = zip(*refused, strict=True) if refused else ((), (), ())
    return RepliedColumns(
        run_id, ids, pack("q", attempts), no, pack("q", tries), why, free, version
    )


def here_message(
    ins: AnsweredHere | ReportedHere,
) -> tuple[m.DispatchReplied | m.TasksReported, list[bytes]]:
    """The message a record for our own owner stands for (a shell with no owner to hand it to
    sends it; a takeover keeps it as received)."""
    if isinstance(ins, AnsweredHere):
        reply = dispatch_replied(
            ins.run_id, ins.accepted, ins.refused, ins.free, ins.resource_version
        )
        return reply, []
    return _reports_message(
        ins.run_id, ins.reports, ins.values, ins.outputs, ins.free, ins.resource_version
    )


def check_item(item: m.DispatchItem, frames: list[bytes]) -> str:
    """Why a dispatched item's frame references are unusable ("" if they are fine)."""
    if not 0 <= item.payload_frame < len(frames):
        return "bad payload frame"
    for ref in item.inputs:
        if ref.frame >= len(frames) or ref.kind not in ("value", "inline", "serialize"):
            return "bad input reference"
        if ref.kind != "value" and ref.frame < 0:
            return "inline input without payload"
    return ""


def job_inputs(task: Task, store: ResultStore) -> list[Any]:
    """The task's input descriptors for its Job (``worker.invoke.resolve``); LookupError when a
    value it needs is no longer in ``store``."""
    plain = task.flat
    if plain is not None:  # every input a direct value: a frame number or a store key
        run_id, peek, get, frames = task.run_id, store.peek, store.get, task.frames
        out: list[Any] = []
        for x in plain:
            if type(x) is int:
                out.append(("value", frames[x]))
                continue
            value = peek((run_id, x))  # type: ignore[arg-type]
            if value is None:  # spilled, or gone
                value = get(run_id, x)  # type: ignore[arg-type]
                if value is None:
                    raise LookupError(f"input {x!r} vanished from the store")
            out.append(("value", value))
        return out
    if not task.inputs:
        return []
    flat = []  # the usual case, every input a direct value: one pass, no tree
    run_id, get = task.run_id, store.get
    for ref in task.inputs:
        if ref.parent != -1 or ref.kind == "inline":
            break
        if ref.frame >= 0:
            flat.append(("value", task.frames[ref.frame]))
            continue
        value = get(run_id, ref.task_id)  # (``_value`` inlined: a call fewer per input)
        if value is None:
            raise LookupError(f"input {ref.task_id!r} vanished from the store")
        flat.append(("value", value))
    else:
        return flat
    children: dict[int, list[int]] = {}
    for index, ref in enumerate(task.inputs):
        children.setdefault(ref.parent, []).append(index)
    return [_convert(task, store, children, i) for i in children.get(-1, ())]


def _convert(task: Task, store: ResultStore, children: dict[int, list[int]], index: int) -> Any:
    # A function, not a closure: a self-referencing closure made a reference cycle per task,
    # left to the cyclic garbage collector.
    ref = task.inputs[index]
    if ref.kind == "inline":
        nested = [_convert(task, store, children, c) for c in children.get(index, ())]
        return ("inline", task.frames[ref.frame], ref.argument_inclusion, nested)
    return _value(task, store, ref)


def _value(task: Task, store: ResultStore, ref: m.InputRef) -> tuple[str, Any]:
    if ref.frame >= 0:
        return ("value", task.frames[ref.frame])
    value = store.get(task.run_id, ref.task_id)
    if value is None:
        raise LookupError(f"input {ref.task_id!r} vanished from the store")
    return ("value", value)


def values_fetched(store: Any, msg: m.FetchValues) -> tuple[m.ValuesFetched, list[bytes]]:
    """The answer to a peer's ``FetchValues``: one frame per value ``store`` holds."""
    found: list[str] = []
    missing: list[str] = []
    frames: list[bytes] = []
    for task_id in msg.task_ids:
        value = store.get(msg.run_id, task_id)
        if value is None:
            missing.append(task_id)
        else:
            found.append(task_id)
            frames.append(value)
    return m.ValuesFetched(msg.request_id, msg.run_id, tuple(found), tuple(missing)), frames
