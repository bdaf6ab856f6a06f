"""The ready queue's own heap of positions (``ready._heap_push``/``_heap_pop``, compiled) moves the
entries exactly as ``heapq`` does: the same list after every push and pop, the same pops, in the
compiled build and in the ``.py`` (the pure-Python build) alike."""

from __future__ import annotations

import heapq
import importlib.util
import pathlib
import random

import pytest

from handoffd.scheduler import ready as compiled

_SOURCE = pathlib.Path(compiled.__file__).with_name("ready.py")


def _pure():  # the .py itself, whatever build is imported
    spec = importlib.util.spec_from_file_location("_ready_pure", _SOURCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
