"""An ended task's report as columns from its end (``executor_records.done_report`` rows,
``columns.ReportTable.of_rows``), to our own node's owner (``ReportedHere``) and to another's
(``ReportColumns``): the owner derives from either table the scheduler events, history and
latency the per-task ``TaskReport`` path derived (``reports.list_events``,
``history_io.observe_reports``), in the same order, over random mixes of successes, failures,
retries, outputs and values kept on the node (``_list_events``: the per-task reading)."""

from __future__ import annotations

import logging
import random
from types import SimpleNamespace
from typing import Any

import pytest

from handoffd.daemon import reports
from handoffd.daemon.executor_records import (
    Task,
    done_report,
    failed,
    here_message,
    report_message,
    reported_here,
)
from handoffd.protocol import messages as m
from handoffd.protocol.columns import ReportTable, report_columns, split_frames
from handoffd.scheduler import events as ev
from handoffd.scheduler import history

RUN, NODE = "run-1", "node-a"
log = logging.getLogger("handoffd.tasks")
KINDS = ("error", "timeout", "crash", "cancelled", "input_lost", "storage")


class _Latency:
    def __init__(self) -> None:
        self.seen: list[float] = []

    def observe(self, value: float) -> None:
        self.seen.append(value)

    def observe_all(self, values: list[float]) -> None:  # (Buckets': a message's at once)
        self.seen.extend(values)


def _task(task_id: str, attempt: int, bytes_in: int) -> Task:
    return Task(
        RUN, task_id, attempt, "owner:1", {}, [], "variadic", None, b"", (), {}, bytes_in=bytes_in
    )


def _old_done(task: Task, size: int, timing: tuple[int, float, float], took: float) -> Any:
    """The ``TaskReport`` the executor built per successful attempt before its rows."""
    pid, started, ended = timing
    args = (task.task_id, task.attempt, "DONE", size, -1, "", "", "", "", pid, started, ended)
    return m.TaskReport(*args, task.bytes_in, took)


def _mix(rng: random.Random, most: int) -> tuple[list[Any], list[Any]]:
    """(entries as the executor keeps them now, the same as per-task reports before)."""
    new: list[Any] = []
    old: list[Any] = []
    tries: dict[str, int] = {}
    for _ in range(rng.randint(1, most)):
        task_id = f"t{rng.randrange(12)}"  # (repeats: retries of a task, later attempts)
        tries[task_id] = attempt = tries.get(task_id, 0) + rng.randint(1, 2)
        task = _task(task_id, attempt, rng.randrange(1 << 20))
        output = rng.choice(("", "", "printed\n"))
        timing = (rng.randrange(1, 9999), rng.uniform(0, 1e9), rng.uniform(0, 1e9))
        if rng.random() < 0.7:
            size = rng.randrange(1, 1 << 16)
            value = rng.randbytes(rng.randrange(0, 9)) if rng.random() < 0.7 else None
            took = rng.choice((-1.0, rng.uniform(0, 3)))
            new.append((done_report(task, size, timing, took), value, output))
            old.append((_old_done(task, size, timing, took), value, output))
        else:
            why = failed(task, rng.choice(KINDS), "ValueError", f"m{rng.random()}", "tb", timing)
            new.append((why, None, output))
            old.append((why, None, output))
    return new, old


def _each(events: list[Any]) -> list[Any]:
    """``TasksSucceeded`` as the ``TaskSucceeded`` of each of its attempts, in order: what the
    scheduler applies (``OwnerScheduler._on_all_succeeded``)."""
    out: list[Any] = []
    for e in events:
        if type(e) is ev.TasksSucceeded:
            for i, task_id in enumerate(e.task_ids):
                one = (e.attempts[i], NODE, e.sizes[i], e.values[i], e.durations[i])
                out.append(ev.TaskSucceeded(e.run_id, task_id, *one))
        else:
            out.append(e)
    return out


def _run(entries: list[Any]) -> SimpleNamespace:
    """A run whose tasks were dispatched (each reported attempt opened in its history)."""
    tasks: dict[str, Any] = {}
    for report, _, _ in entries:
        row = report if type(report) is tuple else None
        task_id, attempt = (row[0], row[1]) if row else (report.task_id, report.attempt)
        rec = tasks.setdefault(task_id, SimpleNamespace(attempts=[]))
        rec.attempts.append(history.new_row(attempt, NODE, 5.0 + attempt))
    return SimpleNamespace(run_id=RUN, tasks=tasks)


def observe_reports(  # the per-task reading before tables (verbatim)
    run: Any, node: str, reports: Any, latency: Any
) -> None:
    """Record what ``node`` reports of each attempt (pid, times, bytes, error) in its history,
    and in ``latency`` the time from its dispatch to its start."""
    tasks = run.tasks
    for r in reports:
        rec = tasks.get(r.task_id)
        if rec is None or r.state == "RUNNING":
            continue
        if r.started and rec.attempts and rec.attempts[-1][0] == r.attempt:
            dispatched = rec.attempts[-1][history.DISPATCHED]
            if dispatched:
                latency.observe(max(0.0, r.started - dispatched))
        if r.state != "DONE":
            log.info(
                "run %s task %s attempt %d on %s: %s (%s: %s)",
                run.run_id,
                r.task_id,
                r.attempt,
                node,
                r.kind,
                r.exc_type,
                r.message,
                extra={"run": run.run_id, "task": r.task_id, "attempt": r.attempt},
            )
        history.observe(
            rec.attempts,
            r.attempt,
            node,
            state="DONE" if r.state == "DONE" else r.kind,
            pid=r.pid,
            started=r.started,
            ended=r.ended,
            bytes_in=r.bytes_in,
            bytes_out=r.size,
            error=(r.exc_type, r.message, r.traceback) if r.state != "DONE" else ("", "", ""),
        )


