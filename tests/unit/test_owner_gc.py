"""A big run's finished tasks cost their owner's collector nothing (issue 19 item 7): a task's
attempts are rows of atoms and its copies a tuple of names, which the collector stops tracking at
their first collection, where an attempt object and a set stayed tracked for good and every full
collection walked ~2 per finished task (166 ms of the new owner's 185 ms stall after a
200,000-task takeover). Both builds, and the state takeovers and recomputes leave."""

from __future__ import annotations

import gc
import importlib
from types import ModuleType
from typing import Any

import pytest
from pure_build import pure

from handoffd.protocol.snapshot import decode_run, encode_run
from handoffd.replication import takeover
from handoffd.spec import RunOptions, TaskSpec

N = 3000


_BUILT = importlib.import_module("handoffd.scheduler.run")
BUILDS = [_BUILT, pure(_BUILT, "handoffd_run_pure_gc")]


def _tracked() -> int:
    gc.collect()
    return len(gc.get_objects())


def _finish_all(run: Any, now: float) -> None:
    for i, rec in enumerate(run.ordered):
        run.assign(rec, "n1", now)
        run.move(rec, "RUNNING", now, "started")
        run.succeeded(rec, "n1", 8, None, now)
        if i % 3 == 0:
            run.add_copies([rec.id], "n2")  # (a consumer fetched a copy)


@pytest.mark.parametrize("chain", [False, True], ids=["independent", "chain"])
@pytest.mark.parametrize("module", BUILDS, ids=["compiled", "pure"])
def test_finished_tasks_add_next_to_no_tracked_objects(module: ModuleType, chain: bool) -> None:
    # A chain with one output: each finished task frees its input (``_free_unneeded``).
    specs = [
        TaskSpec(f"t{i}", (f"t{i - 1}",) if chain and i else (), {"cpu": 1.0}, b"p")
        for i in range(N)
    ]
    run = module.RunState("r", specs, RunOptions(outputs=(f"t{N - 1}",) if chain else None))
    run.start(0.0)
    before = _tracked()
    _finish_all(run, 1.0)
    run.node_lost("n3", 2.0)  # (no copies there: a walk over every task's copies)
    added = _tracked() - before
    assert run.remaining == 0 and len(run.take_freed()) == (N - 1 if chain else 0)
    # Before: an attempt object and a set of copies per task (2 N).
    assert added < N / 10, f"{added} tracked objects added by {N} finished tasks"


def test_a_run_rebuilt_by_a_takeover_keeps_its_tasks_untracked() -> None:
    run_module = BUILDS[0]
    specs = [TaskSpec(f"t{i}", (), {"cpu": 1.0}, b"p") for i in range(300)]
    run = run_module.RunState("r", specs, RunOptions())
    run.start(0.0)
    _finish_all(run, 1.0)
    data = decode_run(encode_run(run))
    holdings = {
        "n2": takeover.Holdings({f"t{i}": 8 for i in range(0, 300, 2)}, {}),
        "n1": takeover.Holdings({f"t{i}": 8 for i in range(300)}, {}),
    }
    from_data = run_module.RunState.from_snapshot(data)
    merged = run_module.RunState.from_snapshot(takeover.merge(data, holdings))
    merged_in_place = takeover.merge_run(run_module.RunState.from_snapshot(data), holdings)
    assert merged.snapshot() == merged_in_place.snapshot()
    for rebuilt in (from_data, merged, merged_in_place):
        gc.collect()
        for rec in rebuilt.tasks.values():
            assert not gc.is_tracked(rec.locations), rec.locations
            assert rec.attempts and not any(gc.is_tracked(a) for a in rec.attempts)
    for i, (a, b) in enumerate(zip(from_data.tasks.values(), merged.tasks.values(), strict=True)):
        assert a.locations == (("n1", "n2") if i % 3 == 0 else ("n1",))
        assert b.locations == (("n1", "n2") if i % 2 == 0 else ("n1",))
