"""A table that only queues rows is accepted as one block (``Intake._queue_rows``: the rows,
their keys and queue keys built by C iterators, the queue's room found once), not by the
per-task loop of ``_accept_table``. Two executors take the same random events (tables received
as columns or handed over by our own node's owner, of one shared cost or mixed, with and without
timeouts, priorities and ranks, queues filling up, duplicate deliveries; reads of running jobs,
cancels, withdraws, runs freed): one accepts blocks, the other has the block path turned off
(every table through the loop, as before blocks). After every step they must have given the
same instructions (answers, refusals and their reasons, jobs) and hold the same tasks, queue,
queue order, queued cost and ledger, field for field."""

from __future__ import annotations

import random
from dataclasses import fields
from typing import Any

import pytest
from test_executor_rows import RUNS, Side, norm
from test_executor_state import here

from handoffd.daemon.executor_events import CancelAsked, Dispatched, RunFreed, WithdrawAsked
from handoffd.protocol import messages as m
from handoffd.protocol.columns import DispatchTable, dispatch_columns, replied_pairs
from handoffd.protocol.messages_columns import RepliedColumns
from handoffd.protocol.messages_rebalance import WithdrawTasks

pytestmark = pytest.mark.timeout(120)


def records(side: Side) -> dict[Any, list[Any]]:
    return {
        key: [getattr(task, f.name) for f in fields(task)]
        for key, task in side.st.task_records().items()
    }


class LoopSide(Side):
    """Every table through ``_accept_table``'s per-task loop."""

    def __init__(self, rows: bool) -> None:
        super().__init__(rows)
        self.st._queue_rows = lambda t, frames: False  # type: ignore[method-assign]


class BlockSide(Side):
    """Counts the tables taken as one block."""

    def __init__(self, rows: bool) -> None:
        super().__init__(rows)
        self.blocks = 0
        take = self.st._queue_rows

        def counted(t: Any, frames: list[Any]) -> bool:
            taken = take(t, frames)
            self.blocks += taken
            return taken

        self.st._queue_rows = counted  # type: ignore[method-assign]


SHAPES = ({"cpu": 1.0}, {"cpu": 0.5}, {"cpu": 1.0, "gpu": 1.0}, {"gpu": 1.0}, {"cpu": 3.0})


def dispatch(
    rng: random.Random, count: int, sent: list[Dispatched], terms: dict[str, int]
) -> tuple[Dispatched, int]:
    if sent and rng.random() < 0.1:  # a duplicate delivery of an earlier dispatch
        return rng.choice(sent), count
    run = rng.choice(RUNS)
    owner = rng.choice(["me:1", "owner:1"])
    shared = rng.choice(SHAPES)  # (one cost object for the table: a stream of one function's)
    timeout = rng.choice([None, None, 5.0])
    priority, rank = rng.randint(0, 1), rng.random()
    items = []
    for _ in range(rng.randint(1, 12)):
        cost = shared if rng.random() < 0.9 else rng.choice(SHAPES)
        if rng.random() < 0.2:  # (mixed priorities, ranks and timeouts in a table)
            priority, rank = rng.randint(0, 2), rng.random()
            timeout = rng.choice([None, 2.0])
        task_id = f"t{count}" if rng.random() < 0.97 or not items else items[-1].task_id
        items.append(m.DispatchItem(task_id, 1, cost, "variadic", timeout, 0, (), priority, rank))
        count += 1
    msg = m.DispatchTasks(run, owner, tuple(items))
    if rng.random() < 0.5:
        table, frames = here(msg, [b"payload"])
        event = Dispatched(table, frames, terms[run])
    else:
        event = Dispatched(DispatchTable(dispatch_columns(msg)), [b"payload"], terms[run])
    sent.append(event)
    return event, count


