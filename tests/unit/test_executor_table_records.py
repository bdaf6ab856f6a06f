"""The records a plain table's tasks are kept as (``Intake._accept_table``, which sets a ``Task``'s
fields in line): each equals, slot for slot, what ``executor_intake._task`` makes of the same
columns, for random tables (costs claimed or queued, inputs here, sent along or on peers,
priorities, ranks, timeouts, duplicates, tasks refused by a full queue), received as columns or
handed over by our own node's owner. And the jobs a refill chains (made in line) are
``new_job``'s."""

from __future__ import annotations

import random
from dataclasses import fields
from typing import Any

import pytest
from test_executor_state import ME, OWNER, PEER, RUN, here, make

from handoffd.daemon.executor_events import REFILL, Dispatched, Execute, TaskEnded
from handoffd.daemon.executor_intake import _task
from handoffd.daemon.executor_records import queue_key
from handoffd.daemon.executor_state import ExecutorState
from handoffd.protocol import messages as m
from handoffd.protocol.columns import DispatchTable, dispatch_columns
from handoffd.worker._records import Outcome, expand, new_job

pytestmark = pytest.mark.timeout(60)

_UNSET = object()
FRAMES = [b"payload", b"sent-value"]


def slots_of(record: Any) -> list[tuple[str, Any, type]]:
    return [
        (f.name, getattr(record, f.name, _UNSET), type(getattr(record, f.name, _UNSET)))
        for f in fields(record)
    ]


def random_items(rng: random.Random) -> list[m.DispatchItem]:
    """Distinct task ids in a table (a second table may repeat the first's: duplicates)."""
    costs = [{"cpu": 1.0}, {"cpu": 0.5}, {"cpu": 1.0, "memory": 64.0}]
    items = []
    for i in rng.sample(range(16), rng.randint(1, 12)):
        inputs = []
        for j in range(rng.choice([0, 0, 1, 2, 3])):
            kind = rng.choice(["here", "sent", "peer"])
            if kind == "here":
                inputs.append(m.InputRef("value", "h1", (ME,), -1, "variadic", -1))
            elif kind == "sent":
                inputs.append(m.InputRef("value", f"s{j}", (), 1, "variadic", -1))
            else:
                inputs.append(m.InputRef("value", f"p{i}{j}", (PEER,), -1, "variadic", -1))
        timeout = rng.choice([None, 2.5])
        attempt = rng.randint(1, 2)
        task_id = f"t{i}"
        cost = rng.choice(costs)
        priority, rank = rng.randint(-2, 2), rng.choice([0.0, 1.5, 3.0])
        items.append(
            m.DispatchItem(
                task_id, attempt, cost, "variadic", timeout, 0, tuple(inputs), priority, rank
            )
        )
    return items


@pytest.mark.parametrize("way", ["columns", "here"])
def test_a_tables_records_are_the_makers(way: str) -> None:
    rng = random.Random(23)
    for _ in range(150):
        capacity = rng.choice([1.0, 2.0])
        st = make({"cpu": capacity}, queue_factor=rng.choice([1.0, 2.5, 4.0]))
        st.store.put(RUN, "h1", b"here-value")
        twin = make(dict(st.ledger.capacity), queue_factor=st._queue_limit["cpu"] / capacity)
        twin.store.put(RUN, "h1", b"here-value")
        seq = 0
        for _ in range(2):  # (the second table's tasks already here are duplicates)
            items, now = random_items(rng), rng.uniform(0.0, 5.0)
            seq = accept_and_compare(st, items, seq, now, way)
            # the same dispatch as items (``_accept_items``, ``_queue_refusal`` a task): the
            # same answers, queue and queued demand
            twin._gather_all = lambda started: None  # type: ignore[method-assign]
            twin._now, twin._out = now, []
            twin._accept_items(m.DispatchTasks(RUN, OWNER, tuple(items)), FRAMES, 1, "")
            assert twin._out == st._out
            assert list(twin.local) == list(st.local) and list(twin.tasks) == list(st.tasks)
            assert twin._local_cost == st._local_cost


