"""The executing node starts queued tasks by (priority, critical path, age), across runs and
owners, and aging keeps any task from starving."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from handoffd.daemon.executor_events import Dispatched, Execute, Instruction, Soon, TaskEnded
from handoffd.daemon.executor_records import AGING_SECONDS, queue_key
from handoffd.daemon.executor_state import ExecutorState
from handoffd.protocol import messages as m
from handoffd.store.store import ResultStore
from handoffd.worker._records import expand
from handoffd.worker.ledger import Ledger
from handoffd.worker.pool import Outcome


def _executor(cpu: float = 1.0) -> ExecutorState:
    return ExecutorState(
        address="me:1",
        ledger=Ledger({"cpu": cpu}),
        store=ResultStore(memory_limit=1 << 30),
        inline_result_bytes=1024,
    )


def _item(task_id: str, priority: int = 0, rank: float = 0.0, cpu: float = 1.0) -> m.DispatchItem:
    return m.DispatchItem(task_id, 1, {"cpu": cpu}, "variadic", None, 0, (), priority, rank)


def _run(st: ExecutorState, events: list[Any], now: float) -> list[Instruction]:
    """Handle events and every Soon they ask for."""
    out: list[Instruction] = []
    pending = list(events)
    while pending:
        ev = pending.pop(0)
        more = st.handle(ev, now)
        out += more
        pending += [i.event for i in more if isinstance(i, Soon)]
    return out


def _send(
    st: ExecutorState, run: str, owner: str, items: list[m.DispatchItem], now: float
) -> list[str]:
    msg = m.DispatchTasks(run, owner, tuple(items))
    return _started(_run(st, [Dispatched(msg, [b"payload"], 1)], now))


def _started(out: list[Instruction]) -> list[str]:
    return [job.key[1] for ex in out if isinstance(ex, Execute) for job in expand(ex.jobs)]


def _end(st: ExecutorState, run: str, task_id: str, now: float) -> list[str]:
    outcome = Outcome((run, task_id, 1), True, b"v", duration=0.05)
    return _started(_run(st, [TaskEnded(outcome)], now))


def test_an_urgent_task_of_another_owner_starts_before_the_queue_of_a_busy_run() -> None:
    # A mix of costs keeps the queued tasks out of the running chain (each waits for a claim).
    st = _executor(cpu=1.0)
    assert _send(st, "bulk", "a:1", [_item("b0", cpu=1.0)], 0.0) == ["b0"]
    _send(st, "bulk", "a:1", [_item(f"b{i}", cpu=0.5) for i in range(1, 6)], 0.01)
    _send(st, "urgent", "b:1", [_item("u", priority=100, cpu=0.5)], 0.02)
    first = _end(st, "bulk", "b0", 0.05)
    assert first[0] == "u", first


def test_ties_in_priority_go_to_the_longer_critical_path_then_the_older() -> None:
    st = _executor(cpu=1.0)
    _send(st, "r", "a:1", [_item("run", cpu=1.0)], 0.0)
    _send(
        st,
        "r",
        "a:1",
        [_item("short", rank=1.0, cpu=0.5), _item("long", rank=9.0, cpu=0.5)],
        0.1,
    )
    _send(st, "s", "b:1", [_item("later", rank=9.0, cpu=0.5)], 0.2)
    started = _end(st, "r", "run", 0.3)
    assert started == ["long", "later", "short"], started  # (short chained after them)


def test_a_task_that_waited_long_enough_overtakes_newer_higher_priority_work() -> None:
    """Aging: one priority level per AGING_SECONDS waited."""
    old = queue_key(0, 0.0, 0.0, 1)
    assert queue_key(2, 0.0, 1.5 * AGING_SECONDS, 2) < old  # 2 levels beat 1.5 s of waiting
    assert old < queue_key(2, 0.0, 3.5 * AGING_SECONDS, 3)  # 3.5 s of waiting beat 2 levels


@settings(max_examples=80, deadline=None)
@given(
    arrivals=st.lists(
        st.tuples(st.integers(-3, 3), st.sampled_from([0.0, 1.0, 5.0]), st.floats(0.0, 0.5)),
        min_size=2,
        max_size=25,
    )
)
def test_queued_tasks_start_in_queue_key_order(arrivals: list[tuple[int, float, float]]) -> None:
    """Whatever arrives in whatever order, one cpu busy: each completion starts the queued task
    with the smallest key (priority with aging, then critical path, then arrival)."""
    st = _executor(cpu=1.0)
    _send(st, "r", "o:1", [_item("hold", cpu=1.0)], 0.0)
    now = 0.0
    keys: dict[str, tuple[int, float, int]] = {}
    for i, (priority, rank, gap) in enumerate(arrivals):
        now += gap
        tid = f"t{i}"
        # cost 0.6: never two at once, never chained behind "hold" (another cost)
        assert _send(st, "r", "o:1", [_item(tid, priority, rank, cpu=0.6)], now) == []
        keys[tid] = queue_key(priority, rank, now, 0)
    order: list[str] = []
    running = ["hold"]  # in the order they run (a chain runs its jobs one after another)
    while running:
        now += 0.01
        started = _end(st, "r", running.pop(0), now)
        running += started
        order += started
    assert sorted(order) == sorted(keys)
    expect = sorted(keys, key=lambda t: (keys[t][0], keys[t][1], int(t[1:])))
    assert order == expect
