"""The pipeline's routing state machine: joins by correlation id, micro-batches, outputs in push
order, ItemFailed, replay of a dropped replica's items with exactly one output per item."""

from __future__ import annotations

import pytest

from handoffd.stream.state import (
    MAX_BATCHES_AHEAD,
    ItemFailed,
    PipelineState,
    SendBatch,
    Stage,
)


def chain(batch_size=None, batch_timeout=0.0, dead_after=5.0):
    stages = [Stage("double", ("src",), batch_size, batch_timeout), Stage("inc", ("double",))]
    state = PipelineState(["src"], stages, dead_after=dead_after)
    state.joined("double", 0, b"d0", 0.0)
    state.joined("inc", 0, b"i0", 0.0)
    return state


def answer(state: PipelineState, batch: SendBatch, fn, index=0, now=0.0):
    arity = len(state.stages[batch.stage].args)
    outputs = [fn(item) if arity == 1 else fn(*item) for item in batch.args]
    state.answered(batch.stage, index, batch.batch_id, outputs, {}, now)


def run_through(state: PipelineState, now=0.0):
    """Answer every batch until none is left (double: x*2, inc: x+1)."""
    fns = {"double": lambda x: 2 * x, "inc": lambda x: x + 1}
    while batches := state.take(now):
        for batch in batches:
            answer(state, batch, fns[batch.stage])


def test_items_flow_through_stages_and_come_out_in_push_order():
    state = chain()
    for i in range(5):
        assert state.push({"src": i}, 0.0) == i
    batches = state.take(0.0)
    # the queue is split so the replica has its next message while it works: 5 = 3 + 1 + 1
    assert [b.correlation_ids for b in batches] == [[0, 1, 2], [3], [4]]
    assert {b.identity for b in batches} == {b"d0"}
    for batch in reversed(batches):  # answered out of order: outputs still come in push order
        answer(state, batch, lambda x: 2 * x)
    run_through(state)
    assert state.outputs == {i: 2 * i + 1 for i in range(5)} and state.unfinished == 0


def test_fan_out_and_fan_in_join_by_correlation_id():
    stages = [
        Stage("left", ("a",)),
        Stage("right", ("a", "b")),
        Stage("join", ("left", "right")),
    ]
    state = PipelineState(["a", "b"], stages)
    for name in ("left", "right", "join"):
        state.joined(name, 0, name.encode(), 0.0)
    state.push({"a": 1, "b": 10}, 0.0)
    state.push({"a": 2, "b": 20}, 0.0)
    first = state.take(0.0)
    assert {b.stage for b in first} == {"left", "right"}
    # right answers both items before left answers anything: join waits for both sides
    for batch in first:
        if batch.stage == "right":
            answer(state, batch, lambda a, b: a + b)
    assert state.take(0.0) == []
    for batch in first:
        if batch.stage == "left":
            answer(state, batch, lambda a: -a)
    joins = state.take(0.0)
    assert [args for batch in joins for args in batch.args] == [(-1, 11), (-2, 22)]
    for batch in joins:
        answer(state, batch, lambda left, right: (left, right))
    assert state.outputs == {0: (-1, 11), 1: (-2, 22)}


def test_several_sinks_give_a_dict():
    state = PipelineState(["a"], [Stage("x", ("a",)), Stage("y", ("a",))])
    state.joined("x", 0, b"x", 0.0)
    state.joined("y", 0, b"y", 0.0)
    state.push({"a": 3}, 0.0)
    for batch in state.take(0.0):
        answer(state, batch, (lambda v: v * 10) if batch.stage == "x" else (lambda v: -v))
    assert state.outputs == {0: {"x": 30, "y": -3}}


def test_micro_batches_flush_at_size_or_timeout():
    state = chain(batch_size=4, batch_timeout=0.05)
    for i in range(6):
        state.push({"src": i}, 1.0)
    (full,) = state.take(1.0)
    assert full.correlation_ids == [0, 1, 2, 3]
    assert state.take(1.01) == []  # two items wait for more, or for the timeout
    state.tick(1.06)
    (partial,) = state.take(1.06)
    assert partial.correlation_ids == [4, 5]


def test_a_failed_item_gets_item_failed_and_goes_no_further():
    state = chain()
    state.push({"src": 1}, 0.0)
    state.push({"src": 2}, 0.0)
    first, second = state.take(0.0)  # 2 queued, 1 replica: one message each
    state.answered("double", 0, first.batch_id, [None], {0: ("ValueError", "bad input", "tb")}, 0.0)
    answer(state, second, lambda x: 2 * x)
    (inc,) = state.take(0.0)
    assert inc.correlation_ids == [1]
    failed = state.outputs[0]
    assert isinstance(failed, ItemFailed) and failed.correlation_id == 0
    assert failed.error.function_id == "double" and failed.error.exc_type == "ValueError"


def test_a_silent_replica_is_dropped_and_its_items_replayed_once():
    state = chain(dead_after=2.0)
    state.joined("double", 1, b"d1", 0.0)
    for i in range(4):
        state.push({"src": i}, 0.0)
    sent = state.take(0.0)  # 4 items over 2 replicas, split so each has its next message
    assert {b.identity for b in sent} == {b"d0", b"d1"}
    lost = [b for b in sent if b.identity == b"d0"]
    lost_ids = [cid for b in lost for cid in b.correlation_ids]
    state.heard("double", 1, 2.5)
    state.heard("inc", 0, 2.5)
    state.tick(2.5)  # d0 was last heard at 0.0
    assert state.stage_replicas("double") == 1 and state.replayed == len(lost_ids)
    again = state.take(2.5)
    assert {b.identity for b in again} == {b"d1"}
    assert sorted(cid for b in again for cid in b.correlation_ids) == sorted(lost_ids)
    for batch in [b for b in sent if b.identity == b"d1"] + again:
        answer(state, batch, lambda x: 2 * x, index=1)
    for batch in lost:  # the dropped replica answers late: ignored, its batches are forgotten
        state.answered("double", 0, batch.batch_id, [99] * len(batch.correlation_ids), {}, 3.0)
    run_through(state, 3.0)
    assert state.outputs == {i: 2 * i + 1 for i in range(4)} and state.unfinished == 0


def test_a_rejoining_replica_replaces_its_old_attempt():
    state = chain()
    state.push({"src": 1}, 0.0)
    state.take(0.0)
    state.joined("double", 0, b"d0-new", 1.0)  # the owner re-placed it: a new connection
    assert state.replayed == 1
    (batch,) = state.take(1.0)
    assert batch.identity == b"d0-new"


def test_batches_ahead_per_replica_are_bounded():
    state = chain(batch_size=1)
    for i in range(MAX_BATCHES_AHEAD + 3):
        state.push({"src": i}, 0.0)
    assert len(state.take(0.0)) == MAX_BATCHES_AHEAD


@pytest.mark.parametrize("n", [1, 100])
def test_no_replica_no_batch(n):
    state = PipelineState(["s"], [Stage("x", ("s",))])
    for i in range(n):
        state.push({"s": i}, 0.0)
    assert state.take(0.0) == [] and state.unfinished == n
