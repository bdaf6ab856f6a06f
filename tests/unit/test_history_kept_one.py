"""A one-task run's release keeps its history in one step (``history_kept.keep``'s lone record:
every ``execute``), without the columns a run of many grows and joins: what it keeps must be what
the columns' way keeps (``keep_next`` then ``sealed``), in both builds, for a task of any state,
node, dependencies, attempts and moves."""

from __future__ import annotations

import importlib
import random

import pytest
from pure_build import pure

from handoffd.scheduler import history
from handoffd.scheduler.run import RunState
from handoffd.spec import RunOptions, TaskSpec

built = importlib.import_module("handoffd.scheduler.history_kept")
pure_kept = pure(built, "handoffd_history_kept_one_pure")


@pytest.mark.parametrize("module", [built, pure_kept], ids=["compiled", "pure"])
@pytest.mark.parametrize("seed", range(60))
def test_a_lone_tasks_keep_is_the_columns_keep(module: object, seed: int) -> None:
    rng = random.Random(seed)
    run = RunState("r", [TaskSpec("t", (), {"cpu": 1.0}, b"p")], RunOptions(), term=1)
    rec = run.tasks["t"]
    rec.state = rng.choice(["DONE", "FAILED", "CANCELLED", "READY"])
    rec.node = rng.choice([None, "", "n1", "n2"])
    for attempt in range(1, rng.randrange(0, 4) + 1):
        history.opened(rec.attempts, attempt, rec.node or "n1", 10.0 + attempt)
    rec.moves[:] = []
    for i in range(rng.randrange(4)):  # (a move's atoms: when, from, to, what, node, attempt)
        rec.moves.extend((0.5 * i, "READY", "ASSIGNED", "dispatched to ", "n1", i + 1))
    deps = {"t": rng.choice([(), ("a",), ["a", "b"]])}
    cols = module.columns()  # type: ignore[attr-defined]
    module.keep_next([rec], 0, 1, deps, cols)  # type: ignore[attr-defined]
    whole = module.sealed(cols)  # type: ignore[attr-defined]
    kept = module.keep({"t": rec}, deps)  # type: ignore[attr-defined]
    assert kept == whole
    assert [type(c) for c in kept] == [type(c) for c in whole]
    assert module.thaw(kept, 1.0) == module.thaw(whole, 1.0)  # type: ignore[attr-defined]
