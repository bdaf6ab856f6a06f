"""The executing node's pass over its local queue (``ExecutorState._pump_local``) offers the ledger
each cost at most until it is refused once: with a chain holding the only cpu, every queued task
was offered (and refused) on every pass. What starts, and in what order, is what offering every
task gave, for any queue (checked against that algorithm)."""

from __future__ import annotations

import types
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_executor_priority import _end, _item, _send

from handoffd.daemon.executor_records import Task
from handoffd.daemon.executor_state import ExecutorState
from handoffd.resources import EPS
from handoffd.store.store import ResultStore
from handoffd.worker.ledger import Ledger


def _executor(cpu: float) -> ExecutorState:
    """A node with memory in its ledger, as every daemon has: some of it is always free."""
    return ExecutorState(
        address="me:1",
        ledger=Ledger({"cpu": cpu, "memory": 1000.0}),
        store=ResultStore(memory_limit=1 << 30),
        inline_result_bytes=1024,
    )


def _counting(state: ExecutorState) -> list[list[float]]:
    """The cpu of each cost offered to the ledger, per pass over the queue (the first list: offers
    made on a dispatch's arrival, outside any pass)."""
    passes: list[list[float]] = [[]]
    claim, pump = state.ledger.try_claim, state._pump_local

    def counted(cost: Any) -> Any:
        passes[-1].append(cost["cpu"])
        return claim(cost)

    def counted_pass() -> None:
        passes.append([])
        pump()

    state.ledger.try_claim = counted  # type: ignore[method-assign]
    state._pump_local = counted_pass  # type: ignore[method-assign]
    return passes


def test_a_refused_cost_is_not_offered_again_in_the_same_pass() -> None:
    state = _executor(cpu=1.0)
    assert _send(state, "r", "o:1", [_item("hold", cpu=1.0)], 0.0) == ["hold"]
    # cost 0.6: never chained behind "hold" (another cost), each waits for a claim
    assert _send(state, "r", "o:1", [_item(f"q{i}", cpu=0.6) for i in range(20)], 0.1) == []
    offered = _counting(state)
    assert _send(state, "r", "o:1", [_item("late", cpu=0.6)], 0.2) == []
    assert offered == [[], [0.6], [0.6]]  # once per pass, not once per queued task (21)


def test_a_smaller_cost_behind_a_refused_one_still_starts() -> None:
    state = _executor(cpu=2.0)
    assert _send(state, "r", "o:1", [_item("hold", cpu=1.5)], 0.0) == ["hold"]
    items = [_item("big", cpu=1.0), _item("big2", cpu=1.0), _item("small", cpu=0.5)]
    offered = _counting(state)
    assert _send(state, "r", "o:1", items, 0.1) == ["small"]
    # big on arrival, then in each pass (small starts in the first); big2 is never offered
    assert offered == [[1.0], [1.0, 0.5], [1.0]]
    assert _end(state, "r", "hold", 0.2)[0] == "big"


def _old_pump(self: ExecutorState) -> None:
    """The pass before: every queued task offered to the ledger, in queue order."""
    started: list[Task] = []
    free = self.ledger.free
    local = self.local
    for key in list(self.queue_order()):
        if key not in local:
            continue
        if not any(q > EPS for q in free.values()):
            break
        task = self.task(key)
        if task is None:
            self._unqueue_local(key, None)
            continue
        gpus = self.ledger.try_claim(task.cost)
        if gpus is None:
            continue
        self._unqueue_local(key, task)
        task.claimed = True
        task.gpus = gpus
        started.append(task)
    if started:
        self._changed = True
    for task in started:
        if not task.missing:
            self._start(task)


@settings(max_examples=120, deadline=None)
@given(
    capacity=st.sampled_from([1.0, 2.0, 3.0]),
    arrivals=st.lists(
        st.tuples(st.sampled_from([0.25, 0.5, 0.6, 1.0, 1.5]), st.integers(-2, 2)),
        min_size=1,
        max_size=30,
    ),
    batch=st.integers(1, 6),
)
def test_what_starts_is_what_offering_every_task_started(
    capacity: float, arrivals: list[tuple[float, int]], batch: int
) -> None:
    new, old = _executor(cpu=capacity), _executor(cpu=capacity)
    old._pump_local = types.MethodType(_old_pump, old)  # type: ignore[method-assign]
    items = [_item(f"t{i}", priority, cpu=cpu) for i, (cpu, priority) in enumerate(arrivals)]
    running: dict[str, list[str]] = {"new": [], "old": []}
    now = 0.0
    for at in range(0, len(items), batch):
        now += 0.01
        for name, state in (("new", new), ("old", old)):
            running[name] += _send(state, "r", "o:1", items[at : at + batch], now)
        assert running["new"] == running["old"]
    while running["new"]:
        now += 0.01
        for name, state in (("new", new), ("old", old)):
            running[name] += _end(state, "r", running[name].pop(0), now)
        assert running["new"] == running["old"]
    assert not new.local and not old.local
