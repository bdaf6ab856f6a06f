"""``ReadyQueue.push_all`` (a slice's pushes as one: ``OwnerBooks._ready_block``) against
``push`` of each record in order, both builds: the queue's counts, shapes, hot shape, runs and
entries the same, and the records it names the first newly queued one of each run of one cost
items and pin object."""

from __future__ import annotations

import random
from typing import Any

import pytest
from test_ready_heap import _pure

from handoffd.scheduler import ready as compiled
from handoffd.scheduler import run as run_module
from handoffd.spec import RunOptions, TaskSpec

# Cost maps: two equal ones (equal items, not the same objects), one other, and none at all.
_COSTS = [{"cpu": 1.0}, {"cpu": 1.0}, {"cpu": 2.0, "mem": 1.0}, {}]
_PINS = [None, None, None, "n0", "n1"]


def _run(rng: random.Random, n: int) -> Any:
    """A run of ``n`` tasks whose costs and pins come in runs of a few alike tasks."""
    specs = []
    cost, pin = rng.choice(_COSTS), rng.choice(_PINS)
    for i in range(n):
        if rng.random() < 0.2:
            cost, pin = rng.choice(_COSTS), rng.choice(_PINS)
        specs.append(TaskSpec(f"t{i}", (), cost, b"p", node=pin))
    return run_module.RunState("r", specs, RunOptions())


def _state(queue: Any, run: Any) -> tuple[Any, ...]:
    return (
        queue.size,
        queue.weightless,
        list(queue.shapes.items()),
        queue.shape_counts(),
        queue._hot,
        queue._hot_n,
        list(queue.runs),
        list(run.ready_line),
        run.ready_at,
        list(run.ready_heap),
        [(rec.queued, rec.in_heap) for rec in run.ordered],
    )


def _queue(module: Any, rng: random.Random, runs: list[Any]) -> Any:
    """A queue with the same history for each of ``runs`` (alike): some tasks pushed, some of
    those discarded, so the slice meets a hot shape, counted ones and queued records."""
    queue = module.ReadyQueue()
    n = len(runs[0].ordered)
    pushed = rng.sample(range(n), rng.randrange(n // 2))
    dropped = [i for i in pushed if rng.random() < 0.3]
    for run in runs:
        for i in pushed:
            queue.push(run, run.ordered[i])
        for i in dropped:
            queue.discard(run.ordered[i])
    return queue


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("build", ["imported", "pure"])
def test_push_all_queues_and_counts_as_each_push(seed: int, build: str) -> None:
    module = compiled if build == "imported" else _pure()
    rng = random.Random(seed)
    n = rng.choice([5, 30, 200])
    ones, alls = _run(random.Random(seed), n), _run(random.Random(seed), n)
    state = rng.getstate()
    by_one = _queue(module, rng, [ones])
    rng.setstate(state)
    by_all = _queue(module, rng, [alls])
    assert _state(by_one, ones) == _state(by_all, alls)
    for _ in range(3):  # (slices one after another, as a run is taken in)
        lo = rng.randrange(n)
        hi = rng.randrange(lo, n + 1)
        firsts = []
        last: Any = None
        for rec in ones.ordered[lo:hi]:
            shape = (rec.cost_items, rec.pin)
            new = by_one.push(ones, rec)
            if last is None or shape[0] is not last[0] or shape[1] is not last[1]:
                last, counted = shape, False
            if new and not counted:
                firsts.append(rec.order)
                counted = True
        got = by_all.push_all(alls, alls.ordered[lo:hi])
        assert [rec.order for rec in got] == firsts
        assert _state(by_one, ones) == _state(by_all, alls)
        by_all.validate({"r": alls})


@pytest.mark.parametrize("build", ["imported", "pure"])
def test_push_all_of_nothing_new_counts_nothing(build: str) -> None:
    module = compiled if build == "imported" else _pure()
    run = _run(random.Random(0), 20)
    queue = module.ReadyQueue()
    assert queue.push_all(run, []) == []
    queue.push_all(run, run.ordered)
    before = _state(queue, run)
    assert queue.push_all(run, run.ordered[5:15]) == []
    assert _state(queue, run) == before
    assert queue.size == 20
