"""Packing and checking the columns of ``messages_columns``: numbers to little-endian bytes and
back, and the conversions between the per-task messages and their column forms. Pure.

A malformed message (a column of the wrong length, an index out of range, a code that means
nothing) raises ``ColumnError`` naming the message, the column and what was expected; the
receiver drops the message and logs that (the daemon keeps running; an unanswered dispatch is
placed again by its owner after the answer timeout).
"""

from __future__ import annotations

import itertools
import math
import sys
from array import array
from collections.abc import Sequence
from typing import Any

from handoffd.protocol import messages as m
from handoffd.protocol.messages_columns import (
    DispatchColumns,
    RepliedColumns,
    ReportColumns,
    ReportFailure,
)
from handoffd.protocol.registry import maker

_SWAP = sys.byteorder != "little"  # the wire is little-endian
_SIZES = {"q": 8, "i": 4, "B": 1, "d": 8}
_NAMES = {"q": "int64", "i": "int32", "B": "uint8", "d": "float64"}
STATES = ("RUNNING", "DONE", "FAILED")
_STATE_CODE = {s: i for i, s in enumerate(STATES)}
INPUT_KINDS = ("value", "inline", "serialize")  # serialize: handoffd.Argument's (executor_hooks)
_KIND_CODE = {k: i for i, k in enumerate(INPUT_KINDS)}


class ColumnError(ValueError):
    """A column message that cannot be read as sent (lengths or indices disagree)."""


def pack(code: str, values: Sequence[Any]) -> bytes:
    """``values`` as little-endian ``code`` (q, i, B, d) bytes; TypeError/OverflowError on a
    value of the wrong type or range."""
    a = array(code, values)
    if _SWAP:
        a.byteswap()
    return a.tobytes()


def unpack(code: str, data: bytes, count: int, what: str) -> list[Any]:
    """``count`` values of type ``code`` from ``data``; ColumnError (saying ``what``) if its length
    is not exactly that."""
    size = _SIZES[code]
    if len(data) != count * size:
        raise ColumnError(
            f"{what}: {len(data)} bytes, expected {count} x {size} ({count} {_NAMES[code]} "
            "values, one per entry): the sender built inconsistent columns"
        )
    a = array(code)
    a.frombytes(data)
    if _SWAP:
        a.byteswap()
    return a.tolist()


def _indices(values: list[int], limit: int, what: str, low: int = 0) -> None:
    # (min and max in C: a Python loop here was ~120 bytecodes a dispatched task with 3 inputs)
    if values and (min(values) < low or max(values) >= limit):
        v = next(v for v in values if not low <= v < limit)
        raise ColumnError(f"{what}: index {v} out of range [{low}, {limit})")


def _strings(values: tuple[str, ...], count: int, what: str) -> None:
    if len(values) != count:
        raise ColumnError(f"{what}: {len(values)} entries, expected {count} (one per entry)")


# ---------------------------------------------------------------------------------------------
# Frames: small ones packed into one (a ZeroMQ part and a CURVE box each cost more than a copy)
# ---------------------------------------------------------------------------------------------

#: frames at least this long travel alone (pyzmq sends them without a copy)
JOIN_BELOW = 1 << 16


def join_frames(frames: list[Any], below: int = JOIN_BELOW) -> tuple[bytes, list[Any]]:
    """(``frame_sizes``, the frames to send) for logical ``frames``: those shorter than ``below``
    packed back to back into the first frame sent, the others after it in order; (b"", frames)
    when packing would save nothing (fewer than two small ones)."""
    sizes = list(map(len, frames))
    if len(sizes) > 1 and max(sizes) < below:
        # All small (a log batch's or a dispatch's values, as a rule): one pass, in C, not three
        # in Python (a replication flush spent more here than in building its rows).
        return pack("q", sizes), [b"".join(frames)]
    small = [f for f, n in zip(frames, sizes, strict=True) if n < below]
    if len(small) < 2:
        return b"", frames
    sizes = [n if n < below else -1 for n in sizes]
    return pack("q", sizes), [
        b"".join(small),
        *(f for f, n in zip(frames, sizes, strict=True) if n < 0),
    ]


