"""A run's ready entries as a line read by a cursor plus a heap (``ready._entry_push``/``_entry_pop``/
``_entry_head``): whatever the order of pushes, the pops come in ``heapq``'s order (the least
entry first) in the compiled build and in the ``.py`` alike; what comes in order (a run taken in,
a walk's restore) stays in the line, so a W1 run's pops never sift a heap."""

from __future__ import annotations

import heapq
import random

import pytest
from test_ready_heap import _pure

from handoffd.scheduler import ready as compiled
from handoffd.spec import RunOptions, TaskSpec


def _run(n: int):
    from handoffd.scheduler.run import RunState

    specs = [TaskSpec(f"t{i}", (), {"cpu": 1.0}, b"p") for i in range(n)]
    return RunState("r", specs, RunOptions())


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("build", ["imported", "pure", "pure-cut"])
def test_entries_pop_in_heapq_order(seed: int, build: str, monkeypatch) -> None:
    module = compiled if build == "imported" else _pure()
    if build == "pure-cut":  # (the line cut every few reads, where 4,096 are)
        monkeypatch.setattr(module, "_LINE_CUT", 3)
    rng = random.Random(seed)
    size = rng.choice([6, 50, 600])
    run = _run(0)
    theirs: list[int] = []
    out = list(range(size))  # entries not held
    popped: list[int] = []
    for step in range(3000):
        roll = rng.random()
        if out and roll < 0.3:  # a burst in order (a slice taken in)
            burst = sorted(rng.sample(out, min(len(out), rng.randrange(1, 40))))
            for order in burst:
                out.remove(order)
                module._entry_push(run, order)
                heapq.heappush(theirs, order)
        elif out and roll < 0.45:  # one out of order (a successor made ready)
            order = out.pop(rng.randrange(len(out)))
            module._entry_push(run, order)
            heapq.heappush(theirs, order)
        elif popped and popped[-1] in out and roll < 0.6:  # a walk's restore of its last pop
            order = popped.pop()
            out.remove(order)
            module._entry_push(run, order)
            heapq.heappush(theirs, order)
        elif theirs:
            assert module._entry_head(run) == theirs[0]
            got = module._entry_pop(run)
            assert got == heapq.heappop(theirs)
            popped.append(got)
            out.append(got)
        assert module._entry_head(run) == (theirs[0] if theirs else -1)
        assert module.has_entries(run) == bool(theirs)
        if step % 50 == 0:
            assert module.entries(run) == sorted(theirs)
            assert run.ready_line[run.ready_at :] == sorted(run.ready_line[run.ready_at :])
    while theirs:
        assert module._entry_pop(run) == heapq.heappop(theirs)
    assert not module.has_entries(run) and run.ready_line == [] and run.ready_at == 0


@pytest.mark.parametrize("build", ["imported", "pure"])
def test_a_run_taken_in_order_is_walked_from_its_line(build: str) -> None:
    """W1: every task queued at once in order, walked a few at a time with the last one put
    back: the heap stays empty and the walks give the tasks in order."""
    module = compiled if build == "imported" else _pure()
    run = _run(900)
    queue = module.ReadyQueue()
    for rec in run.ordered:
        queue.push(run, rec)
    assert run.ready_heap == [] and len(run.ready_line) == 900
    walked: list[int] = []
    while len(queue):
        for i, (_, rec) in enumerate(queue.walk()):
            if i == 3:  # (the one a pass looked at and did not place: restored)
                break
            walked.append(rec.order)
            queue.discard(rec)
        queue.restore()
        assert run.ready_heap == []
        if len(walked) % 99 == 0:
            queue.validate({"r": run})
    assert walked == list(range(900))
    assert run.ready_line == [] and run.ready_at == 0


@pytest.mark.parametrize("build", ["imported", "pure"])
def test_a_long_line_lets_its_read_part_go(build: str) -> None:
    """A line that grows at its end while it is read (a pop for each push) holds what is left
    and at most the cut's worth of read entries, not all it ever held."""
    module = compiled if build == "imported" else _pure()
    cut = _pure()._LINE_CUT
    run = _run(0)
    for order in range(100):
        module._entry_push(run, order)
    for order in range(100, 5 * cut):
        module._entry_push(run, order)
        assert module._entry_pop(run) == order - 100
    assert run.ready_line[run.ready_at :] == list(range(5 * cut - 100, 5 * cut))
    assert len(run.ready_line) <= cut + 100