@pytest.mark.parametrize("seed", range(30))
def test_a_block_of_rows_is_what_the_loop_makes(seed: int) -> None:
    rng = random.Random(seed)
    loop, block = LoopSide(rows=True), BlockSide(rows=True)
    terms = dict.fromkeys(RUNS, 1)
    count = 0
    sent: list[Dispatched] = []
    for step in range(80):
        roll = rng.random()
        if roll < 0.45 or not loop.running:
            event, count = dispatch(rng, count, sent, terms)
            now = 1.0 + step * rng.choice([0.0, 0.3])  # (aging: queue keys follow ``now``)
            outs = [s.step(s.st.handle(event, now)) for s in (loop, block)]
        elif roll < 0.85:
            n = rng.randint(1, min(len(loop.running), 8))
            ends = [(key, rng.choice(["kept"] * 6 + ["error"]), 1e-3) for key in loop.running[:n]]
            flush_idle = rng.random() < 0.5
            outs = [s.read(ends, flush_idle) for s in (loop, block)]
        else:
            run = rng.choice(RUNS)
            keys = [k for k in loop.st.tasks if k[0] == run]
            picked = rng.sample(keys, min(len(keys), rng.randint(1, 3))) if keys else []
            items = tuple(m.TaskAttempt(k[1], k[2]) for k in picked)
            what = rng.random()
            if what < 0.45:
                ev: Any = CancelAsked(m.CancelTasks(run, items), terms[run])
            elif what < 0.9:
                ev = WithdrawAsked(WithdrawTasks(run, items), terms[run])
            else:
                ev = RunFreed(m.FreeRun(run), terms[run])
            outs = [s.step(s.st.handle(ev, 1.0)) for s in (loop, block)]
        assert norm(outs[0]) == norm(outs[1])
        assert loop.running == block.running
        assert loop.state() == block.state()
        assert records(loop) == records(block)
        assert loop.st._local_cost == block.st._local_cost
        assert next(loop.st._arrivals) == next(block.st._arrivals)  # (the same numbers used)
    assert block.blocks >= 2  # (blocks were taken: a run of loops only would prove nothing)


def test_a_full_queue_refuses_the_rest_of_a_block() -> None:
    """The queue's room is found once for the block: the tasks past it are refused ("queue
    full"), in order, and answered with the ones accepted."""
    st = BlockSide(rows=True).st  # (cpu 2, queue limit 8 cpu)
    cost = {"cpu": 1.0}
    items = tuple(
        m.DispatchItem(f"t{i}", 1, cost, "variadic", None, 0, (), 0, 0.0) for i in range(12)
    )
    table, frames = here(m.DispatchTasks("run-a", "owner:1", items), [b"payload"])
    st.ledger.try_claim({"cpu": 2.0})  # (no room: every task queues)
    out = st.handle(Dispatched(table, frames, 1), 1.0)
    (reply,) = [i.msg for i in out if isinstance(getattr(i, "msg", None), RepliedColumns)]
    accepted, refused = replied_pairs(reply)
    assert accepted == tuple((f"t{i}", 1) for i in range(8))
    assert refused == tuple((f"t{i}", 1, "no room: queue full") for i in range(8, 12))
    assert list(st.local) == [("run-a", f"t{i}", 1) for i in range(8)]
    assert st._local_cost == {"cpu": 8.0}
    assert all(type(st.tasks[k]) is list for k in st.local)


def test_a_table_of_one_cost_shares_its_dict() -> None:
    """A received table whose tasks all cost the same reads one cost dict for them all (made
    once); one of mixed costs one per distinct row, as before."""
    one, other = {"cpu": 1.0, "memory": 2.0}, {"cpu": 0.5}
    for costs in ([one] * 5, [one, other, one, one, other]):
        items = tuple(
            m.DispatchItem(f"t{i}", 1, c, "variadic", None, 0, (), 0, 0.0)
            for i, c in enumerate(costs)
        )
        table = DispatchTable(dispatch_columns(m.DispatchTasks("r", "o:1", items)))
        assert table.costs == costs
        assert table.costs[0] is table.costs[2] is table.costs[3]
        assert len({id(c) for c in table.costs}) == len({tuple(c.items()) for c in costs})
