"""Both builds of the retention policy (``scheduler/retention.py``, compiled from the ``.py``
alone) answer the same: the same random events (runs ending, again after a takeover, collected,
dropped; time passing by random steps, equal stamps too) give the same instructions from the
compiled policy and from the ``.py`` run as plain Python, and the same runs tracked after each."""

from __future__ import annotations

import random
from typing import Any

import pytest
from test_scheduler_builds import pure_build

from handoffd.scheduler import retention as built

pure_retention = pure_build("retention")


def _play(module: Any, seed: int) -> list[Any]:
    rng = random.Random(seed)
    policy = module.RetentionPolicy(rng.choice([0.0, 1.0, 5.0]), rng.choice([0.0, 2.0, 60.0]))
    runs = [f"r{i}" for i in range(rng.randint(1, 6))]
    now = 0.0
    seen: list[Any] = []
    for _ in range(rng.randint(1, 80)):
        now += rng.choice([0.0, 0.0, 0.5, 1.0, 3.0])
        pick = rng.random()
        run_id = rng.choice(runs)
        if pick < 0.3:
            event = module.RunEnded(run_id)
        elif pick < 0.5:
            event = module.ResultsCollected(run_id)
        elif pick < 0.6:
            event = module.RunDropped(run_id)
        else:
            event = module.TimePassed()
        seen.append([(type(i).__name__, *vars_of(i)) for i in policy.handle(event, now)])
        seen.append(policy.tracked())
    return seen


def vars_of(ins: Any) -> tuple[Any, ...]:
    return (ins.run_id, getattr(ins, "ended", None))


@pytest.mark.parametrize("seed", range(200))
def test_both_builds_retain_the_same(seed: int) -> None:
    assert pure_retention.__file__.endswith(".py")  # type: ignore[union-attr]
    assert _play(built, seed) == _play(pure_retention, seed)
