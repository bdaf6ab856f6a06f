"""The ready queue's own heap of positions (``ready._heap_push``/``_heap_pop``, compiled) moves the
entries exactly as ``heapq`` does: the same list after every push and pop, the same pops, in the
compiled build and in the ``.py`` (the pure-Python build) alike."""

from __future__ import annotations

import heapq
import random
from types import ModuleType

import pytest
from pure_build import pure

from handoffd.scheduler import ready as compiled


def _pure() -> ModuleType:  # the .py itself, whatever build is imported (a fresh one each call)
    return pure(compiled, "_ready_pure")


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("build", ["imported", "pure"])
def test_heap_moves_as_heapq(seed: int, build: str) -> None:
    module = compiled if build == "imported" else _pure()
    rng = random.Random(seed)
    mine: list[int] = []
    theirs: list[int] = []
    pool = list(range(rng.choice([5, 40, 300, 5000])))
    rng.shuffle(pool)
    for _ in range(3000):
        if pool and (not mine or rng.random() < 0.55):
            order = pool.pop()
            module._heap_push(mine, order)
            heapq.heappush(theirs, order)
        elif mine:
            got, want = module._heap_pop(mine), heapq.heappop(theirs)
            assert got == want
            pool.insert(rng.randrange(len(pool) + 1), got)  # (a task queued again later)
        assert mine == theirs
    while mine:
        assert module._heap_pop(mine) == heapq.heappop(theirs)
        assert mine == theirs


def test_heap_pop_of_the_last_entry_empties_it() -> None:
    heap = [7]
    assert compiled._heap_pop(heap) == 7 and heap == []


def _shared_cost_runs(module_run, rng: random.Random) -> list:
    """Runs whose tasks share cost dicts (a plain run's: one items tuple a cost), two runs with
    equal costs in distinct dicts, weightless tasks and pinned ones (pins as distinct strings)."""
    from handoffd.spec import RunOptions, TaskSpec

    runs = []
    for r in range(3):
        costs = [{"cpu": 1.0}, {"cpu": 2.0, "mem": 1.0}, {}]
        specs = [
            TaskSpec(
                f"t{i}",
                (),
                costs[rng.randrange(3)],
                b"p",
                node="".join(["n", "1"]) if rng.random() < 0.2 else None,
            )
            for i in range(12)
        ]
        runs.append(module_run.RunState(f"r{r}", specs, RunOptions(), seq=r))
    return runs


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("build", ["imported", "pure"])
def test_shape_counts_follow_the_queued_records(seed: int, build: str) -> None:
    """The hot shape, counted apart from ``shapes`` and recognised by identity, never changes
    what is counted: after every push, discard, walk and drop, ``shape_counts`` is the queued
    records per (pin, cost items) and ``shapes`` holds exactly those keys."""
    from collections import Counter

    from handoffd.scheduler import run as module_run

    module = compiled if build == "imported" else _pure()
    rng = random.Random(seed)
    queue = module.ReadyQueue()
    runs = _shared_cost_runs(module_run, rng)
    for _ in range(400):
        run = rng.choice(runs)
        rec = rng.choice(run.ordered)
        roll = rng.random()
        if roll < 0.5:
            queue.push(run, rec)
        elif roll < 0.85:
            queue.discard(rec)
        elif roll < 0.97:
            for i, (_, wrec) in enumerate(queue.walk()):
                if i % 2:
                    queue.discard(wrec)
                if i >= rng.randrange(6):
                    break
            queue.restore()
        else:
            queue.drop_run(run)
        want = Counter(
            (r.spec.node, r.cost_items) for run_ in runs for r in run_.ordered if r.queued
        )
        assert queue.shape_counts() == dict(want)
        assert set(queue.shapes) == set(want)
        queue.validate({run_.run_id: run_ for run_ in runs})


def test_a_discard_of_a_shape_not_queued_fails_as_before() -> None:
    queue = compiled.ReadyQueue()
    with pytest.raises(KeyError):
        queue._count((None, (("cpu", 1.0),)), -1)
