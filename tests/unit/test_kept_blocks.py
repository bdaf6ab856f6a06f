"""A released run's histories kept as one block of columns (``history.keep``), checked against the
per-task form it replaced, kept here as the reference: both builds, random runs (more attempts
than kept on some tasks, none on one), every ``since``/``brief`` query, releases by random
slices."""

from __future__ import annotations

import importlib
import random
from typing import Any

import pytest
from test_history_golden import _pure_run, drive
from test_scheduler_builds import pure_build

_BUILDS = ("compiled", "pure")
_HISTORY = {
    "compiled": importlib.import_module("handoffd.scheduler.history"),
    "pure": pure_build("history"),
}


def _run_module(build: str) -> Any:
    return importlib.import_module("handoffd.scheduler.run") if build == "compiled" else _pure_run()


# -- the per-task form a released run kept until this block (the reference) ------------------------


def _keep_per_task(tasks: Any, deps: Any) -> tuple[Any, ...]:
    return tuple(
        (
            task_id,
            rec.state,
            rec.node or "",
            tuple(rec.attempts),
            tuple(rec.moves),
            tuple(deps[task_id]),
        )
        for task_id, rec in tasks.items()
    )


def _thaw_per_task(hist: Any, kept: Any, wall_offset: float, since: float, brief: bool) -> Any:
    out = []
    for k in kept:
        moves = k[4]
        if since and not (moves and moves[len(moves) - hist.STRIDE] + wall_offset >= since):
            continue
        steps = () if brief else hist.transitions(moves)
        out.append(hist.freeze(k[0], k[1], k[2], k[3], steps, wall_offset, k[5]))
    return tuple(out)


@pytest.mark.parametrize("build", _BUILDS)
@pytest.mark.parametrize("seed", range(12))
def test_a_block_thaws_to_the_per_task_form_kept_whole_or_by_slices(build: str, seed: int) -> None:
    hist = _HISTORY[build]
    run, now = drive(_run_module(build), seed)
    rng = random.Random(seed)
    recs = list(run.tasks.values())
    for _ in range(rng.randint(0, 4)):  # more attempts and moves on some, none on others
        rec = rng.choice(recs)
        for a in range(rng.randint(1, hist.ATTEMPTS_LIMIT + 3)):
            hist.opened(rec.attempts, rec.attempt + 1 + a, "n9", 1000.0 + now + a)
            if len(rec.attempts) > hist.ATTEMPTS_LIMIT:
                del rec.attempts[1]
    bare = recs[0] if seed % 2 else rng.choice(recs)
    bare.attempts.clear()
    del bare.moves[:]
    block = hist.keep(run.tasks, run.effective_deps)
    reference = _keep_per_task(run.tasks, run.effective_deps)
    assert hist.size(block) == len(reference) == len(run.tasks)
    assert len(block[3]) == sum(block[4]) and len(block[5]) == sum(
        block[6]
    )  # (one flat tuple each)
    for since in (
        0.0,
        1000.0 + now / 3,
        1000.0 + now / 2,
        1000.0 + now + 1,
        1000.0 + rng.random() * now,
    ):
        for brief in (False, True):
            want = _thaw_per_task(hist, reference, run.wall_offset, since, brief)
            assert hist.thaw(block, run.wall_offset, since, brief) == want
    # a release by slices (``owned.Releasing``) seals the same block, the records held in order
    cols, held, items = hist.columns(), [], iter(run.tasks.items())
    while hist.keep_next(items, run.effective_deps, rng.randint(1, 5), cols, held):
        pass
    assert hist.sealed(cols) == block and held == recs