def _list_events(reports_: Any, values: Any, events: list[Any]) -> None:
    """The events the owner derived from per-task reports before their tables (verbatim)."""
    for report, value in zip(reports_, values, strict=True):
        if report.state == "DONE":
            events.append(
                ev.TaskSucceeded(
                    RUN,
                    report.task_id,
                    report.attempt,
                    NODE,
                    report.size,
                    bytes(value) if value is not None else None,
                    report.duration,
                )
            )
        elif report.state == "FAILED":
            events.append(
                ev.TaskErrored(
                    RUN,
                    report.task_id,
                    report.attempt,
                    NODE,
                    report.kind,
                    report.exc_type,
                    report.message,
                    report.traceback,
                )
            )


def _old_owner(entries: list[Any]) -> tuple[list[Any], Any, list[float]]:
    reports_, values, _ = zip(*entries, strict=True)
    run, latency, events = _run(entries), _Latency(), []
    observe_reports(run, NODE, reports_, latency)  # type: ignore[arg-type]
    _list_events(reports_, values, events)
    return events, {k: r.attempts for k, r in run.tasks.items()}, latency.seen


def _new_owner(table: ReportTable, values: Any, entries: list[Any]) -> Any:
    run, latency, events = _run(entries), _Latency(), []
    reports.observe_table(run, NODE, table, latency)  # type: ignore[arg-type]
    reports.table_events(RUN, NODE, table, values, events)
    return _each(events), {k: r.attempts for k, r in run.tasks.items()}, latency.seen


@pytest.mark.parametrize("seed", range(60))
def test_tables_give_the_events_of_per_task_reports(seed: int) -> None:
    rng = random.Random(seed)
    new, old = _mix(rng, 1 if seed % 4 == 0 else 40)  # (a lone task's batch: its own path)
    ledger = SimpleNamespace(free={"cpu": 1.0}, version=3)
    expected = _old_owner(old)
    assert expected[0]  # (every report gives an event: a mix that proves something)

    here = reported_here(RUN, 2, new, ledger)  # our own node's owner
    assert _new_owner(here.table, here.values, new) == expected
    assert here.reports == tuple(r for r, _, _ in old)  # the per-task form, frames -1
    outputs = tuple(o for _, _, o in old)
    assert here.outputs == (outputs if any(outputs) else ())

    msg, frames = report_message(RUN, new, ledger)  # another node's owner: the wire's bytes
    assert (msg, frames) == report_message(RUN, old, ledger)
    table = ReportTable(msg)
    values = reports.frame_values(table, split_frames(msg.frame_sizes, frames, "ReportColumns"))
    assert _new_owner(table, values, new) == expected
    per_task, sent = here_message(reported_here(RUN, 2, old, ledger))
    assert msg == report_columns(per_task, msg.frame_sizes)  # (as the per-task message's)
    # (a node of an earlier build sends the per-task message: the owner reads it as a table)
    table = ReportTable.of_rows(per_task.reports, [r.frame for r in per_task.reports], ())
    assert _new_owner(table, reports.frame_values(table, sent), new) == expected


def test_a_report_in_a_state_no_build_sends_is_a_column_error() -> None:
    # A received TasksReported (a node of an earlier build) is read through ``of_rows``: a state
    # outside STATES must be the error the node drops and logs, not a KeyError in the handler
    # (the daemon fuzz test sends such reports).
    from handoffd.protocol.columns import ColumnError

    good = m.TaskReport("t1", 1, "DONE", 3, -1, "", "", "", "")
    bad = m.TaskReport("t2", 1, "state", 3, -1, "", "", "", "")
    assert ReportTable.of_rows([good], [-1], ()).task_ids == ("t1",)
    with pytest.raises(ColumnError, match="task 't2': unknown state 'state'"):
        ReportTable.of_rows([good, bad], [-1, -1], ())


@pytest.mark.parametrize("seed", range(20))
def test_a_messages_values_are_its_frames_in_report_order(seed: int) -> None:
    """``frame_values``' shortcut (every report's value in its own frame, in order) gives what
    the lookup of each report's frame gives, as bytes, whatever the frames are."""
    rng = random.Random(seed)
    count = rng.randrange(0, 6)
    frames: list[Any] = [rng.randbytes(rng.randrange(0, 5)) for _ in range(count)]
    if seed % 2:
        frames = [memoryview(f) for f in frames]  # (a big value kept where ZeroMQ put it)
    numbers = list(range(count)) if seed % 3 else [rng.randrange(-1, count + 1) for _ in frames]
    table = ReportTable.of_rows([], numbers, ())
    got = reports.frame_values(table, frames)
    assert got == [bytes(frames[f]) if 0 <= f < count else None for f in numbers]
    assert all(type(v) is bytes for v in got if v is not None)
