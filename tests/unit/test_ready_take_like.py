"""``ReadyQueue.take_like`` on a run whose entries are all in its line (a run taken in whole:
W1's) reads the line in one loop; it must take, drop and leave exactly what its steps did one by
one (``_head`` then ``_entry_pop`` a record: the general way, kept for a run with a heap). Both
builds, and the ``.py`` with the line cut every few reads: random runs of two cost objects and a
pin, stale entries (discarded records still in the line), random limits; the records taken, the
line and its cursor, every record's flags, the runs listed, and the queue after ``restore``."""

from __future__ import annotations

import random
from typing import Any

import pytest
from test_ready_heap import _pure

from handoffd.scheduler import ready as compiled
from handoffd.scheduler.run import RunState
from handoffd.spec import RunOptions, TaskSpec


def _one_by_one(module: Any, queue: Any, run: Any, rec: Any, limit: int) -> list[Any]:
    """``take_like``'s general way: its steps one by one."""
    taken: list[Any] = []
    if queue._single is not run:
        return taken
    while len(taken) < limit:
        nxt = queue._head(run)
        if nxt is None or nxt.cost is not rec.cost or nxt.pin is not rec.pin:
            break
        module._entry_pop(run)
        nxt.in_heap = False
        taken.append(nxt)
    if taken:
        queue._blocks.append((run, taken))
    return taken


def _state(module: Any, seed: int) -> tuple[Any, Any, Any]:
    rng = random.Random(seed)
    a, b = {"cpu": 1.0}, {"cpu": 0.5}
    specs = []
    cost = a
    for i in range(rng.randint(2, 40)):
        if rng.random() < 0.15:
            cost = b if cost is a else a
        pin = "n1" if rng.random() < 0.05 else None
        specs.append(TaskSpec(f"t{i}", (), cost, b"p", node=pin))
    run = RunState("r", specs, RunOptions())
    queue = module.ReadyQueue()
    for rec in run.ordered:
        queue.push(run, rec)
    for rec in run.ordered:
        if rng.random() < 0.25:
            queue.discard(rec)  # (stale: still in the line)
    queue.begin()
    first = queue.step()
    return queue, run, first


def _seen(queue: Any, run: Any, taken: list[Any]) -> Any:
    return (
        [r.id for r in taken],
        list(run.ready_line),
        run.ready_at,
        [(r.queued, r.in_heap) for r in run.ordered],
        sorted(queue.runs),
        len(queue),
    )


@pytest.mark.parametrize("build", ["imported", "pure", "pure-cut"])
def test_a_line_s_block_is_taken_as_its_steps_took_it(build: str, monkeypatch) -> None:
    module = compiled if build == "imported" else _pure()
    if build == "pure-cut":  # (the line cut every few reads, where 4,096 are)
        monkeypatch.setattr(module, "_LINE_CUT", 3)
    blocks = 0
    for seed in range(300):
        limit = random.Random(-seed).randint(0, 30)
        mine, theirs = _state(module, seed), _state(module, seed)
        if mine[2] is None:
            continue
        assert mine[1].ready_heap == []  # (the case under test: entries all in the line)
        got = mine[0].take_like(mine[1], mine[2][1], limit)
        want = _one_by_one(module, theirs[0], theirs[1], theirs[2][1], limit)
        assert _seen(mine[0], mine[1], got) == _seen(theirs[0], theirs[1], want), seed
        blocks += len(got) > 1
        for queue, run, _ in (mine, theirs):
            queue.restore()
            queue.validate({"r": run})
        assert _seen(mine[0], mine[1], []) == _seen(theirs[0], theirs[1], []), seed
    assert blocks > 50
