"""What a success table writes once instead of a call a row (``successes.apply``) is what the rows
one by one wrote, in both builds (the compiled module and its ``.py`` run as plain Python):
``Durations.observe_block`` against ``observe_keys`` a row (the averages by repr, the keys' order,
eviction past ``max_keys``, NaN and negative seconds skipped) and ``history.succeeded`` against
``history.moved(..., old, "DONE", ...)`` (the attempt rows, open, closed, reported, missing, a
full trail)."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from pure_build import check_builds, pure

from handoffd.scheduler import durations as durations_built
from handoffd.scheduler import history as history_built

_DURATIONS = {"compiled": durations_built, "pure": pure(durations_built, "succ_durations_pure")}
_HISTORY = {"compiled": history_built, "pure": pure(history_built, "succ_history_pure")}


def test_the_compiled_builds_are_imported_when_the_core_was_built() -> None:
    check_builds(durations_built, _DURATIONS["pure"])
    check_builds(history_built, _HISTORY["pure"])


def _books(d: Any) -> str:
    return repr(
        (
            list(d.by_function.items()),
            list(d.by_shape.items()),
            list(d._function_order),
            list(d._shape_order),
        )
    )


def _seconds(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.05:
        return math.nan
    if roll < 0.1:
        return -1.0
    if roll < 0.15:
        return 0.0
    return rng.uniform(0.0, 2.0)


@pytest.mark.parametrize("build", ["compiled", "pure"])
@pytest.mark.parametrize("seed", range(40))
def test_a_block_learns_what_its_rows_one_by_one_learn(build: str, seed: int) -> None:
    module = _DURATIONS[build]
    rng = random.Random(seed)
    max_keys = rng.choice([2, 3, 5, 64])
    by_rows = module.Durations(max_keys=max_keys)
    by_blocks = module.Durations(max_keys=max_keys)
    shapes = [f"s{i}" for i in range(rng.randint(1, 4))]
    names = [f"f{i}" for i in range(rng.randint(1, 12))]
    for _ in range(30):
        shape = rng.choice(shapes)
        rows = rng.randint(0, 9)
        keys = [shape + rng.choice(names) for _ in range(rows)]
        secs = [_seconds(rng) for _ in range(rows)]
        for key, seconds in zip(keys, secs, strict=True):
            by_rows.observe_keys(key, shape, seconds)
        by_blocks.observe_block(keys, shape, secs)
        assert _books(by_blocks) == _books(by_rows)
        assert by_blocks.estimate_keys(keys[0] if keys else "", shape) == by_rows.estimate_keys(
            keys[0] if keys else "", shape
        )


_STATES = ("ASSIGNED", "RUNNING", "DONE", "LOST", "FAILED", "TIMEOUT")


def _trail(rng: random.Random, module: Any) -> list[tuple[Any, ...]]:
    trail: list[tuple[Any, ...]] = []
    for attempt in range(1, rng.randint(0, module.ATTEMPTS_LIMIT + 3) + 1):
        row = module.new_row(attempt, rng.choice(["n0", "n1"]), rng.choice([0.0, 5.0]))
        trail.append(
            (
                *row[:2],
                rng.choice(_STATES),
                row[3],
                rng.choice([0.0, 6.0]),
                rng.choice([0.0, 7.0]),
                *row[6:12],
                rng.choice(["", "lost on n1"]),
            )
        )
    return trail[-module.ATTEMPTS_LIMIT :]


@pytest.mark.parametrize("build", ["compiled", "pure"])
@pytest.mark.parametrize("seed", range(40))
def test_a_success_closes_the_attempt_row_as_the_general_move(build: str, seed: int) -> None:
    module = _HISTORY[build]
    rng = random.Random(seed)
    for _ in range(20):
        trail = _trail(rng, module)
        attempt = rng.randint(1, len(trail) + 2)
        node = rng.choice(["n0", "n1"])
        wall = rng.choice([9.0, 10.5])
        cause = f"succeeded on {node} attempt {attempt}"
        old = rng.choice(["ASSIGNED", "RUNNING"])
        want = list(trail)
        module.moved(want, attempt, node, old, "DONE", wall, cause)
        got = list(trail)
        module.succeeded(got, attempt, node, wall, cause)
        assert got == want
        assert [type(x) for row in got for x in row] == [type(x) for row in want for x in row]
