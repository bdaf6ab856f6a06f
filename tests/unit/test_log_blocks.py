"""The replication log's loop over a block of moves (``replication.log_blocks``), both builds:
each of ``hold``, ``mark``, ``take``, ``unhold`` and ``release`` leaves a run's dirty and held
dicts (their order, each time the very object given) as the C calls over the block it replaced
left them (``dict.fromkeys`` then ``update``, a ``map`` of ``dict.pop``, ``takewhile`` and
``islice``), and answers what the log read from them after; the log over the ``.py`` is the
one-by-one log."""

from __future__ import annotations

import collections
import functools
import itertools
import operator
import random
from typing import Any

import pytest
import test_replication_stretch as stretch
from pure_build import check_builds, pure

from handoffd.replication import log as rlog
from handoffd.replication import log_blocks

PURE = pure(log_blocks, "handoffd_log_blocks_pure")
BUILDS = {"compiled": log_blocks, "py": PURE}


def _hold(dirty: dict[str, None], held: dict[str, Any], ids: list[str], now: Any) -> bool:
    """Session 31's block hold (``ReplicationLog._block``), the reference."""
    if dirty.keys().isdisjoint(ids) and held.keys().isdisjoint(ids):
        held.update(dict.fromkeys(ids, now))
    else:
        for task_id in ids:
            if task_id not in dirty and task_id not in held:
                held[task_id] = now
    return bool(held)


def _unhold(held: dict[str, Any], ids: list[str]) -> bool:
    if not held:
        return False
    collections.deque(map(held.pop, ids, itertools.repeat(None)), maxlen=0)
    return not held


def _mark(dirty: dict[str, None], ids: list[str]) -> None:
    """Session 34's ``dirty.update(ids)``, the dirty tasks a dict."""
    dirty.update(dict.fromkeys(ids))


def _take(dirty: dict[str, None], limit: int | None) -> tuple[str, ...]:
    """Session 34's flush (sorted there), in the dict's order."""
    if limit is None or len(dirty) <= limit:
        tasks = tuple(dirty)
        dirty.clear()
    else:
        tasks = tuple(itertools.islice(dirty, limit))
        collections.deque(map(dirty.__delitem__, tasks), maxlen=0)
    return tasks


def _release(held: dict[str, Any], dirty: dict[str, None], cutoff: Any) -> bool:
    if cutoff is None:
        expired = list(held)
    elif not held or next(iter(held.values())) > cutoff:
        return False
    else:
        leading = itertools.takewhile(functools.partial(operator.ge, cutoff), held.values())
        expired = list(itertools.islice(held, len(list(leading))))
    collections.deque(map(held.__delitem__, expired), maxlen=0)
    dirty.update(dict.fromkeys(expired))
    return bool(expired)


def _state(dirty: dict[str, None], held: dict[str, Any]) -> Any:
    return list(dirty.items()), [(task_id, id(since), since) for task_id, since in held.items()]


@pytest.mark.parametrize("build", BUILDS.values(), ids=BUILDS.keys())
@pytest.mark.parametrize("seed", range(12))
def test_a_block_leaves_the_run_as_the_calls_it_replaced(build: Any, seed: int) -> None:
    """Random holds (over dirty, held and repeated ids), unholds and releases (at, before and past
    a held time, and all), on both pairs alike: the same states and answers after each."""
    check_builds(log_blocks, PURE)
    rng = random.Random(seed)
    tasks = [f"t{i}" for i in range(rng.choice([3, 20, 300]))]
    mine: tuple[dict[str, None], dict[str, Any]] = ({}, {})
    want: tuple[dict[str, None], dict[str, Any]] = ({}, {})
    now = 10.0
    times: list[Any] = []
    for _ in range(300):
        ids = rng.sample(tasks, rng.randrange(1, len(tasks) + 1))
        if rng.random() < 0.2:
            ids.append(rng.choice(ids))
        step = rng.randrange(5)
        if step == 0:
            now += rng.choice([0.0, 0.01, 0.05])
            since = rng.choice([now, int(now)]) if rng.random() < 0.1 else now
            times.append(since)
            assert build.hold(mine[0], mine[1], ids, since) == _hold(*want, ids, since)
        elif step == 1:
            build.mark(mine[0], ids)
            _mark(want[0], ids)
            assert build.unhold(mine[1], ids) == _unhold(want[1], ids)
        elif step == 2:
            cutoff = rng.choice([*times[-3:], now - 0.05, now, None]) if times else None
            assert build.release(mine[1], mine[0], cutoff) == _release(want[1], want[0], cutoff)
        elif step == 3:
            limit = rng.choice([None, 0, 1, 2, len(tasks) // 2, len(tasks)])
            assert build.take(mine[0], limit) == _take(want[0], limit)
        else:
            build.mark(mine[0], ids[:2])
            _mark(want[0], ids[:2])
        assert _state(*mine) == _state(*want)


def test_releasing_nothing_held_says_so() -> None:
    for build in BUILDS.values():
        assert not build.release({}, {}, 1.0)
        assert not build.release({}, {}, None)
        assert not build.unhold({}, ["t"])
        assert not build.hold({"t": None}, {}, ["t"], 1.0)
        assert build.take({}, None) == build.take({}, 0) == ()


@pytest.mark.parametrize("seed", range(20))
def test_the_log_over_the_py_is_the_one_by_one_log(seed: int, monkeypatch: Any) -> None:
    """``test_replication_stretch``'s check, the log's blocks through the ``.py``."""
    monkeypatch.setattr(rlog, "log_blocks", PURE)
    stretch.test_a_batch_of_blocks_leaves_the_log_one_by_one_leaves(seed)
    stretch.test_a_task_held_again_after_it_went_keeps_its_new_time()
