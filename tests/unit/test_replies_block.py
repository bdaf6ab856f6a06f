"""A read's KEPT replies ended as one block (the pool's ``Kept``: keys, values and durations as
columns, one pid; ``ExecutorState`` ends it a column at a time when it can) do exactly what the
same replies as ``Row``s, one by one, do. Two executors take the same random events (dispatches
from our own node's owner or another, cpu and gpu costs; reads of running jobs, consecutive KEPT
replies as one block on one side and as rows on the other, among values printed along, no value,
errors, cancels and attempts no longer ours, mostly short tasks so the block's path is taken;
cancels, withdraws, a new owner, a run freed; now and then a store too small to take a block
whole): after every step they must have given the same instructions and hold the same tasks,
queue, slots, ledger, store, counters, holdings, mean duration and refill and flush flags. The
block's ends (``executor_block``) and the store's hold of its values (``store.block``) run in both
builds: the compiled one and their ``.py`` as plain Python."""

from __future__ import annotations

import random
from typing import Any

import pytest
from pure_build import check_builds, pure
from test_executor_rows import RUNS, Side, control, dispatch, norm, outcome_of

from handoffd.daemon import executor_block, executor_ends
from handoffd.store import block as store_block
from handoffd.store import store as store_module
from handoffd.worker._records import Kept

pytestmark = pytest.mark.timeout(120)

PURE = pure(executor_block, "handoffd_executor_block_pure")
PURE_HOLD = pure(store_block, "handoffd_store_block_pure")
PURE.SOON_FLUSH = executor_block.SOON_FLUSH  # (the flush ``_ended_flush`` finds by identity)


def test_the_compiled_builds_are_the_ones_imported_when_the_core_was_built() -> None:
    check_builds(executor_block, PURE)
    check_builds(store_block, PURE_HOLD)


def use_build(build: str, monkeypatch: Any) -> None:
    """The block's ends and the store's hold from ``build``: the compiled modules as imported,
    or their ``.py`` run as plain Python."""
    if build == "pure":
        monkeypatch.setattr(executor_ends, "ended_kept", PURE.ended_kept)
        monkeypatch.setattr(executor_ends, "ended_block", PURE.ended_block)
        monkeypatch.setattr(executor_ends.Ends, "_ended_each", PURE.ended_each)
        monkeypatch.setattr(store_module, "hold_new", PURE_HOLD.hold_new)


class BlockSide(Side):
    """Consecutive KEPT replies of a read handed over as one ``Kept`` block."""

    def read(self, ends: list[tuple[Any, str, float]], flush_idle: bool) -> list[Any]:
        outcomes: list[Any] = []
        for key, kind, duration in ends:
            if kind != "kept":
                outcomes.append(outcome_of(key, kind, duration))
                continue
            value = b"v-" + key[1].encode()
            last = outcomes[-1] if outcomes else None
            if type(last) is Kept:
                last.keys.append(key)
                last.values.append(value)
                last.durations.append(duration)
            else:
                outcomes.append(Kept([key], [value], [duration], 41))
        self.running = [k for k in self.running if k not in {e[0] for e in ends}]
        return self.step(self.st.tasks_ended(outcomes, 1.0, flush_idle))


def _state(side: Side) -> tuple[Any, ...]:
    st = side.st
    flags = (st._mean_duration, st._half_chain, st._refill_scheduled, st._flush_scheduled)
    stats = st.store.stats
    return (*side.state(), flags, stats.in_memory_bytes, stats.spilled_bytes, stats.values)


@pytest.mark.parametrize("build", ["compiled", "pure"])
@pytest.mark.parametrize("seed", range(16))
def test_a_block_ends_what_its_rows_end(seed: int, build: str, monkeypatch: Any) -> None:
    use_build(build, monkeypatch)
    rng = random.Random(seed)
    rows, blocks = Side(rows=True), BlockSide(rows=True)
    for side in (rows, blocks):
        if seed % 4 == 3:  # (a store spilling now and then: a block's put falls back)
            side.st.store.memory_limit = 60
        if seed % 2 == 0:  # (a node that ran short tasks before: the block's path from the start)
            side.st._mean_duration = 1e-5
    taken = []
    block = executor_ends.Ends._ended_block

    def counted(self: Any, *args: Any) -> bool:
        done = block(self, *args)
        if self is blocks.st:
            taken.append(done)
        return done

    monkeypatch.setattr(executor_ends.Ends, "_ended_block", counted)
    terms = dict.fromkeys(RUNS, 1)
    count = 0
    for _ in range(60):
        roll = rng.random()
        if roll < 0.3 or not rows.running:
            event, count = dispatch(rng, count, terms)
            outs = [s.step(s.st.handle(event, 1.0)) for s in (rows, blocks)]
        elif roll < 0.85:
            n = rng.randint(1, min(len(rows.running), 12))
            ends = []
            for key in rows.running[:n]:
                kind = rng.choice(["kept"] * 12 + ["printed", "none", "error", "cancelled"])
                short = seed % 2 == 0 or rng.random() < 0.9
                duration = rng.choice([1e-6, 1e-5, 3e-5]) if short else rng.choice([1e-3, 0.02])
                ends.append((key, kind, duration))
            if rng.random() < 0.1:
                ends.insert(rng.randint(0, n), ((RUNS[0], "gone", 3), "kept", 1e-5))
            flush_idle = rng.random() < 0.5
            outs = [s.read(ends, flush_idle) for s in (rows, blocks)]
        else:
            event = control(rng, rows.st.tasks, terms)
            outs = [s.step(s.st.handle(event, 1.0)) for s in (rows, blocks)]
        assert norm(outs[0]) == norm(outs[1])
        assert rows.running == blocks.running
        assert _state(rows) == _state(blocks)
    assert taken, "no block reached the block's path"
    if seed % 2 == 0:
        assert any(taken), "the block's path never ended a block"
