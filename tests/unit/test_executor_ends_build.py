"""The ends of outcomes one by one (``executor_block.ended_each``: ``Ends._ended_each``, a task's
``Row`` or ``Outcome`` that is not a block) do the same compiled as its ``.py`` run as plain
Python. Two executors take the same random events (dispatches as tables or items, from our own
node's owner or another, queued and claimed; reads of their running jobs as rows or outcomes, KEPT
ones among values printed along, no value, errors, cancels and attempts no longer ours, short and
long durations (the half chain's division), a whole-second one given as an int; cancels, withdraws,
a new owner, a run freed; now and then a store that refuses values): one ends with the compiled
build, the other with the ``.py``, and after every step they must have given the same
instructions and hold the same tasks, queue, slots, ledger, store, counters, holdings, mean
duration, half chain and refill and flush flags."""

from __future__ import annotations

import random
import types
from typing import Any

import pytest
from pure_build import check_builds, pure
from test_executor_rows import RUNS, Side, control, dispatch, norm

from handoffd.daemon import executor_block

pytestmark = pytest.mark.timeout(120)

PURE = pure(executor_block, "handoffd_executor_block_pure_each")
PURE.SOON_FLUSH = executor_block.SOON_FLUSH  # (the flush ``_ended_flush`` finds by identity)


def test_the_compiled_build_is_the_one_imported_when_the_core_was_built() -> None:
    check_builds(executor_block, PURE)


def _state(side: Side) -> tuple[Any, ...]:
    st = side.st
    flags = (st._mean_duration, st._half_chain, st._refill_scheduled, st._flush_scheduled)
    stats = st.store.stats
    return (*side.state(), flags, stats.in_memory_bytes, stats.spilled_bytes, stats.values)


@pytest.mark.parametrize("seed", range(24))
def test_the_ends_one_by_one_are_the_same_compiled_and_pure(seed: int) -> None:
    rng = random.Random(seed)
    rows = seed % 2 == 0  # (KEPT replies as ``Row`` tuples, or as ``Outcome``s)
    compiled, plain = Side(rows=rows), Side(rows=rows)
    plain.st._ended_each = types.MethodType(PURE.ended_each, plain.st)  # type: ignore[method-assign]
    for side in (compiled, plain):
        if seed % 4 == 1:  # (a store that refuses a value now and then: the failed end)
            side.st.store.max_bytes = 40
        if seed % 3 == 0:  # (a node that ran short tasks before: the cap's half chain)
            side.st._mean_duration = 1e-5
    terms = dict.fromkeys(RUNS, 1)
    count = 0
    reads = 0
    for _ in range(60):
        roll = rng.random()
        if roll < 0.3 or not compiled.running:
            event, count = dispatch(rng, count, terms)
            outs = [s.step(s.st.handle(event, 1.0)) for s in (compiled, plain)]
        elif roll < 0.85:
            n = rng.randint(1, min(len(compiled.running), 8))
            ends: list[Any] = []
            for key in compiled.running[:n]:
                kind = rng.choice(["kept"] * 6 + ["printed", "none", "error", "cancelled"])
                duration = rng.choice([1e-6, 1e-5, 1e-3, 0.02, 1])
                ends.append((key, kind, duration))
            if rng.random() < 0.15:
                ends.insert(rng.randint(0, n), ((RUNS[0], "gone", 3), "kept", 1e-3))
            flush_idle = rng.random() < 0.5
            reads += 1
            outs = [s.read(ends, flush_idle) for s in (compiled, plain)]
        else:
            event = control(rng, compiled.st.tasks, terms)
            outs = [s.step(s.st.handle(event, 1.0)) for s in (compiled, plain)]
        assert norm(outs[0]) == norm(outs[1])
        assert compiled.running == plain.running
        assert _state(compiled) == _state(plain)
    assert reads > 10  # (outcomes were ended: a run of other events would prove nothing)
