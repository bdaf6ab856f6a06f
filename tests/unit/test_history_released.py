"""A released run keeps its task histories as ``history_kept.keep`` leaves them (transitions in
the run's own clock) and shifts them to the wall clock only when asked (``history_kept.thaw``):
what a query answers must be what it answered before the release, however long after it is
asked."""

from __future__ import annotations

import gc
import importlib
import random
import weakref
from typing import Any

import pytest
from scheduler_harness import Cluster, spec
from test_history_golden import _pure_run, drive
from test_scheduler_builds import pure_build

from handoffd.scheduler import events as ev
from handoffd.scheduler import history

_KEPT = {
    "compiled": importlib.import_module("handoffd.scheduler.history_kept"),
    "pure": pure_build("history_kept"),
}


@pytest.mark.parametrize("build", ["compiled", "pure"])
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_kept_histories_thaw_to_what_freeze_gives(build: str, seed: int) -> None:
    hk = _KEPT[build]
    module = (
        importlib.import_module("handoffd.scheduler.run") if build == "compiled" else _pure_run()
    )
    run, now = drive(module, seed)
    kept = hk.keep(run.tasks, run.effective_deps)
    for since in (0.0, 1000.0 + now / 3, 1000.0 + now / 2, 1000.0 + now + 1):
        for brief in (False, True):
            want = history.freeze_all(run.tasks, run.effective_deps, run.wall_offset, since, brief)
            assert hk.thaw(kept, run.wall_offset, since, brief) == want
    # kept: what the records held, no transition rebuilt (the wall clock is added on a query),
    # the moves one flat tuple of every task's, each task's count of atoms if they differ
    assert kept[5] == tuple(atom for rec in run.tasks.values() for atom in rec.moves)
    counts = tuple(len(rec.moves) for rec in run.tasks.values())
    assert kept[6] == (None if len(set(counts)) == 1 else counts)
    for i, (task_id, rec) in enumerate(run.tasks.items()):
        assert kept[0][i] == task_id
        rows = kept[4][i]  # (the row itself for one attempt)
        assert rows == (rec.attempts[0] if len(rec.attempts) == 1 else tuple(rec.attempts))
    assert hk.kept_count(kept) == len(run.tasks)


def _out(c: Cluster, task_id: str) -> tuple[str, str, str, int]:
    rec = c.sched.run_state("r").tasks[task_id]  # type: ignore[union-attr]
    return rec.node, "r", task_id, rec.attempt


