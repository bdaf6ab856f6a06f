"""A queued plain task with no inputs, accepted from a table, is kept as a row of it
(``executor_records.Row``), not a ``Task``: the refill chains it and its end reports it from the
row; any other path asks for its ``Task`` (``ExecutorState.task``), which is the record the
intake made of it before rows. Two executors take the same random events (tables received as
columns or handed over by our own node's owner, items, queued and claimed, cpu and gpu costs;
reads of running jobs as rows or outcomes, values printed, none, errors, cancels; cancels,
withdraws, a new owner, a run freed, leaving): one keeps its rows, the other turns every row
into its ``Task`` after each step (every path then reads ``Task``s, as before rows). After every
step they must have given the same instructions and hold the same tasks, field for field."""

from __future__ import annotations

import random
from dataclasses import fields
from typing import Any

import pytest
from test_executor_rows import RUNS, Side, dispatch, norm
from test_executor_state import OWNER, RUN, here, item, make

from handoffd.daemon.executor_events import (
    CancelAsked,
    Dispatched,
    Leaving,
    OwnerSeen,
    RunFreed,
    WithdrawAsked,
)
from handoffd.daemon.executor_intake import _task
from handoffd.daemon.executor_records import Task, queue_key
from handoffd.protocol import messages as m
from handoffd.protocol.columns import DispatchTable, dispatch_columns
from handoffd.protocol.messages_rebalance import WithdrawTasks

pytestmark = pytest.mark.timeout(120)


def records(side: Side) -> dict[Any, list[Any]]:
    return {
        key: [getattr(task, f.name) for f in fields(task)]
        for key, task in side.st.task_records().items()
    }


class TaskSide(Side):
    """Every row turned into its ``Task`` once a step is carried out."""

    def step(self, out: list[Any]) -> list[Any]:
        given = super().step(out)
        self.st._tasks_as_records()
        return given


def received(event: Dispatched) -> Dispatched:
    """A dispatch of items as a table received in columns (a peer's)."""
    msg = event.msg
    if isinstance(msg, m.DispatchTasks):
        return Dispatched(DispatchTable(dispatch_columns(msg)), event.frames, event.term)
    return event


@pytest.mark.parametrize("seed", range(30))
def test_rows_do_what_their_tasks_do(seed: int) -> None:
    rng = random.Random(seed)
    tasks, rows = TaskSide(rows=rng.random() < 0.5), Side(rows=rng.random() < 0.5)
    terms = dict.fromkeys(RUNS, 1)
    count = 0
    kept_rows = 0  # steps after which a row was kept (the other side then held its Task)
    for step in range(60):
        roll = rng.random()
        if roll < 0.3 or not tasks.running:
            event, count = dispatch(rng, count, terms)
            if rng.random() < 0.5:
                event = received(event)
            outs = [s.step(s.st.handle(event, 1.0)) for s in (tasks, rows)]
        elif roll < 0.8:
            n = rng.randint(1, min(len(tasks.running), 8))
            ends = []
            for key in tasks.running[:n]:
                kind = rng.choice(["kept"] * 6 + ["printed", "none", "error", "cancelled"])
                ends.append((key, kind, rng.choice([1e-5, 1e-3, 0.02])))
            flush_idle = rng.random() < 0.5
            # (both read KEPT replies the same way: the row side's own ``rows`` flag decides)
            outs = [s.read(ends, flush_idle) for s in (tasks, rows)]
        else:
            run = rng.choice(RUNS)
            keys = [k for k in tasks.st.tasks if k[0] == run]
            picked = rng.sample(keys, min(len(keys), rng.randint(1, 3))) if keys else []
            items = tuple(m.TaskAttempt(k[1], k[2]) for k in picked)
            what = rng.random()
            if what < 0.35:
                event: Any = CancelAsked(m.CancelTasks(run, items), terms[run])
            elif what < 0.7:
                event = WithdrawAsked(WithdrawTasks(run, items), terms[run])
            elif what < 0.85:
                terms[run] += 1
                event = OwnerSeen(run, terms[run], rng.choice(["me:1", "owner:1"]), "owner")
            elif what < 0.97 or step < 50:
                event = RunFreed(m.FreeRun(run), terms[run])
            else:
                event = Leaving(64)
            outs = [s.step(s.st.handle(event, 1.0)) for s in (tasks, rows)]
        assert norm(outs[0]) == norm(outs[1])
        assert tasks.running == rows.running
        assert tasks.state() == rows.state()
        assert records(tasks) == records(rows)
        assert not any(isinstance(t, list) for t in tasks.st.tasks.values())
        kept_rows += any(isinstance(t, list) for t in rows.st.tasks.values())
    assert kept_rows > 10  # (rows were kept and read: a run of Tasks only would prove nothing)


@pytest.mark.parametrize("way", ["columns", "here"])
def test_a_queued_plain_task_is_a_row_until_asked_for(way: str) -> None:
    """The first task claims the cpu and the next ones are chained behind it, the rest queue:
    all but the first are rows. Asked for, a queued row becomes the ``Task`` ``_task`` makes
    of its columns, for good; a chained row's ``Task`` is the chained task's."""
    st = make({"cpu": 1.0})
    msg = m.DispatchTasks(RUN, OWNER, tuple(item(f"t{i}") for i in range(12)))
    frames: list[Any] = [b"payload"]
    if way == "columns":
        t: Any = DispatchTable(dispatch_columns(msg))
    else:
        t, frames = here(msg, frames)
    st.handle(Dispatched(t, frames, 1), 2.5)
    assert type(st.tasks[(RUN, "t0", 1)]) is Task  # claimed at once: a Task
    assert all(type(st.tasks[(RUN, f"t{i}", 1)]) is list for i in range(1, 12))
    (slot,) = st.slots.values()
    assert 1 < slot.size() < 12 and (RUN, "t11", 1) in st.local
    key = (RUN, "t11", 1)
    pf = t.payloads[11]
    head = ("t11", 1, {"cpu": 1.0}, "variadic", None, queue_key(0, 0.0, 2.5, 11))
    expected = _task(RUN, OWNER, head, None, pf, {pf: frames[pf]}, (), ())
    copy = st.task_records()[key]
    assert type(st.tasks[key]) is list  # (a copy: still a row)
    task = st.task(key)
    assert st.tasks[key] is task and type(task) is Task
    for made in (copy, task):
        assert [getattr(made, f.name) for f in fields(Task)] == [
            getattr(expected, f.name) for f in fields(Task)
        ]
    chained = st.task_records()[(RUN, "t1", 1)]
    assert chained.slot is slot and chained.running and chained.claimed
    assert chained.gpus is slot.gpus and chained.bytes_in == len(frames[pf])
