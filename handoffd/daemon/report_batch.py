"""One owner's and run's ended attempts waiting for the executor's flush, kept as the report's
columns (``ReportBatch``), and the flush's two forms of it: the ``ReportColumns`` message to
another node's owner (``batch_message``) and the record to our own node's (``batch_here``).

Why columns from the start: the common end (a value of a chained task, ``Ends._ended``) used to
build a report row tuple and an (row, value, output) entry a task, which the flush then
transposed twice (``zip(*entries)``, ``ReportTable.of_rows``' ``zip(*rows)``) into the very
columns kept here. The end now appends each field to its column (the lists held in the end's
locals while a run of its outcomes goes to one batch), and the flush hands the lists to the
table as they are. The rare ends (a failure, a cancel, a value off the common path) add their
report through ``add``; the message is byte for byte what ``executor_records.report_message``
makes of the same entries (tests/unit/test_report_batch.py)."""

from __future__ import annotations

from typing import Any

from handoffd.daemon.executor_events import ReportedHere
from handoffd.protocol import messages as m
from handoffd.protocol.column_codes import join_frames, numbered_frames
from handoffd.protocol.columns import ReportTable, packed_reports, report_row
from handoffd.protocol.messages_columns import ReportColumns, ReportFailure

_DONE = 1  # (``column_codes.STATES``' code)


class ReportBatch:
    """The reports of one (owner, run) not flushed yet, one entry a report in each column, in the
    order the attempts ended; a report's state is DONE unless ``states`` holds its index."""

    __slots__ = (
        "task_ids",
        "attempts",
        "sizes",
        "durations",
        "pids",
        "started",
        "ended",
        "bytes_in",
        "values",
        "outputs",
        "failures",
        "states",
    )

    def __init__(self) -> None:
        self.task_ids: list[str] = []
        self.attempts: list[int] = []
        self.sizes: list[int] = []
        self.durations: list[float] = []
        self.pids: list[int] = []
        self.started: list[float] = []
        self.ended: list[float] = []
        self.bytes_in: list[int] = []
        self.values: list[bytes | None] = []  # each report's inline value, None: kept here
        self.outputs: list[str] = []  # what each attempt printed ("" nothing)
        self.failures: dict[int, ReportFailure] = {}  # a FAILED report's index -> why
        self.states: dict[int, int] = {}  # a report's index -> its state code, when not DONE

    def __len__(self) -> int:
        return len(self.task_ids)

    def add(self, report: Any, value: bytes | None, output: str) -> None:
        """One report (a ``ReportRow`` or a ``TaskReport``), its inline value or None, and what
        its attempt printed, after the others (the rare ends: the common one appends in line)."""
        if type(report) is not tuple:
            assert isinstance(report, m.TaskReport)
            if report.state == "FAILED":
                at = len(self.task_ids)
                self.failures[at] = ReportFailure(
                    at, report.kind, report.exc_type, report.message, report.traceback
                )
            report = report_row(report)
        task_id, attempt, state, size, duration, pid, started, ended, bytes_in = report
        if state != _DONE:
            self.states[len(self.task_ids)] = state
        self.task_ids.append(task_id)
        self.attempts.append(attempt)
        self.sizes.append(size)
        self.durations.append(duration)
        self.pids.append(pid)
        self.started.append(started)
        self.ended.append(ended)
        self.bytes_in.append(bytes_in)
        self.values.append(value)
        self.outputs.append(output)


def _table(batch: ReportBatch, frames: list[int]) -> ReportTable:
    # ``ReportTable.of_rows`` of the batch's rows, its columns taken as they are (the batch is
    # dropped by the flush that calls this: nothing appends to them after)
    table = ReportTable.__new__(ReportTable)
    n = len(batch.task_ids)
    states = [_DONE] * n
    for at, state in batch.states.items():
        states[at] = state
    table.task_ids = tuple(batch.task_ids)
    table.attempts = batch.attempts
    table.states = states
    table.sizes = batch.sizes
    table.frames = frames
    table.durations = batch.durations
    table.pids = batch.pids
    table.started = batch.started
    table.ended = batch.ended
    table.bytes_in = batch.bytes_in
    table.failures = batch.failures  # (in index order: a batch only grows)
    outputs = batch.outputs
    table.outputs = tuple(outputs) if any(outputs) else ()
    return table


def batch_message(run_id: str, batch: ReportBatch, ledger: Any) -> tuple[ReportColumns, list[Any]]:
    """``executor_records.report_message`` of the batch's reports: the ``ReportColumns`` and the
    frames to send them in (values packed by ``join_frames``); our free resources go along."""
    numbers, frames = numbered_frames(batch.values)
    sizes, frames = join_frames(frames)
    table = _table(batch, numbers)
    return packed_reports(run_id, table, dict(ledger.free), ledger.version, sizes), frames


def batch_here(run_id: str, term: int, batch: ReportBatch, ledger: Any) -> ReportedHere:
    """``executor_records.reported_here`` of the batch's reports: the table our own node's owner
    reads (no value frame named), the inline values beside it."""
    table = _table(batch, [-1] * len(batch.task_ids))
    return ReportedHere(run_id, term, table, tuple(batch.values), dict(ledger.free), ledger.version)