def check_frames(frame_sizes: bytes, frames: Sequence[Any], what: str) -> None:
    """Raise the ColumnError ``split_frames`` would, without splitting: for a receiver that keeps
    the frames as they came and splits them later, if ever."""
    if not frame_sizes:
        return
    sizes = unpack("q", frame_sizes, len(frame_sizes) // 8, f"{what}.frame_sizes")
    if len(frame_sizes) % 8 or not frames:
        raise ColumnError(f"{what}.frame_sizes: {len(frame_sizes)} bytes and {len(frames)} frames")
    if sizes and min(sizes) < -1:
        raise ColumnError(f"{what}.frame_sizes: {min(sizes)} is neither a size nor -1")
    apart = sizes.count(-1)
    if apart > len(frames) - 1:
        raise ColumnError(f"{what}.frame_sizes: more separate frames than were sent")
    if sum(sizes) + apart > len(frames[0]):
        raise ColumnError(f"{what}.frame_sizes: the packed frames exceed the first frame")
    if sum(sizes) + apart != len(frames[0]) or apart != len(frames) - 1:
        raise ColumnError(f"{what}.frame_sizes: the sizes do not cover the frames sent")


def split_frames(frame_sizes: bytes, frames: list[Any], what: str) -> list[Any]:
    """The logical frames of a message sent with ``join_frames``; ColumnError if the sizes do
    not match the frames received."""
    if not frame_sizes:
        return frames
    sizes = unpack("q", frame_sizes, len(frame_sizes) // 8, f"{what}.frame_sizes")
    if len(frame_sizes) % 8 or not frames:
        raise ColumnError(f"{what}.frame_sizes: {len(frame_sizes)} bytes and {len(frames)} frames")
    blob = memoryview(frames[0])
    out: list[Any] = []
    at, rest = 0, 1
    for size in sizes:
        if size < -1:
            raise ColumnError(f"{what}.frame_sizes: {size} is neither a size nor -1")
        if size == -1:
            if rest >= len(frames):
                raise ColumnError(f"{what}.frame_sizes: more separate frames than were sent")
            out.append(frames[rest])
            rest += 1
        else:
            if at + size > len(blob):
                raise ColumnError(f"{what}.frame_sizes: the packed frames exceed the first frame")
            out.append(blob[at : at + size].tobytes())
            at += size
    if at != len(blob) or rest != len(frames):
        raise ColumnError(f"{what}.frame_sizes: the sizes do not cover the frames sent")
    return out


# ---------------------------------------------------------------------------------------------
# Dispatch: built by the owner from the scheduler's Dispatch (daemon.dispatch), read back here
# ---------------------------------------------------------------------------------------------


# Built once per task and per input of every dispatch a node receives (registry.maker).
_input_ref = maker(m.InputRef)
_dispatch_item = maker(m.DispatchItem)


class DispatchTable:
    """A ``DispatchColumns`` read and checked once: plain lists, one entry per task and per
    input (what the executor accepts tasks from, ``daemon.executor_intake``); ``tasks()``: its
    per-task form. ColumnError if any column disagrees with the others, so everything read from
    it later is in range.

    ``plain``: every input is a direct argument (parent -1) holding a value (kind "value"), so a
    task's inputs are just its slice of ``input_task_ids`` / ``input_frames`` (no tree, no hook)."""

    __slots__ = (
        "msg",
        "run_id",
        "owner_address",
        "packages",
        "far",
        "task_ids",
        "input_task_ids",
        "inclusions",
        "attempts",
        "payloads",
        "costs",
        "inclusion",
        "timeouts",
        "priorities",
        "ranks",
        "counts",
        "input_kinds",
        "frames",
        "input_inclusion",
        "parents",
        "holder_counts",
        "holders",
        "plain",
        "_held",
    )

    def __init__(self, msg: DispatchColumns) -> None:
        name = "DispatchColumns"
        n = len(msg.task_ids)
        self.msg = msg
        self.run_id, self.owner_address = msg.run_id, msg.owner_address
        self.packages, self.far = msg.packages, msg.far
        self.task_ids = msg.task_ids
        self.input_task_ids, self.inclusions = msg.input_task_ids, msg.inclusions
        self.attempts: list[int] = unpack("q", msg.attempts, n, f"{name}.attempts")
        self.payloads: list[int] = unpack("i", msg.payload_frames, n, f"{name}.payload_frames")
        kinds = msg.cost_kinds
        costs = unpack(
            "d", msg.costs, n * len(kinds), f"{name}.costs ({len(kinds)} kinds per task)"
        )
        self.inclusion: list[int] = unpack("B", msg.inclusion, n, f"{name}.inclusion")
        _indices(self.inclusion, len(msg.inclusions), f"{name}.inclusion")
        self.timeouts: list[float] = unpack("d", msg.timeouts, n, f"{name}.timeouts")
        self.priorities: list[int] = unpack("q", msg.priorities, n, f"{name}.priorities")
        self.ranks: list[float] = unpack("d", msg.ranks, n, f"{name}.ranks")
        counts = self.counts = unpack("i", msg.input_counts, n, f"{name}.input_counts")
        if counts and min(counts) < 0:
            raise ColumnError(f"{name}.input_counts: a negative count")
        total = sum(counts)
        _strings(msg.input_task_ids, total, f"{name}.input_task_ids")
        self.input_kinds: list[int] = unpack("B", msg.input_kinds, total, f"{name}.input_kinds")
        _indices(self.input_kinds, len(INPUT_KINDS), f"{name}.input_kinds")
        self.frames: list[int] = unpack("i", msg.input_frames, total, f"{name}.input_frames")
        inclusion = unpack("B", msg.input_inclusion, total, f"{name}.input_inclusion")
        _indices(inclusion, len(msg.inclusions), f"{name}.input_inclusion")
        self.input_inclusion: list[int] = inclusion
        parents = self.parents = unpack("i", msg.input_parents, total, f"{name}.input_parents")
        plain_parents = parents.count(-1) == total
        if not plain_parents:  # (inline inputs: each must name an earlier input of its task)
            at = 0
            for count in counts:
                for j in range(at, at + count):
                    if not -1 <= parents[j] < j - at:
                        raise ColumnError(
                            f"{name}.input_parents: {parents[j]} is not an earlier input"
                        )
                at += count
        holder_counts = unpack("i", msg.input_holders, total, f"{name}.input_holders")
        if holder_counts and min(holder_counts) < 0:
            raise ColumnError(f"{name}.input_holders: a negative count")
        self.holder_counts: list[int] = holder_counts
        self.holders: list[int] = unpack("i", msg.holders, sum(holder_counts), f"{name}.holders")
        _indices(self.holders, len(msg.addresses), f"{name}.holders")
        self.plain = plain_parents and self.input_kinds.count(0) == total
        # A task's cost as a dict, made once per distinct row of the message (its tasks mostly
        # cost the same) and shared: its readers copy what they keep.
        width = len(kinds)
        rows = zip(*[iter(costs)] * width, strict=True) if width else iter(((),) * n)
        cost_of: dict[tuple[float, ...], dict[str, float]] = {}
        shared: list[dict[str, float]] = []
        for row in rows:
            cost = cost_of.get(row)
            if cost is None:
                cost = cost_of[row] = {kind: q for kind, q in zip(kinds, row, strict=True) if q}
            shared.append(cost)
        self.costs = shared
        self._held: list[int] | None = None  # each input's first entry in ``holders``

    def __len__(self) -> int:
        return len(self.task_ids)

    def timeout(self, i: int) -> float | None:
        t = self.timeouts[i]
        return None if t != t else t  # (NaN: no timeout)

    def locations(self, j: int) -> tuple[str, ...]:
        """The addresses holding input ``j`` (of the flattened input columns)."""
        if self._held is None:
            self._held = [0, *itertools.accumulate(self.holder_counts)]
        start = self._held[j]
        addresses = self.msg.addresses
        return tuple(addresses[h] for h in self.holders[start : start + self.holder_counts[j]])

    def tasks(self) -> m.DispatchTasks:
        """The per-task form (``DispatchTasks``: the executor's path for what is not ``plain``)."""
        msg = self.msg
        inclusions, task_ids, counts = msg.inclusions, self.task_ids, self.counts
        items = []
        at = held = 0
        for i in range(len(task_ids)):
            count = counts[i]
            refs: tuple[m.InputRef, ...] = ()
            if count:
                refs = _input_refs(self, at, count, held)
                held += sum(self.holder_counts[at : at + count])
                at += count
            items.append(
                _dispatch_item(
                    task_ids[i],
                    self.attempts[i],
                    self.costs[i],
                    inclusions[self.inclusion[i]],
                    self.timeout(i),
                    self.payloads[i],
                    refs,
                    self.priorities[i],
                    self.ranks[i],
                )
            )
        return m.DispatchTasks(msg.run_id, msg.owner_address, tuple(items), msg.packages, msg.far)


def dispatch_items(msg: DispatchColumns) -> m.DispatchTasks:
    """The per-task form of ``msg``; ColumnError if any column disagrees with the others."""
    return DispatchTable(msg).tasks()


def _input_refs(table: DispatchTable, at: int, count: int, held: int) -> tuple[m.InputRef, ...]:
    """One task's inputs: entries ``at`` .. ``at + count`` of the input columns, their holders
    from entry ``held`` of ``holders`` on (the parents were checked by ``DispatchTable``)."""
    addresses, inclusions = table.msg.addresses, table.msg.inclusions
    input_ids, kinds, frames = table.msg.input_task_ids, table.input_kinds, table.frames
    holder_counts, holders = table.holder_counts, table.holders
    parents, input_inclusion = table.parents, table.input_inclusion
    refs = []
    for j in range(at, at + count):
        k = holder_counts[j]
        if k == 1:  # (most inputs: one holder, or none; no generator per input)
            locations: tuple[str, ...] = (addresses[holders[held]],)
        elif k:
            locations = tuple(map(addresses.__getitem__, holders[held : held + k]))
        else:
            locations = ()
        held += k
        refs.append(
            _input_ref(
                INPUT_KINDS[kinds[j]],
                input_ids[j],
                locations,
                frames[j],
                inclusions[input_inclusion[j]],
                parents[j],
            )
        )
    return tuple(refs)


def dispatch_columns(msg: m.DispatchTasks) -> DispatchColumns:
    """``msg`` as columns (tests and tools; the owner builds its columns directly,
    ``daemon.dispatch.dispatch_message``)."""
    kinds = sorted({k for item in msg.items for k in item.cost})
    inclusions: dict[str, int] = {}
    addresses: dict[str, int] = {}
    inputs = [ref for item in msg.items for ref in item.inputs]
    for item in msg.items:
        inclusions.setdefault(item.argument_inclusion, len(inclusions))
    for ref in inputs:
        inclusions.setdefault(ref.argument_inclusion, len(inclusions))
        for a in ref.locations:
            addresses.setdefault(a, len(addresses))
    items = msg.items
    return DispatchColumns(
        msg.run_id,
        msg.owner_address,
        tuple(i.task_id for i in items),
        pack("q", [i.attempt for i in items]),
        pack("i", [i.payload_frame for i in items]),
        tuple(kinds),
        pack("d", [float(i.cost.get(k, 0.0)) for i in items for k in kinds]),
        tuple(inclusions),
        pack("B", [inclusions[i.argument_inclusion] for i in items]),
        pack("d", [math.nan if i.timeout is None else i.timeout for i in items]),
        pack("q", [i.priority for i in items]),
        pack("d", [i.rank for i in items]),
        pack("i", [len(i.inputs) for i in items]),
        pack("B", [_KIND_CODE[r.kind] for r in inputs]),
        tuple(r.task_id for r in inputs),
        pack("i", [r.frame for r in inputs]),
        pack("B", [inclusions[r.argument_inclusion] for r in inputs]),
        pack("i", [r.parent for r in inputs]),
        pack("i", [len(r.locations) for r in inputs]),
        tuple(addresses),
        pack("i", [addresses[a] for r in inputs for a in r.locations]),
        msg.packages,
    )


# ---------------------------------------------------------------------------------------------
# Answers and reports: the executor's state machine builds the per-task messages, its shell
# sends them as columns (replied_columns, report_columns), the owner reads the columns
# ---------------------------------------------------------------------------------------------


def replied_columns(msg: m.DispatchReplied) -> RepliedColumns:
    return RepliedColumns(
        msg.run_id,
        tuple(a.task_id for a in msg.accepted),
        pack("q", [a.attempt for a in msg.accepted]),
        tuple(r.task_id for r in msg.refused),
        pack("q", [r.attempt for r in msg.refused]),
        tuple(r.reason for r in msg.refused),
        msg.free,
        msg.resource_version,
    )


def replied_pairs(
    msg: RepliedColumns,
) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, int, str], ...]]:
    """(accepted (task_id, attempt), refused (task_id, attempt, reason)); ColumnError if the
    columns disagree."""
    accepted = unpack("q", msg.accepted_attempts, len(msg.accepted_ids), "RepliedColumns.accepted")
    refused = unpack("q", msg.refused_attempts, len(msg.refused_ids), "RepliedColumns.refused")
    _strings(msg.refused_reasons, len(refused), "RepliedColumns.refused_reasons")
    return (
        tuple(zip(msg.accepted_ids, accepted, strict=True)),
        tuple(zip(msg.refused_ids, refused, msg.refused_reasons, strict=True)),
    )