def test_a_released_run_answers_its_history_long_after() -> None:
    c = Cluster({"n1": 2, "n2": 2})
    c.accept_all(c.submit("r", [spec("a"), spec("b"), spec("c", "a", "b")], max_retries=2))
    c.accept_all(c.succeed(*_out(c, "a")))
    c.accept_all(c.succeed(*_out(c, "b")))
    c.succeed(*_out(c, "c"))
    mid = c.sched.run_history("r")
    assert mid is not None and mid.state == "DONE"
    times = sorted({t[0] for task in mid.tasks for t in task[4]})
    queries = [(0.0, False), (0.0, True), (times[len(times) // 2], False), (times[-1] + 1, False)]
    before = [c.sched.run_history("r", since, brief) for since, brief in queries]
    state = weakref.ref(c.sched.run_state("r"))  # type: ignore[arg-type]
    c.feed(ev.ResultsReleased("r"))
    gc.collect()
    assert state() is None  # the records went with the run: only the kept tuples are left
    # long after: other runs come and go, time passes
    for i in range(3):
        c.accept_all(c.submit(f"o{i}", [spec("x")]))
        c.succeed("n1", f"o{i}", "x", 1)
        c.feed(ev.ResultsReleased(f"o{i}"))
        c.sched.forget(f"o{i}")
    c.t += 3600.0
    after = [c.sched.run_history("r", since, brief) for since, brief in queries]
    assert after == before
    assert before[1] is not None and all(t[4] == () for t in before[1].tasks)  # brief
    assert before[3] is not None and before[3].tasks == ()
    assert [t[0] for t in before[0].tasks] == ["a", "b", "c"] and before[0].total == 3
    c.sched.forget("r")
    assert c.sched.run_history("r") is None


def _records(
    module: Any, rng: random.Random, n: int, same: bool = False
) -> tuple[dict[str, Any], dict[str, tuple[str, ...]]]:
    """``n`` records of ``module`` (a build of ``run``) as a run holds them (state, node, attempt
    rows, flat moves) with 0 to 18 attempts each (the limit's first and newest are kept: 16),
    and their deps; ``same``: every task made as many moves (2)."""
    tasks: dict[str, Any] = {}
    deps: dict[str, tuple[str, ...]] = {}
    for i in range(n):
        task_id = f"t{i}"
        rows = []
        for a in range(rng.choice([0, 1, 1, 1, 2, 3, 18])):
            row = list(history.new_row(a + 1, rng.choice(["n1", "n2"]), rng.random() * 100))
            row[2] = rng.choice(["DONE", "LOST", "FAILED", "ASSIGNED"])
            row[12] = rng.choice(["", "lost", "succeeded on n1 attempt 1"])
            rows.append(tuple(row))
        moves: list[Any] = []
        for k in range(2 if same else rng.randint(0, 5)):
            coded = rng.random() < 0.5
            moves.extend(
                (k + rng.random(), "READY", "ASSIGNED")
                + ((history.DISPATCHED_TO, "n1", 1) if coded else ("by hand", None, None))
            )
        state = rng.choice(["PENDING", "READY", "DONE", "FAILED", "CANCELLED"])
        node = rng.choice([None, "n1", "n2"])
        rec = module.TaskRecord.__new__(module.TaskRecord)
        rec.id, rec.state, rec.node, rec.attempts, rec.moves = task_id, state, node, rows, moves
        tasks[task_id] = rec
        deps[task_id] = tuple(f"t{d}" for d in range(i) if rng.random() < 0.2)
    return tasks, deps


@pytest.mark.parametrize("build", ["compiled", "pure"])
@pytest.mark.parametrize("seed", range(12))
def test_kept_columns_by_slices_thaw_to_every_attempt(build: str, seed: int) -> None:
    """Tasks of no, one and many attempt rows (a row is its own item, the others a tuple of
    rows), of as many moves each or not, kept at once or a random slice at a time: every query
    gives what ``freeze_all`` gives of the records."""
    hk = _KEPT[build]
    module = (
        importlib.import_module("handoffd.scheduler.run") if build == "compiled" else _pure_run()
    )
    rng = random.Random(seed)
    same = seed % 3 == 0
    tasks, deps = _records(module, rng, rng.randint(1, 40), same)
    kept = hk.keep(tasks, deps)
    # (the moves' atom counts kept only when the tasks' differ: 2 moves each, or any number)
    assert (kept[6] is None) == (len({len(rec.moves) for rec in tasks.values()}) == 1)
    assert same <= (kept[6] is None)
    cols = hk.columns()
    records = list(tasks.values())
    at = 0
    while at < len(records):
        at = hk.keep_next(records, at, rng.randint(1, 7), deps, cols)
    assert hk.keep_next(records, at, 5, deps, cols) == len(records)  # (nothing left: no-op)
    assert hk.sealed(cols) == kept
    assert hk.kept_count(kept) == len(tasks)
    offset = rng.random() * 1000
    for since in (0.0, offset + 1.0, offset + 3.0, offset + 99.0):
        for brief in (False, True):
            want = history.freeze_all(tasks, deps, offset, since, brief)
            assert hk.thaw(kept, offset, since, brief) == want


def test_an_empty_run_keeps_empty_columns() -> None:
    for hk in _KEPT.values():
        kept = hk.keep({}, {})
        assert kept == ((), (), (), (), (), (), None) and hk.kept_count(kept) == 0
        assert hk.thaw(kept, 5.0) == () and hk.thaw(kept, 5.0, 1.0, True) == ()
