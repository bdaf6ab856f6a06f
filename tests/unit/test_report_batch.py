"""An executor's ended attempts kept as the report's columns (``daemon.report_batch``), not as a
row and an entry a task: (1) the flush's message and record are the ones the rows gave
(``executor_records.report_message``, ``reported_here``) over random mixes of successes,
failures, values kept on the node and outputs, the message byte for byte; (2) through a whole
executor, every attempt that ends with a task of ours is reported once, in its end's order within
its owner's and run's batch, with the fields of its end (ids, state, size, duration, pid, times,
bytes in, inline value, output, why it failed)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from test_executor_rows import ME, RUNS, Side, dispatch, outcome_of
from test_report_table import _mix

from handoffd.daemon.executor_events import FLUSH, ReportedHere, SendMessage
from handoffd.daemon.executor_records import report_message, reported_here
from handoffd.daemon.report_batch import ReportBatch, batch_here, batch_message
from handoffd.protocol import report_read
from handoffd.protocol.codec import Codec
from handoffd.protocol.messages_columns import ReportColumns
from handoffd.worker.ledger import Ledger

pytestmark = pytest.mark.timeout(120)

RUN = "run-1"


def _table_fields(table: Any) -> tuple[Any, ...]:
    return tuple(getattr(table, name) for name in type(table).__slots__)


@pytest.mark.parametrize("seed", range(40))
def test_batch_is_what_the_rows_gave(seed: int) -> None:
    rng = random.Random(seed)
    entries, _ = _mix(rng, rng.choice((1, 3, 40)))
    if rng.random() < 0.3:  # (every value inline and nothing printed: the usual batch)
        entries = [(r, v if v is not None else b"x", "") for r, v, _ in entries]
    ledger = Ledger({"cpu": 2.0, "gpu": 1.0})
    batch = ReportBatch()
    for report, value, output in entries:
        batch.add(report, value, output)
    assert len(batch) == len(entries)
    msg, frames = batch_message(RUN, batch, ledger)
    want, want_frames = report_message(RUN, entries, ledger)
    assert msg == want
    assert frames == want_frames
    codec = Codec()
    sent = codec.encode(msg, sender=ME, frames=frames)
    assert [bytes(f) for f in sent] == [
        bytes(f) for f in codec.encode(want, sender=ME, frames=want_frames)
    ]
    got, old = batch_here(RUN, 3, batch, ledger), reported_here(RUN, 3, entries, ledger)
    assert _table_fields(got.table) == _table_fields(old.table)
    assert (got.run_id, got.term, got.values, got.free, got.resource_version) == (
        old.run_id,
        old.term,
        old.values,
        old.free,
        old.resource_version,
    )


def _expected(side: Side, key: Any, kind: str, duration: float) -> tuple[Any, ...] | None:
    """The report an end of ``key`` must give (None: no task of ours, nothing reported)."""
    task = side.st.task_records().get(key)
    if task is None:
        return None
    outcome = outcome_of(key, kind, duration)
    ended = 1.0 + side.st.wall_offset
    if outcome.ok and outcome.value is not None:
        value = outcome.value
        inline = value if len(value) <= 8 else None  # (``Side``'s inline limit)
        pid = 41 if kind == "kept" else outcome.pid
        done = (1, len(value), duration, pid, ended - duration, ended, task.bytes_in)
        return (task.owner_address, key[0], key[1], key[2], *done, inline, outcome.output, "")
    why = outcome.kind or "error"
    return (task.owner_address, key[0], key[1], key[2], 2, why, outcome.output)


def _reported(out: list[Any]) -> list[tuple[Any, ...]]:
    """Each report of the flushed batches in ``out``, in order, as ``_expected`` writes it."""
    got: list[tuple[Any, ...]] = []
    for ins in out:
        if isinstance(ins, ReportedHere):
            owner, run_id, table, values = ME, ins.run_id, ins.table, ins.values
        elif isinstance(ins, SendMessage) and type(ins.msg) is ReportColumns:
            owner, run_id = ins.address, ins.msg.run_id
            table, values = report_read.read(ins.msg, list(ins.frames))
        else:
            continue
        outputs = table.outputs or ("",) * len(table)
        for i, task_id in enumerate(table.task_ids):
            ids = (owner, run_id, task_id, table.attempts[i])
            if table.states[i] == 1:
                done = (1, table.sizes[i], table.durations[i], table.pids[i], table.started[i])
                rest = (table.ended[i], table.bytes_in[i], values[i], outputs[i], "")
                got.append((*ids, *done, *rest))
            else:
                got.append((*ids, table.states[i], table.failures[i].kind, outputs[i]))
    return got


@pytest.mark.parametrize("seed", range(30))
def test_ends_report_each_attempt_once_with_its_fields(seed: int) -> None:
    rng = random.Random(seed)
    side = Side(rows=rng.random() < 0.7)
    terms = dict.fromkeys(RUNS, 1)
    count = 0
    want: list[tuple[Any, ...]] = []
    got: list[tuple[Any, ...]] = []
    for _ in range(60):
        if rng.random() < 0.3 or not side.running:
            event, count = dispatch(rng, count, terms)
            got += _reported(side.step(side.st.handle(event, 1.0)))
            continue
        n = rng.randint(1, min(len(side.running), 12))
        ends = []
        for key in side.running[:n]:
            kind = rng.choice(["kept"] * 6 + ["printed", "none", "error", "cancelled"])
            ends.append((key, kind, rng.choice([1e-5, 1e-3, 0.02])))
        if rng.random() < 0.15:  # (an attempt no longer ours: not reported)
            ends.insert(rng.randint(0, n), ((RUNS[0], "gone", 3), "kept", 1e-3))
        for key, kind, duration in ends:
            report = _expected(side, key, kind, duration)
            if report is not None:
                want.append(report)
        got += _reported(side.read(ends, rng.random() < 0.5))
    got += _reported(side.step(side.st.handle(FLUSH, 1.0)))
    assert len(want) > 20
    for owner in {w[0] for w in want} | {g[0] for g in got}:
        for run in RUNS:
            mine = [w for w in want if w[:2] == (owner, run)]
            assert [g for g in got if g[:2] == (owner, run)] == mine, (owner, run)