def report_columns(msg: m.TasksReported, frame_sizes: bytes = b"") -> ReportColumns:
    """``msg`` as columns; ``frame_sizes``: how its frames were packed (``join_frames``)."""
    table = ReportTable.of_rows(msg.reports, [r.frame for r in msg.reports], msg.outputs)
    return packed_reports(msg.run_id, table, msg.free, msg.resource_version, frame_sizes)


def reports_as_columns(
    run_id: str,
    reports: Sequence[ReportRow | m.TaskReport],
    values: Sequence[bytes | None],
    outputs: tuple[str, ...],
    free: dict[str, float],
    version: int,
) -> tuple[ReportColumns, list[Any]]:
    """The ``ReportColumns`` and frames to send for ``reports`` (rows or reports, their
    ``frame`` unused), each with its inline value or None in ``values``: the frame column is
    numbered here, the values packed by ``join_frames``. What ``report_columns`` of the
    ``TasksReported`` with the reports naming their frames gives, without that message and a
    report rebuilt per inline value."""
    if None not in values:  # (the usual batch: every value inline, numbered in order)
        numbers = list(range(len(values)))
        frames: list[Any] = list(values)
    else:
        numbers, frames = [], []
        for value in values:
            if value is None:
                numbers.append(-1)
            else:
                numbers.append(len(frames))
                frames.append(value)
    sizes, frames = join_frames(frames)
    table = ReportTable.of_rows(reports, numbers, outputs)
    return packed_reports(run_id, table, free, version, sizes), frames


