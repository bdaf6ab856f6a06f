"""A node's ``ReportColumns`` read back into the owner's ``ReportTable`` and its inline values, in
one pass. Compiled from this .py with the .pxd beside it (setup.py PROTOCOL_COMPILED); the .py is
the pure-Python build of the same module and tests/unit/test_report_read.py holds both builds to
the column-by-column reading (``_read_checked``, ``column_codes.split_frames``) they replace.

Why one pass: every report message of another node used to go through nine ``unpack`` calls (an
``array``, a message string and a Python call a column), then ``split_frames`` and ``frame_values``
(a Python loop a value). A well-formed message -- every column ``bytes`` of the length its count
says, the usual all-DONE reports each with its value packed in order -- is read here with one
``memoryview`` cast a column and one typed loop over the values. Anything else (a wrong length, a
wrong type, a FAILED report, values sent apart, a big-endian host) takes the checked reading,
which raises the same ``ColumnError`` as before: a malformed message is dropped and counted by
the node (``NodeRouting._on_frames``), never half-read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from handoffd.protocol import messages as m
from handoffd.protocol.column_codes import (
    _STATE_CODE,
    _SWAP,
    STATES,
    ColumnError,
    _indices,
    _strings,
    split_frames,
    unpack,
)
from handoffd.protocol.messages_columns import ReportColumns, ReportFailure

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

    task_ids: tuple[str, ...]
    attempts: list[int]
    states: list[int]
    sizes: list[int]
    frames: list[int]
    durations: list[float]
    pids: list[int]
    started: list[float]
    ended: list[float]
    bytes_in: list[int]
    failures: dict[int, ReportFailure]
    outputs: tuple[str, ...]

    def __init__(self, msg: ReportColumns) -> None:
        if not _read_at_once(self, msg):
            _read_checked(self, msg)

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


def _read_checked(self: ReportTable, msg: ReportColumns) -> None:
    """Each column unpacked and checked alone: ColumnError naming the first that disagrees."""
    name = "ReportColumns"
    n = len(msg.task_ids)
    self.task_ids = msg.task_ids
    self.attempts = unpack("q", msg.attempts, n, f"{name}.attempts")
    self.states = unpack("B", msg.states, n, f"{name}.states")
    _indices(self.states, len(STATES), f"{name}.states")
    self.sizes = unpack("q", msg.sizes, n, f"{name}.sizes")
    self.frames = unpack("i", msg.frames, n, f"{name}.frames")
    self.durations = unpack("d", msg.durations, n, f"{name}.durations")
    self.pids = unpack("q", msg.pids, n, f"{name}.pids")
    self.started = unpack("d", msg.started, n, f"{name}.started")
    self.ended = unpack("d", msg.ended, n, f"{name}.ended")
    self.bytes_in = unpack("q", msg.bytes_in, n, f"{name}.bytes_in")
    self.failures = {}
    for failure in msg.failures:
        if not 0 <= failure.index < n or self.states[failure.index] != 2:
            raise ColumnError(f"{name}.failures: index {failure.index} is not a FAILED report")
        self.failures[failure.index] = failure
    if len(self.failures) != self.states.count(2):
        raise ColumnError(f"{name}.failures: not one record per FAILED report")
    if msg.outputs:
        _strings(msg.outputs, n, f"{name}.outputs")
    self.outputs = msg.outputs


def _read_at_once(table: ReportTable, msg: ReportColumns) -> bool:
    """Fill ``table`` from ``msg`` when it is the usual message (see the module's note); False,
    with nothing set, for any other: the caller reads it column by column."""
    n = len(msg.task_ids)
    attempts, states, sizes, numbers = msg.attempts, msg.states, msg.sizes, msg.frames
    durations, pids, started, ended = msg.durations, msg.pids, msg.started, msg.ended
    bytes_in = msg.bytes_in
    wide = 8 * n
    if (
        _SWAP
        or msg.failures
        or type(attempts) is not bytes
        or type(states) is not bytes
        or type(sizes) is not bytes
        or type(numbers) is not bytes
        or type(durations) is not bytes
        or type(pids) is not bytes
        or type(started) is not bytes
        or type(ended) is not bytes
        or type(bytes_in) is not bytes
        or len(attempts) != wide
        or len(states) != n
        or len(sizes) != wide
        or len(numbers) != 4 * n
        or len(durations) != wide
        or len(pids) != wide
        or len(started) != wide
        or len(ended) != wide
        or len(bytes_in) != wide
        or states.count(1) != n  # (every report DONE: no FAILED one, no code out of range)
    ):
        return False
    outputs = msg.outputs
    if outputs:
        _strings(outputs, n, "ReportColumns.outputs")
    table.task_ids = msg.task_ids
    table.attempts = memoryview(attempts).cast("q").tolist()
    table.states = list(states)
    table.sizes = memoryview(sizes).cast("q").tolist()
    table.frames = memoryview(numbers).cast("i").tolist()
    table.durations = memoryview(durations).cast("d").tolist()  # type: ignore[assignment]
    table.pids = memoryview(pids).cast("q").tolist()
    table.started = memoryview(started).cast("d").tolist()  # type: ignore[assignment]
    table.ended = memoryview(ended).cast("d").tolist()  # type: ignore[assignment]
    table.bytes_in = memoryview(bytes_in).cast("q").tolist()
    table.failures = {}
    table.outputs = outputs
    return True


def read(msg: ReportColumns, frames: list[Any]) -> tuple[ReportTable, list[bytes | None]]:
    """``msg`` checked and read (``ReportTable``), and each report's inline value from the
    ``frames`` it came with (None for a report naming no frame); ``ColumnError`` if malformed."""
    table = ReportTable(msg)
    numbers = table.frames
    n = len(numbers)
    frame_sizes = msg.frame_sizes
    if (
        n
        and len(frames) == 1
        and type(frame_sizes) is bytes
        and len(frame_sizes) == 8 * n
        and not _SWAP
    ):
        # (the usual message: each report's value packed in report order into one frame)
        sizes = memoryview(frame_sizes).cast("q").tolist()
        blob = frames[0]
        if type(blob) is not bytes:
            blob = bytes(blob)  # (a received zmq.Frame: one copy, then slices of it)
        if min(sizes) >= 0 and sum(sizes) == len(blob) and _in_order(numbers):
            return table, _slices(blob, sizes)
    return table, frame_values(numbers, split_frames(frame_sizes, frames, "ReportColumns"))


def _in_order(numbers: list[Any]) -> bool:
    """``numbers`` is 0, 1, ..., n-1."""
    i = 0
    for number in numbers:
        if number != i:
            return False
        i += 1
    return True


def _slices(blob: bytes, sizes: list[Any]) -> list[Any]:
    """``blob`` cut in pieces of ``sizes`` (which cover it exactly)."""
    out: list[Any] = []
    at = 0
    for size in sizes:
        out.append(blob[at : at + size])
        at += size
    return out


_BYTES = {bytes}


def frame_values(numbers: list[int], frames: list[Any]) -> list[bytes | None]:
    """Each report's inline value of a received message, by its frame number in ``numbers``
    (None when it names no frame), from the message's logical ``frames``."""
    count = len(frames)
    if count == len(numbers) and numbers == list(range(count)):
        # (the usual message: every report's value, in report order)
        if set(map(type, frames)) <= _BYTES:
            return frames
        return list(map(bytes, frames))
    return [bytes(frames[f]) if 0 <= f < count else None for f in numbers]
