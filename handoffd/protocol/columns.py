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
from collections.abc import Sequence
from typing import Any

from handoffd.protocol import messages as m
from handoffd.protocol.column_codes import (
    JOIN_BELOW,
    STATES,
    ColumnError,
    _indices,
    _strings,
    call_payloads,
    check_frames,
    join_frames,
    numbered_frames,
    pack,
    split_frames,
    unpack,
)
from handoffd.protocol.messages_columns import (
    DispatchColumns,
    RepliedColumns,
    ReportColumns,
)
from handoffd.protocol.registry import maker
from handoffd.protocol.report_read import ReportRow, ReportTable, report_row
from handoffd.worker._heads import calls

INPUT_KINDS = ("value", "inline", "serialize")  # serialize: handoffd.Argument's (executor_hooks)
_KIND_CODE = {k: i for i, k in enumerate(INPUT_KINDS)}


# ---------------------------------------------------------------------------------------------
# Dispatch: built by the owner from the scheduler's Dispatch (daemon.dispatch), read back here
# ---------------------------------------------------------------------------------------------


# Built once per task and per input of every dispatch a node receives (registry.maker).
_input_ref = maker(m.InputRef)
_dispatch_item = maker(m.DispatchItem)
# One a report message an executing node sends (packed_reports): 16 fields through their slots.
_report_columns = maker(ReportColumns)


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

    def __init__(self, msg: DispatchColumns, calls_at: int = -1) -> None:
        """``calls_at``: where the payloads rebuilt from ``msg``'s calls begin among its logical
        frames (``received_dispatch``), task ``i``'s at ``calls_at + i``; -1: ``msg`` has none."""
        name = "DispatchColumns"
        n = len(msg.task_ids)
        self.msg = msg
        self.run_id, self.owner_address = msg.run_id, msg.owner_address
        self.packages, self.far = msg.packages, msg.far
        self.task_ids = msg.task_ids
        self.input_task_ids, self.inclusions = msg.input_task_ids, msg.inclusions
        self.attempts: list[int] = unpack("q", msg.attempts, n, f"{name}.attempts")
        if calls_at < 0:
            if msg.call_start or msg.call_ints:
                raise ColumnError(f"{name}: carries calls, read only with their frames")
            self.payloads: list[int] = unpack("i", msg.payload_frames, n, f"{name}.payload_frames")
        elif msg.payload_frames:
            raise ColumnError(
                f"{name}.payload_frames: {len(msg.payload_frames)} bytes beside call ints "
                "(expected none: every payload is a call)"
            )
        else:
            self.payloads = list(range(calls_at, calls_at + n))
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
        self._held: list[int] | None = None  # each input's first entry in ``holders``
        width = len(kinds)
        if n and msg.costs[: 8 * width] * n == msg.costs:
            # Every task costs the same (a stream of one function's tasks): its dict made once
            # and the list of it in C, no loop a task (bytes compared: each row the first's)
            first = {kind: q for kind, q in zip(kinds, costs[:width], strict=True) if q}
            self.costs = [first] * n
            return
        rows = zip(*[iter(costs)] * width, strict=True) if width else iter(((),) * n)
        cost_of: dict[tuple[float, ...], dict[str, float]] = {}
        shared: list[dict[str, float]] = []
        for row in rows:
            cost = cost_of.get(row)
            if cost is None:
                cost = cost_of[row] = {kind: q for kind, q in zip(kinds, row, strict=True) if q}
            shared.append(cost)
        self.costs = shared

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


def received_dispatch(msg: DispatchColumns, frames: list[Any]) -> tuple[DispatchTable, list[Any]]:
    """A received ``msg`` read and checked (``DispatchTable``) and its logical frames: those sent
    (``split_frames``), then, when its payloads came as calls (protocol 9: ``call_start`` and
    one int a task in ``call_ints``), each task's payload rebuilt, in task order. ColumnError if
    anything disagrees (a start without ints or ints without a start, a column of the wrong
    length), before anything is handed on."""
    frames = split_frames(msg.frame_sizes, frames, "DispatchColumns")
    start, ints = msg.call_start, msg.call_ints
    if not start and not ints:
        return DispatchTable(msg), frames
    n = len(msg.task_ids)
    if start and len(ints) == 4 * n and type(start) is bytes and type(ints) is bytes:
        # (``call_payloads``' payloads, byte for byte, each made in C: one allocation and
        # three copies, not a struct pack's argument parsing a payload; its checks are these)
        payloads = calls(start, ints)
    else:  # (a column it refuses: ColumnError, its words)
        payloads = call_payloads(start, ints, n, "DispatchColumns")
    table = DispatchTable(msg, len(frames))
    return table, [*frames, *payloads]


def dispatch_items(msg: DispatchColumns, frames: list[Any] | None = None) -> m.DispatchTasks:
    """The per-task form of ``msg`` (with ``frames``, the logical frames it came with, when its
    payloads came as calls: ``received_dispatch``); ColumnError if any column disagrees with the
    others."""
    if frames is not None:
        return received_dispatch(msg, frames)[0].tasks()
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
    numbers, frames = numbered_frames(list(values))
    sizes, frames = join_frames(frames)
    table = ReportTable.of_rows(reports, numbers, outputs)
    return packed_reports(run_id, table, free, version, sizes), frames


def packed_reports(
    run_id: str, table: ReportTable, free: dict[str, float], version: int, frame_sizes: bytes
) -> ReportColumns:
    """``table`` (built here, not received: unchecked) as the message."""
    return _report_columns(
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


def tasks_reported_of(msg: ReportColumns) -> m.TasksReported:
    """The per-task form of ``msg`` (tests and tools; its reports name logical frames:
    ``split_frames``); ColumnError if the columns disagree."""
    table = ReportTable(msg)
    return m.TasksReported(msg.run_id, table.reports(), msg.free, msg.resource_version, msg.outputs)


__all__ = [
    "JOIN_BELOW",
    "ColumnError",
    "check_frames",
    "DispatchTable",
    "INPUT_KINDS",
    "ReportRow",
    "ReportTable",
    "STATES",
    "dispatch_columns",
    "dispatch_items",
    "received_dispatch",
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
