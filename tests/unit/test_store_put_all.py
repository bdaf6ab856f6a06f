"""``ResultStore.put_all``: a block of one run's values held as ``put`` of each, in order, would
hold them (the same values, order, run index and stats), or nothing held and False whenever a
``put`` of them could raise, spill or replace a value (a cap, the memory limit, a value held or
spilled, a task twice), so the caller's one-by-one puts see the store as it was. Its loop
(``store.block.hold_new``) runs in both builds: compiled and its ``.py`` as plain Python."""

from __future__ import annotations

import random
from typing import Any

import pytest
from pure_build import pure

from handoffd.store import block as store_block
from handoffd.store import store as store_module
from handoffd.store.store import ResultStore, StoreError

pytestmark = pytest.mark.timeout(60)


def _held(store: ResultStore) -> tuple[Any, ...]:
    stats = store.stats
    runs = {run: sorted(tasks) for run, tasks in store._by_run.items()}
    return (
        list(store._memory.items()),
        {key: size for key, (_path, size) in store._spilled.items()},  # (paths are random)
        runs,
        (stats.in_memory_bytes, stats.spilled_bytes, stats.spills, stats.values),
    )


PURE_HOLD = pure(store_block, "handoffd_store_block_pure_puts")


@pytest.mark.parametrize("build", ["compiled", "pure"])
@pytest.mark.parametrize("seed", range(30))
def test_put_all_holds_what_puts_hold_or_nothing(
    seed: int, build: str, tmp_path: Any, monkeypatch: Any
) -> None:
    if build == "pure":
        monkeypatch.setattr(store_module, "hold_new", PURE_HOLD.hold_new)
    rng = random.Random(seed)
    limits = dict(
        memory_limit=rng.choice([40, 200, 1 << 20]),
        max_bytes=rng.choice([None, 300, 1 << 20]),
        max_value=rng.choice([None, 20, 1 << 20]),
    )
    for name in ("a", "b"):  # (spill dirs that exist: values do go to disk)
        (tmp_path / name).mkdir()
    block, one = (ResultStore(spill_dir=str(tmp_path / n), **limits) for n in ("a", "b"))
    count = 0
    taken = 0
    for _ in range(12):
        if rng.random() < 0.25:  # (room again after spills: a block may meet a spilled task)
            roomy = rng.choice([40, 200, 1 << 20])
            block.memory_limit = one.memory_limit = roomy
        run = rng.choice(["r1", "r2"])
        ids = []
        for _ in range(rng.randint(1, 8)):  # (mostly new tasks; now and then one held or twice)
            count += 1
            ids.append(f"t{count if rng.random() < 0.9 else rng.randint(0, count)}")
        spilled = sorted(task for held_run, task in block._spilled if held_run == run)
        if spilled and rng.random() < 0.3:  # (a task whose value went to disk)
            ids.insert(rng.randint(0, len(ids)), rng.choice(spilled))
        values = [bytes([rng.randint(0, 255)]) * rng.randint(0, 30) for _ in ids]
        before = _held(block)
        if block.put_all(run, ids, values, [len(v) for v in values]):
            taken += 1
            for task_id, value in zip(ids, values, strict=True):
                one.put(run, task_id, value)
            assert _held(block) == _held(one)
            continue
        assert _held(block) == before  # (nothing held: the caller puts them one by one)
        for store in (block, one):
            for task_id, value in zip(ids, values, strict=True):
                try:
                    store.put(run, task_id, value)
                except StoreError:
                    pass
        assert _held(block) == _held(one)
    if limits["memory_limit"] > 1000 and limits["max_bytes"] != 300:
        assert taken  # (roomy stores take blocks of new tasks)