def accept_and_compare(
    st: ExecutorState, items: list[m.DispatchItem], seq: int, now: float, way: str
) -> int:
    """Accept ``items`` as a table; every record made equals ``_task``'s. The next arrival."""
    msg = m.DispatchTasks(RUN, OWNER, tuple(items))
    frames = FRAMES
    if way == "columns":
        t: Any = DispatchTable(dispatch_columns(msg))
    else:
        t, frames = here(msg, frames)
    assert t.plain and not t.far
    before = set(st.tasks)
    st._gather_all = lambda started: None  # type: ignore[method-assign]  # (records as made)
    st._now = now
    st._out = []
    st._accept_table(t, frames, 1, "")
    made = iter([task for key, task in st.task_records().items() if key not in before])
    at = 0
    for i, task_id in enumerate(t.task_ids):
        count = t.counts[i]
        first, at = at, at + count
        key = (RUN, task_id, t.attempts[i])
        if key in before or key not in st.tasks:
            continue  # a duplicate, or refused by the queue
        task = next(made)
        numbers, ids = t.frames[first:at], t.input_task_ids[first:at]
        kept = {t.payloads[i]: frames[t.payloads[i]]}
        kept.update({f: frames[f] for f in numbers if f >= 0})
        flat = tuple(k if f < 0 else f for k, f in zip(ids, numbers, strict=True))
        needs = tuple(k for k, f in zip(ids, numbers, strict=True) if f < 0)
        timeout = t.timeouts[i]
        head = (
            task_id,
            t.attempts[i],
            t.costs[i],
            t.inclusions[t.inclusion[i]],
            None if timeout != timeout else timeout,
            queue_key(t.priorities[i], t.ranks[i], now, seq),
        )
        seq += 1
        gpus = task.gpus if task.claimed else None
        source = (t, first) if needs else None
        expected = _task(RUN, OWNER, head, gpus, t.payloads[i], kept, flat, needs, source)
        assert slots_of(task) == slots_of(expected)
        assert task.cost is not t.costs[i]  # (a copy: the table's are shared)
    assert next(made, None) is None
    return seq


def test_a_refills_jobs_are_the_makers() -> None:
    """The jobs a refill chains (made in line in ``_refill``) equal ``new_job``'s of their
    tasks, slot for slot, as the first task's (made by ``_enter``) does."""
    rng = random.Random(5)
    for _ in range(40):
        st = make({"cpu": 1.0, "memory": 512.0})
        st.store.put(RUN, "h1", b"here-value")
        cost = rng.choice([{"cpu": 1.0}, {"cpu": 1.0, "memory": 64.0}])
        items = [
            m.DispatchItem(
                f"t{i}",
                1,
                cost,
                rng.choice(["variadic", "as_list"]),
                rng.choice([None, 3.0]),
                0,
                rng.choice([(), (m.InputRef("value", "h1", (ME,), -1, "variadic", -1),)]),
            )
            for i in range(rng.randint(2, 12))
        ]
        t, frames = here(m.DispatchTasks(RUN, OWNER, tuple(items)), [b"payload"])
        jobs = [j for ins in st.handle(Dispatched(t, frames, 1), 0.0) for j in jobs_of(ins)]
        ended = 0
        while jobs:
            for job in jobs:
                task = st.task_records()[job.key]
                assert task.slot is not None
                made = new_job(
                    job.key,
                    task.payload,
                    job.inputs,
                    task.argument_inclusion,
                    task.timeout,
                    task.slot.devices,
                    task.cost.get("memory"),
                    f"run {RUN} task {task.task_id}",
                )
                assert slots_of(job) == slots_of(made)
            out = []
            for job in jobs:
                outcome = Outcome(job.key, True, b"v", duration=1e-3)
                out += st.handle(TaskEnded(outcome), 1.0)
                ended += 1
            out += st.handle(REFILL, 1.0)
            jobs = [j for ins in out for j in jobs_of(ins)]
        assert ended == len(items) and not st.tasks


def jobs_of(ins: Any) -> list[Any]:
    return expand(ins.jobs) if isinstance(ins, Execute) else []
