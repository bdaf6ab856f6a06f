"""The replication log's loop over a block of moves (``replication.log_blocks``), both builds: a
run's changed tasks are one dict (None: dirty, a time: held since); each of ``hold``, ``mark``,
``take`` (a flush: the held ones due released, the dirty taken) and ``first_held`` leaves it, and
answers, as session 34's two dicts (a dirty one and a held one, kept here as the reference) did:
the same dirty tasks, the same held ones in the same order from the very same time objects, the
same tasks taken by a flush (in another order inside it: a task dirty from held sits where it was
held); and the log over the ``.py`` is the one-by-one log."""

from __future__ import annotations

import random
from typing import Any

import pytest
import test_replication_stretch as stretch
from pure_build import check_builds, pure

from handoffd.replication import log as rlog
from handoffd.replication import log_blocks

PURE = pure(log_blocks, "handoffd_log_blocks_pure")
BUILDS = {"compiled": log_blocks, "py": PURE}


class _TwoDicts:
    """Session 34's run log (``log_blocks`` of 3b2a975): a dirty dict and a held one, disjoint."""

    def __init__(self) -> None:
        self.dirty: dict[str, None] = {}
        self.held: dict[str, Any] = {}

    def hold(self, ids: list[str], now: Any) -> None:
        for task_id in ids:
            if task_id not in self.dirty:
                self.held.setdefault(task_id, now)

    def mark(self, ids: list[str]) -> None:
        for task_id in ids:
            self.dirty[task_id] = None
            self.held.pop(task_id, None)

    def take(self) -> tuple[str, ...]:
        tasks = tuple(self.dirty)
        self.dirty.clear()
        return tasks

    def release(self, cutoff: Any) -> bool:
        expired = []
        for task_id, since in self.held.items():
            if cutoff is not None and since > cutoff:
                break
            expired.append(task_id)
        for task_id in expired:
            del self.held[task_id]
            self.dirty[task_id] = None
        return bool(expired)


def _seen(changes: dict[str, Any]) -> Any:
    """What the log holds: the dirty tasks (as a set: their order is the batch's, free), the held
    ones in order with each time's identity."""
    dirty = {task_id for task_id, since in changes.items() if since is None}
    held = [(task_id, id(since), since) for task_id, since in changes.items() if since is not None]
    return dirty, held


def _reference(ref: _TwoDicts) -> Any:
    return set(ref.dirty), [(task_id, id(since), since) for task_id, since in ref.held.items()]


@pytest.mark.parametrize("build", BUILDS.values(), ids=BUILDS.keys())
@pytest.mark.parametrize("seed", range(12))
def test_one_dict_holds_what_the_two_dicts_held(build: Any, seed: int) -> None:
    """Random holds (over dirty, held and repeated ids, an int time beside floats), marks and
    whole flushes (held ones released at, before and past a held time, and all): after each the
    same dirty set, the same held list, the same answers; a flush the same set of tasks."""
    check_builds(log_blocks, PURE)
    rng = random.Random(seed)
    tasks = [f"t{i}" for i in range(rng.choice([3, 20, 300]))]
    changes: dict[str, Any] = {}
    ref = _TwoDicts()
    now = 10.0
    times: list[Any] = []
    for _ in range(300):
        ids = rng.sample(tasks, rng.randrange(1, len(tasks) + 1))
        if rng.random() < 0.2:
            ids.append(rng.choice(ids))
        before = list(changes.items())
        step = rng.randrange(5)
        if step == 0:
            now += rng.choice([0.0, 0.01, 0.05])
            since = rng.choice([now, int(now)]) if rng.random() < 0.1 else now
            times.append(since)
            held = len(ref.held)
            assert build.hold(changes, ids, since) == (
                any(t not in ref.dirty and t not in ref.held for t in ids)
            )
            ref.hold(ids, since)
            assert len(ref.held) >= held
        elif step == 1:
            build.mark(changes, ids)
            ref.mark(ids)
        elif step in (2, 3):
            cutoff = rng.choice([*times[-3:], now - 0.05, now, None, 0.0]) if times else None
            limit = rng.choice([None, len(tasks)])
            taken, rest, left = build.take(changes, limit, cutoff)
            ref.release(cutoff)
            assert sorted(taken) == sorted(ref.take()) and len(set(taken)) == len(taken)
            assert left == (2 if ref.held else 0)
            assert rest is changes or list(changes.items()) == before  # (given: left as it was)
            changes = rest
        else:
            build.mark(changes, ids[:2])
            ref.mark(ids[:2])
        assert _seen(changes) == _reference(ref)
        first = build.first_held(changes)
        assert first is (next(iter(ref.held.values())) if ref.held else None)


