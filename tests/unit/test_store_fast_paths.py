"""The result store's short paths: ``put`` of a new value within every cap (a one-task call's only
put) holds it as the general path does, and ``drop_run`` takes a run's values out of memory in one
loop (``store.block.drop_held``, compiled and its ``.py`` as plain Python) with the same counts,
bytes and ``mmap`` hand-over as value by value."""

from __future__ import annotations

import mmap
import random
from typing import Any

import pytest
from pure_build import check_builds, pure

from handoffd.store import block as store_block
from handoffd.store import store as store_module
from handoffd.store.store import ResultStore, StoreError

pytestmark = pytest.mark.timeout(60)

PURE = pure(store_block, "handoffd_store_block_pure_drops")


def _books(store: ResultStore) -> tuple[Any, ...]:
    stats = store.stats
    return (
        [(key, bytes(value)) for key, value in store._memory.items()],
        sorted(store._spilled),
        {run: sorted(tasks) for run, tasks in store._by_run.items()},
        (stats.in_memory_bytes, stats.spilled_bytes, stats.spills, stats.values),
    )


def test_both_builds_are_tested() -> None:
    check_builds(store_block, PURE)


@pytest.mark.parametrize("build", ["compiled", "pure"])
@pytest.mark.parametrize("seed", range(20))
def test_drop_held_takes_the_runs_values_and_counts_them(seed: int, build: str) -> None:
    drop_held = store_block.drop_held if build == "compiled" else PURE.drop_held
    rng = random.Random(seed)
    memory: dict[Any, Any] = {}
    maps = []
    for run in ("r", "other"):
        for n in range(rng.randint(0, 30)):
            if rng.random() < 0.1:
                value: Any = mmap.mmap(-1, rng.randint(1, 64))
                maps.append(value)
            else:
                value = bytes(rng.randint(0, 40))
            memory[(run, f"t{n}")] = value
    asked = [f"t{n}" for n in range(40) if rng.random() < 0.7]  # (some not held: skipped)
    want = [memory[("r", t)] for t in asked if ("r", t) in memory]
    keep = {k: v for k, v in memory.items() if not (k[0] == "r" and k[1] in asked)}
    count, freed, mapped = drop_held(memory, "r", asked)
    assert count == len(want)
    assert freed == sum(len(v) for v in want)
    wanted_maps = [v for v in want if type(v) is mmap.mmap]
    assert (mapped or []) == wanted_maps and (mapped is None) == (not wanted_maps)
    assert list(memory.items()) == list(keep.items())  # (the rest untouched, in order)
    for value in maps:
        value.close()


@pytest.mark.parametrize("seed", range(40))
def test_put_holds_as_the_general_path_does(seed: int, tmp_path: Any) -> None:
    """Every ``put`` of a store whose short path may run against the same store kept on the
    general path (a spilled entry of an unrelated run in its books sends every put there): the
    same values, order, run index, stats and refusals."""
    rng = random.Random(seed)
    limits = dict(
        memory_limit=rng.choice([60, 300, 1 << 20]),
        max_bytes=rng.choice([None, 400, 1 << 20]),
        max_value=rng.choice([None, 25, 1 << 20]),
    )
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    short = ResultStore(spill_dir=str(tmp_path / "a"), **limits)
    general = ResultStore(spill_dir=str(tmp_path / "b"), **limits)
    general._spilled[("elsewhere", "x")] = (str(tmp_path / "none"), 0)  # (never read)
    for _ in range(60):
        run = rng.choice(["r1", "r2", "r3"])
        roll = rng.random()
        if roll < 0.1:
            assert short.drop_run(run) == general.drop_run(run)
        elif roll < 0.15:
            tasks = [f"t{rng.randint(0, 12)}" for _ in range(3)]
            assert short.drop_values(run, tasks) == general.drop_values(run, tasks)
        else:
            task_id = f"t{rng.randint(0, 12)}"  # (now and then one held: replaced)
            value = bytes([rng.randint(0, 255)]) * rng.randint(0, 35)
            refused = []
            for store in (short, general):
                try:
                    store.put(run, task_id, value)
                    refused.append(None)
                except StoreError as exc:
                    refused.append(str(exc))
            assert refused[0] == refused[1]
        books = _books(general)
        books[1].remove(("elsewhere", "x"))
        assert _books(short) == books


def test_drop_run_hands_its_maps_over_and_trims_once_past_the_threshold(
    monkeypatch: Any,
) -> None:
    unmapped: list[Any] = []
    trims: list[int] = []
    monkeypatch.setattr(store_module, "unmap_later", unmapped.append)
    monkeypatch.setattr(store_module, "release_free_memory", lambda: trims.append(1) or 1)
    monkeypatch.setattr(store_module, "TRIM_AFTER_BYTES", 100)
    store = ResultStore(1 << 20)
    assembled = mmap.mmap(-1, 30)
    store.put("r", "a", assembled)
    store.put("r", "b", b"x" * 80)
    store.put("s", "c", b"y" * 99)
    assert store.drop_values("r", ["b"]) == 80  # (counts toward the run's trim)
    assert store.drop_run("r") == 1 and unmapped == [assembled] and trims == [1]  # 30 + 80
    store.put("r", "d", b"z" * 31)
    assert store.drop_run("r") == 1 and trims == [1]  # (the freed 80 went with the first drop)
    assert store.drop_run("s") == 1 and trims == [1]  # (99: under the threshold)
    assert store.drop_run("gone") == 0
    assert store.stats.in_memory_bytes == 0 and store.stats.values == 0 and not store._by_run
    del unmapped[:]
    assembled.close()
