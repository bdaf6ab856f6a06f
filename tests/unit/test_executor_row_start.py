"""A queued row the ledger claims a slot for (``_pump_local``, a chain over and the cpu free: W1's
every chain after the first) stays a row (``ExecutorState._start_row``): its slot set as the
refill sets a chained row's, its job the one ``_start`` made of its ``Task``, folded into the
block chained behind it; the chain's KEPT block then ends whole (``ended_block``), the head with
the rows behind it, and asked for, the head is the ``Task`` that ``_start`` would have run.
(``test_executor_queue_rows`` holds rows to ``Task``s on random events; this is W1's shape.)"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest
from test_executor_state import here

from handoffd.daemon.executor_events import CancelAsked, Dispatched, Execute, Soon
from handoffd.daemon.executor_records import CHAIN_AHEAD, CHAIN_SECONDS, R_SLOT, Task
from handoffd.daemon.executor_state import ExecutorState
from handoffd.protocol import messages as m
from handoffd.store.store import ResultStore
from handoffd.worker._records import Job, JobBlock, Kept, Outcome, expand
from handoffd.worker.ledger import Ledger

pytestmark = pytest.mark.timeout(60)

ME = "me:1"


def run(st: ExecutorState, out: list[Any], now: float) -> list[Any]:
    """``out`` and every instruction of the soon events it asks for."""
    given = list(out)
    pending = [i.event for i in out if isinstance(i, Soon)]
    while pending:
        more = st.handle(pending.pop(0), now)
        given += more
        pending += [i.event for i in more if isinstance(i, Soon)]
    return given


def started(out: list[Any]) -> list[Any]:
    return [job.key for ins in out if isinstance(ins, Execute) for job in expand(ins.jobs)]


def test_a_row_started_through_the_ledger_stays_a_row_and_ends_with_its_chain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    st = ExecutorState(
        address=ME,
        ledger=Ledger({"cpu": 1.0}),
        store=ResultStore(memory_limit=1 << 30),
        inline_result_bytes=64,
    )
    items = tuple(
        m.DispatchItem(f"t{i}", 1, {"cpu": 1.0}, "variadic", None, 0, (), 0, 0.0) for i in range(80)
    )
    msg, frames = here(m.DispatchTasks("r", ME, items), [b"payload"])
    running = started(run(st, st.handle(Dispatched(msg, frames, 1), 0.0), 0.0))
    assert type(st.tasks[running[0]]) is Task  # (claimed at once by the intake: a Task)
    each: list[int] = []
    ended_each = ExecutorState._ended_each

    def counted(self: ExecutorState, outcomes: Any) -> None:
        each.append(len(outcomes))
        ended_each(self, outcomes)

    monkeypatch.setattr(ExecutorState, "_ended_each", counted)
    chains = whole = 0
    while running:
        keys = list(running)
        head_row = type(st.tasks[keys[0]]) is list
        # (a block ends whole when the mean duration stays under the chain cap's bound:
        # ``ended_block``; the first reads bring the mean down from its start)
        fast = st._mean_duration < CHAIN_SECONDS / (CHAIN_AHEAD + 1) * 0.5
        each.clear()
        kept = Kept(keys, [b"v"] * len(keys), [1e-6] * len(keys), 7)
        out = run(st, st.tasks_ended([kept], 0.1), 0.1)
        if head_row and fast:  # the head, a row, ends with the rows behind it: no one by one
            assert each == [], each
            whole += 1
        running = started(out)
        if not running:
            break
        chains += 1
        head = running[0]
        row = st.tasks[head]
        assert type(row) is list, row  # started through the ledger: still a row
        (slot,) = st.slots.values()
        assert row[R_SLOT] is slot and slot.members() == running  # (its slot: ``R_SLOT``)
        # Its job is the block's first (folded): the chain goes in one block, one Execute
        (ins,) = [i for i in out if isinstance(i, Execute)]
        assert len(ins.jobs) == 1 and type(ins.jobs[0]) is JobBlock
        job = expand(ins.jobs)[0]
        assert job.title == f"run r task {head[1]}" and job.payload == b"payload"
    assert whole >= 2
    assert chains >= 3 and not st.tasks and not st.local
    assert st.ledger.free == {"cpu": 1.0}


def test_the_head_row_asked_for_is_the_task_start_would_have_run() -> None:
    st = ExecutorState(
        address=ME,
        ledger=Ledger({"cpu": 1.0}),
        store=ResultStore(memory_limit=1 << 30),
        inline_result_bytes=64,
    )
    items = tuple(
        m.DispatchItem(f"t{i}", 1, {"cpu": 1.0}, "variadic", 2.5, 0, (), 0, 0.0) for i in range(60)
    )
    msg, frames = here(m.DispatchTasks("r", ME, items), [b"payload"])
    running = started(run(st, st.handle(Dispatched(msg, frames, 1), 0.0), 0.0))
    kept = Kept(running, [b"v"] * len(running), [1e-4] * len(running), 7)
    out = run(st, st.tasks_ended([kept], 0.1), 0.1)
    running = started(out)
    head = running[0]
    (slot,) = st.slots.values()
    # Its job: what ``_enter`` makes of the ``Task`` (compared field for field)
    (job,) = [j for i in out if isinstance(i, Execute) for j in expand(i.jobs) if j.key == head]
    title = f"run r task {head[1]}"
    made = Job(head, b"payload", [], "variadic", 2.5, None, slot.devices, None, title)
    assert job == made
    task = st.task(head)  # (for good: a ``Task`` from now on)
    assert type(task) is Task and st.tasks[head] is task
    got = {f.name: getattr(task, f.name) for f in fields(task)}
    assert got == {
        "run_id": "r",
        "task_id": head[1],
        "attempt": 1,
        "owner_address": ME,
        "cost": {"cpu": 1.0},
        "gpus": slot.gpus,
        "argument_inclusion": "variadic",
        "timeout": 2.5,
        "payload": b"payload",
        "inputs": (),
        "frames": {0: b"payload"},
        "missing": frozenset(),
        "running": True,
        "claimed": True,
        "slot": slot,
        "bytes_in": len(b"payload"),
        "payload_frame": 0,
        "needs": (),
        "far": (),
        "flat": (),
        "source": None,
        "qkey": got["qkey"],
    }
    assert task.gpus is slot.gpus


def test_a_row_that_ends_out_of_its_chain_order_leaves_the_others_to_end_as_a_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A chained row cancelled (asked for: its ``Task``) whose outcome comes before the rows
    ahead of it leaves the chain alone (``Slot.drop``: that row, not the chain's next), and the
    rest of the chain still ends as one block, found by position on the slot (``Slot.rows``)."""
    st = ExecutorState(
        address=ME,
        ledger=Ledger({"cpu": 1.0}),
        store=ResultStore(memory_limit=1 << 30),
        inline_result_bytes=64,
    )
    st._mean_duration = 1e-6  # (short tasks: a KEPT block may end whole)
    items = tuple(
        m.DispatchItem(f"t{i}", 1, {"cpu": 1.0}, "variadic", None, 0, (), 0, 0.0) for i in range(80)
    )
    msg, frames = here(m.DispatchTasks("r", ME, items), [b"payload"])
    running = started(run(st, st.handle(Dispatched(msg, frames, 1), 0.0), 0.0))
    kept = Kept(running, [b"v"] * len(running), [1e-6] * len(running), 7)
    running = started(run(st, st.tasks_ended([kept], 0.1), 0.1))  # (a chain of rows now)
    (slot,) = st.slots.values()
    assert len(running) > 6 and slot.members() == running and not slot.keys
    gone = running[3]
    cancel = m.CancelTasks("r", (m.TaskAttempt(gone[1], gone[2]),))
    out = st.handle(CancelAsked(cancel, 1), 0.2)
    assert [type(i).__name__ for i in out] == ["CancelJob"]
    cancelled = Outcome(gone, False, None, "Cancelled", "cancelled", kind="cancelled")
    run(st, st.tasks_ended([cancelled], 0.3), 0.3)
    rest = [k for k in running if k != gone]
    assert slot.members() == rest and gone not in st.tasks
    each: list[int] = []
    ended_each = ExecutorState._ended_each

    def counted(self: ExecutorState, outcomes: Any) -> None:
        each.append(len(outcomes))
        ended_each(self, outcomes)

    monkeypatch.setattr(ExecutorState, "_ended_each", counted)
    done = st.counters["done"]
    kept = Kept(rest, [b"v"] * len(rest), [1e-6] * len(rest), 7)
    run(st, st.tasks_ended([kept], 0.4), 0.4)
    assert each == [] and st.counters["done"] == done + len(rest)  # (whole, by position)
    assert all(k not in st.tasks for k in rest)
    assert not set(rest) & {k for s in st.slots.values() for k in s.members()}