#: A report as one row: ``ReportColumns``' columns but ``frames`` (where its value travels is the
#: sender's business), the state as its code. The executor builds one per attempt that ended
#: with a value (``executor_records.done_report``); a ``TaskReport`` only for the rest.
ReportRow = tuple[str, int, int, int, float, int, float, float, int]


def report_row(r: m.TaskReport) -> ReportRow:
    """``r`` as a row (its failure, if any, is not in it: ``ReportTable.of_rows``); ``ColumnError``
    for a state no build sends (a received ``TasksReported`` is dropped and logged for it)."""
    state = _STATE_CODE.get(r.state)
    if state is None:
        raise ColumnError(f"report of task {r.task_id!r}: unknown state {r.state!r}")
    return (r.task_id, r.attempt, state, r.size, r.duration, r.pid, r.started, r.ended, r.bytes_in)


def packed_reports(
    run_id: str, table: ReportTable, free: dict[str, float], version: int, frame_sizes: bytes
) -> ReportColumns:
    """``table`` (built here, not received: unchecked) as the message."""
    return ReportColumns(
        run_id,
        table.task_ids,
        pack("q", table.attempts),
        pack("B", table.states),
        pack("q", table.sizes),
        pack("i", table.frames),
        pack("d", table.durations),
        pack("q", table.pids),
        pack("d", table.started),
        pack("d", table.ended),
        pack("q", table.bytes_in),
        tuple(table.failures.values()),
        free,
        version,
        table.outputs,
        frame_sizes,
    )