@pytest.mark.parametrize("build", BUILDS.values(), ids=BUILDS.keys())
@pytest.mark.parametrize("seed", range(8))
def test_a_flush_of_some_takes_the_first_dirty_and_leaves_the_rest_in_place(
    build: Any, seed: int
) -> None:
    """``take(limit, cutoff)``: the held ones up to the first younger than ``cutoff`` dirty in
    place, then the first ``limit`` dirty in the dict's order taken; the dirty ones past it and
    every held one left, in their order, with their values."""
    rng = random.Random(seed)
    changes: dict[str, Any] = {}
    for i in range(rng.randrange(1, 60)):
        changes[f"t{i}"] = None if rng.random() < 0.6 else float(i)
    for limit in (0, 1, 2, rng.randrange(0, 60), None):
        cutoff = rng.choice([None, -1.0, float(rng.randrange(60))])
        before = list(changes.items())
        held = [since for _, since in before if since is not None]
        due = (
            len(held)
            if cutoff is None
            else next((n for n, since in enumerate(held) if since > cutoff), len(held))
        )
        after = []
        for task_id, since in before:
            if since is not None and due:
                since, due = None, due - 1
            after.append((task_id, since))
        dirty = [task_id for task_id, since in after if since is None]
        taken, rest, left = build.take(changes, limit, cutoff)
        assert taken == tuple(dirty if limit is None else dirty[:limit])
        assert list(rest.items()) == [(t, s) for t, s in after if t not in taken]
        assert left == any(s is None for s in rest.values()) + 2 * any(
            s is not None for s in rest.values()
        )
        assert rest is changes or list(changes.items()) == before
        changes = rest


def test_nothing_held_or_dirty_says_so() -> None:
    for build in BUILDS.values():
        assert build.take({}, None, 1.0) == build.take({}, 0, None) == ((), {}, 0)
        assert build.take({"t": 2.0}, None, 1.0) == ((), {"t": 2.0}, 2)
        assert build.take({"t": 2.0}, None, 2.0) == (("t",), {}, 0)
        assert build.take({"t": 2.0}, 0, None) == ((), {"t": None}, 1)
        assert not build.hold({"t": None}, ["t"], 1.0)
        assert build.first_held({"t": None}) is None


@pytest.mark.parametrize("seed", range(20))
def test_the_log_over_the_py_is_the_one_by_one_log(seed: int, monkeypatch: Any) -> None:
    """``test_replication_stretch``'s check, the log's blocks through the ``.py``."""
    monkeypatch.setattr(rlog, "log_blocks", PURE)
    stretch.test_a_batch_of_blocks_leaves_the_log_one_by_one_leaves(seed)
    stretch.test_a_task_held_again_after_it_went_keeps_its_new_time()


class _Run:
    def __init__(self) -> None:
        self.changes: dict[str, Any] = {}


def _feed_reference(
    runs: dict[str, Any],
    moves: list[Any],
    now: Any,
    holding: dict[str, None],
    dirty: dict[str, None],
) -> list[bool]:
    """Session 36's ``ReplicationLog.tasks_changed`` loop (Python, a step a move or block)."""
    kinds: list[bool] = []
    last, primary = None, None
    for run_id, task_id, held in moves:
        if run_id != last:
            last, primary = run_id, runs.get(run_id)
        if primary is None:
            continue
        if type(task_id) is list:
            if held:
                if PURE.hold(primary.changes, task_id, now):
                    holding[run_id] = None
            else:
                PURE.mark(primary.changes, task_id)
                dirty[run_id] = None
        elif held:
            if task_id not in primary.changes:
                primary.changes[task_id] = now
                holding[run_id] = None
        else:
            primary.changes[task_id] = None
            dirty[run_id] = None
        if len(kinds) < 2 and held not in kinds:
            kinds.append(held)
    return kinds


@pytest.mark.parametrize("build", BUILDS.values(), ids=BUILDS.keys())
@pytest.mark.parametrize("seed", range(20))
def test_a_batch_fed_in_one_loop_is_fed_as_move_by_move(build: Any, seed: int) -> None:
    """``feed``: random batches of moves and blocks (held or not, tracked runs and others, one
    run's moves apart and together) leave every run's changes, the holding and dirty runs (in
    their order) and the kinds answered as the Python loop did, from the very same times."""
    rng = random.Random(seed)
    names = ["a", "b", "gone"]
    tracked = {"a": (_Run(), _Run()), "b": (_Run(), _Run())}
    runs = {name: pair[0] for name, pair in tracked.items()}
    ref_runs = {name: pair[1] for name, pair in tracked.items()}
    holding: dict[str, None] = {}
    dirty: dict[str, None] = {}
    ref_holding: dict[str, None] = {}
    ref_dirty: dict[str, None] = {}
    now = 1.0
    for _ in range(40):
        now += rng.choice([0.0, 0.01])
        moves: list[Any] = []
        for _ in range(rng.randrange(0, 8)):
            run_id = rng.choice(names)
            ids = [f"t{rng.randrange(30)}" for _ in range(rng.randrange(1, 6))]
            held = rng.random() < 0.5
            moves.append((run_id, ids if rng.random() < 0.6 else ids[0], held))
        if rng.random() < 0.2:  # (the run's dicts of flushes between: fresh ones)
            holding.clear()
            dirty.clear()
            ref_holding.clear()
            ref_dirty.clear()
        kinds = build.feed(runs, moves, now, holding, dirty)
        assert kinds == _feed_reference(ref_runs, moves, now, ref_holding, ref_dirty)
        assert list(holding) == list(ref_holding) and list(dirty) == list(ref_dirty)
        for name in runs:
            got = [(t, id(s)) for t, s in runs[name].changes.items()]
            assert got == [(t, id(s)) for t, s in ref_runs[name].changes.items()]


def test_a_batch_of_no_tracked_run_changes_nothing() -> None:
    for build in BUILDS.values():
        holding: dict[str, None] = {}
        dirty: dict[str, None] = {}
        assert build.feed({}, [("x", ["t"], True), ("x", "t", False)], 1.0, holding, dirty) == []
        assert holding == {} and dirty == {}
