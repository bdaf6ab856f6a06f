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
            d.function_order(),
            d.shape_order(),
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
        # (a key is only inserted and only the oldest leaves: the dicts keep the learned order)
        for d in (by_rows, by_blocks):
            assert list(d.by_function) == d.function_order()
            assert list(d.by_shape) == d.shape_order()
        assert by_blocks.estimate_keys(keys[0] if keys else "", shape) == by_rows.estimate_keys(
            keys[0] if keys else "", shape
        )


@pytest.mark.parametrize("seed", range(20))
def test_both_builds_learn_and_forget_the_same_keys(seed: int) -> None:
    """The compiled ``Durations`` against its ``.py``: the same averages by repr, the same keys
    in the same learned order, the oldest forgotten first past ``max_keys`` (many times over:
    an order's head is compacted as it goes)."""
    rng = random.Random(seed)
    max_keys = rng.choice([1, 2, 7, 100])
    made = [_DURATIONS[b].Durations(max_keys=max_keys) for b in ("compiled", "pure")]
    shapes = [f"s{i}" for i in range(rng.randint(1, 150))]
    for _ in range(200):
        shape = rng.choice(shapes)
        keys = [shape + f"f{rng.randrange(300)}" for _ in range(rng.randint(0, 9))]
        secs = [_seconds(rng) for _ in keys]
        by_block = rng.random() < 0.5
        for d in made:
            if by_block:
                d.observe_block(keys, shape, secs)
            else:
                for key, seconds in zip(keys, secs, strict=True):
                    d.observe_keys(key, shape, seconds)
        assert _books(made[0]) == _books(made[1])
        assert len(made[0].by_function) <= max_keys and len(made[0].by_shape) <= max_keys
    assert made[0].function_order() == list(made[0].by_function)


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


def _report(rng: random.Random) -> tuple[Any, ...]:
    """A DONE report's columns of what only its node knows: pid, start, end (0.0: not said),
    bytes in; an int stays an int, a float a float."""
    return (
        rng.randint(1, 9999),
        rng.choice([0.0, 2.0, 6.5, 8.25]),  # (2.0: said to start before its dispatch, 5.0)
        rng.choice([0.0, 7.5, 9.75]),
        rng.choice([0, 17, 4096]),
    )


@pytest.mark.parametrize("build", ["compiled", "pure"])
@pytest.mark.parametrize("seed", range(40))
def test_a_reported_success_builds_its_row_once_as_observe_then_the_close(
    build: str, seed: int
) -> None:
    """``history.done`` (a success table carrying its report's columns) leaves the attempt row
    as the shell's ``observe`` of the DONE report and then the close (``succeeded``) left it, in
    each build against the ``.py``'s two calls; ``observe_row`` as ``observe`` alone (a row the
    owner does not take)."""
    module, ref = _HISTORY[build], _HISTORY["pure"]
    rng = random.Random(seed)
    for _ in range(20):
        trail = _trail(rng, module)
        attempt = rng.randint(1, len(trail) + 2)
        node = rng.choice(["n0", "n1"])
        wall = rng.choice([9.0, 10.5])
        cause = f"succeeded on {node} attempt {attempt}"
        pid, began, end, bytes_in = _report(rng)
        size = rng.choice([0, 3, 1 << 40])
        want = list(trail)
        ref.observe(
            want,
            attempt,
            node,
            state="DONE",
            pid=pid,
            started=began,
            ended=end,
            bytes_in=bytes_in,
            bytes_out=size,
        )
        seen = list(want)
        ref.succeeded(want, attempt, node, wall, cause)
        got = list(trail)
        module.done(got, attempt, node, pid, began, end, bytes_in, size, wall, cause)
        assert got == want
        assert [type(x) for row in got for x in row] == [type(x) for row in want for x in row]
        alone = list(trail)
        module.observe_row(alone, attempt, node, pid, began, end, bytes_in, size)
        assert alone == seen
        assert [type(x) for row in alone for x in row] == [type(x) for row in seen for x in row]


@pytest.mark.parametrize("build", ["compiled", "pure"])
@pytest.mark.parametrize("seed", range(20))
def test_the_dispatch_delays_alone_are_observe_dones(build: str, seed: int) -> None:
    """``dispatch_delays`` (the shell's part of a table whose history the scheduler writes)
    gives the latencies ``observe_done`` gives, in order, and writes no row."""
    module, ref = _HISTORY[build], _HISTORY["pure"]
    rng = random.Random(seed)
    trails = {t: _trail(rng, module) for t in ("a", "b", "c")}
    rows = []
    for _ in range(rng.randint(0, 12)):
        task = rng.choice(["a", "b", "c", "x"])
        newest = len(trails.get(task, ()))  # (mostly the latest attempt: its delay counts)
        rows.append((task, rng.choice([newest, newest, rng.randint(1, 20)]), *_report(rng)))
    ids = tuple(r[0] for r in rows)
    tries, pids, began, ended, bytes_in = ([r[k] for r in rows] for k in range(1, 6))

    def records() -> dict[str, Any]:
        return {t: type("Rec", (), {"attempts": list(trail)})() for t, trail in trails.items()}

    want: list[float] = []
    ref.observe_done(records(), "n0", ids, tries, pids, began, ended, bytes_in, bytes_in, want)
    tasks = records()
    got: list[float] = []
    module.dispatch_delays(tasks, ids, tries, began, got)
    assert got == want
    assert {t: rec.attempts for t, rec in tasks.items()} == trails