class ReportTable:
    """A ``ReportColumns`` read and checked: plain lists, one entry per report."""

    __slots__ = (
        "task_ids",
        "attempts",
        "states",
        "sizes",
        "frames",
        "durations",
        "pids",
        "started",
        "ended",
        "bytes_in",
        "failures",
        "outputs",
    )

    def __init__(self, msg: ReportColumns) -> None:
        name = "ReportColumns"
        n = len(msg.task_ids)
        self.task_ids = msg.task_ids
        self.attempts: list[int] = unpack("q", msg.attempts, n, f"{name}.attempts")
        self.states: list[int] = unpack("B", msg.states, n, f"{name}.states")
        _indices(self.states, len(STATES), f"{name}.states")
        self.sizes: list[int] = unpack("q", msg.sizes, n, f"{name}.sizes")
        self.frames: list[int] = unpack("i", msg.frames, n, f"{name}.frames")
        self.durations: list[float] = unpack("d", msg.durations, n, f"{name}.durations")
        self.pids: list[int] = unpack("q", msg.pids, n, f"{name}.pids")
        self.started: list[float] = unpack("d", msg.started, n, f"{name}.started")
        self.ended: list[float] = unpack("d", msg.ended, n, f"{name}.ended")
        self.bytes_in: list[int] = unpack("q", msg.bytes_in, n, f"{name}.bytes_in")
        self.failures: dict[int, ReportFailure] = {}
        for failure in msg.failures:
            if not 0 <= failure.index < n or self.states[failure.index] != 2:
                raise ColumnError(f"{name}.failures: index {failure.index} is not a FAILED report")
            self.failures[failure.index] = failure
        if len(self.failures) != self.states.count(2):
            raise ColumnError(f"{name}.failures: not one record per FAILED report")
        if msg.outputs:
            _strings(msg.outputs, n, f"{name}.outputs")
        self.outputs = msg.outputs

    @classmethod
    def of_rows(
        cls,
        reports: Sequence[ReportRow | m.TaskReport],
        frames: list[int],
        outputs: tuple[str, ...],
    ) -> ReportTable:
        """The table of reports as built by their sender (``frames``: each one's value frame,
        -1 none; ``outputs``: one per report or ()), transposed by ``zip`` in one call: a
        ``TaskReport`` (a failure, a cancel: rare) is made a row first, its failure kept."""
        self = cls.__new__(cls)
        self.frames, self.outputs = frames, outputs
        if len(reports) == 1 and type(reports[0]) is tuple:  # (a lone task's: W3, no transpose)
            task_id, attempt, state, size, took, pid, began, end, took_in = reports[0]
            self.task_ids, self.attempts, self.states = (task_id,), [attempt], [state]
            self.sizes, self.durations, self.pids = [size], [took], [pid]
            self.started, self.ended, self.bytes_in, self.failures = [began], [end], [took_in], {}
            return self
        failures: dict[int, ReportFailure] = {}
        rows: Sequence[ReportRow | m.TaskReport] = reports
        if set(map(type, reports)) - {tuple}:
            converted: list[ReportRow] = []
            for i, r in enumerate(reports):
                if type(r) is not tuple:
                    assert isinstance(r, m.TaskReport)
                    if r.state == "FAILED":
                        failures[i] = ReportFailure(i, r.kind, r.exc_type, r.message, r.traceback)
                    r = report_row(r)
                converted.append(r)  # type: ignore[arg-type]
            rows = converted
        columns: list[Any] = list(zip(*rows, strict=True)) if rows else [()] * 9
        self.task_ids = columns[0]
        (
            self.attempts,
            self.states,
            self.sizes,
            self.durations,
            self.pids,
            self.started,
            self.ended,
            self.bytes_in,
        ) = map(list, columns[1:])
        self.failures = failures
        return self

    def __len__(self) -> int:
        return len(self.task_ids)

    def report(self, i: int) -> m.TaskReport:
        """Report ``i`` as a ``TaskReport`` (the rare paths: failures, history, output)."""
        failure = self.failures.get(i)
        kind, exc_type, message, traceback = (
            (failure.kind, failure.exc_type, failure.message, failure.traceback)
            if failure is not None
            else ("", "", "", "")
        )
        return m.TaskReport(
            self.task_ids[i],
            self.attempts[i],
            STATES[self.states[i]],
            self.sizes[i],
            self.frames[i],
            kind,
            exc_type,
            message,
            traceback,
            self.pids[i],
            self.started[i],
            self.ended[i],
            self.bytes_in[i],
            self.durations[i],
        )

    def reports(self) -> tuple[m.TaskReport, ...]:
        return tuple(self.report(i) for i in range(len(self)))


def tasks_reported_of(msg: ReportColumns) -> m.TasksReported:
    """The per-task form of ``msg`` (tests and tools; its reports name logical frames:
    ``split_frames``); ColumnError if the columns disagree."""
    table = ReportTable(msg)
    return m.TasksReported(msg.run_id, table.reports(), msg.free, msg.resource_version, msg.outputs)


__all__ = [
    "ColumnError",
    "DispatchTable",
    "INPUT_KINDS",
    "ReportRow",
    "ReportTable",
    "STATES",
    "dispatch_columns",
    "dispatch_items",
    "join_frames",
    "split_frames",
    "tasks_reported_of",
    "pack",
    "replied_columns",
    "replied_pairs",
    "report_columns",
    "packed_reports",
    "report_row",
    "reports_as_columns",
    "unpack",
]
