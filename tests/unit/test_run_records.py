"""A run's task records are built by ``run.new_record`` (fields written directly, one shape key a
cost shape) exactly as ``TaskRecord(spec, position, upward_rank, cost_items)`` builds one, in both
builds: every slot equal, for random specs and cost shapes, shared cost dicts or not."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_scheduler_builds import built_run, pure_run

from handoffd.scheduler.durations import shape_key
from handoffd.spec import RunOptions, TaskSpec

SLOTS = pure_run.TaskRecord.__slots__


def fields(rec: Any) -> dict[str, Any]:
    return {name: getattr(rec, name) for name in SLOTS}


costs = st.dictionaries(
    st.sampled_from(["cpu", "memory", "gpu", "disk"]),
    st.one_of(st.integers(0, 8), st.floats(0, 8, allow_nan=False)),
    max_size=3,
)


@pytest.mark.parametrize("module", [built_run, pure_run], ids=["compiled", "pure"])
@given(
    cost=costs,
    position=st.integers(0, 10**6),
    rank=st.floats(-1e6, 1e6, allow_nan=False),
    tid=st.text(min_size=1, max_size=8),
)
@settings(max_examples=60, deadline=None)
def test_new_record_is_the_constructor_s_record(
    module: ModuleType, cost: dict[str, float], position: int, rank: float, tid: str
) -> None:
    spec = TaskSpec(tid, (), cost, b"payload")
    items = tuple(cost.items())
    made = module.new_record(spec, position, rank, items, shape_key(items))
    reference = module.TaskRecord(spec, position, rank, cost_items=items)
    assert type(made) is module.TaskRecord
    assert fields(made) == fields(reference)
    # (the cost given as read already, the spec known pinless: the same record, the cost the
    # one given; a pin is read when not said pinless)
    given_cost = module.new_record(spec, position, rank, items, shape_key(items), cost, True)
    assert fields(given_cost) == fields(reference) and given_cost.cost is cost
    pinned = TaskSpec(tid, (), cost, b"payload", node="n1")
    assert module.new_record(pinned, position, rank, items, shape_key(items), cost).pin == "n1"
    assert made.spec is spec and made.cost_items is items
    # (fresh lists a record: a move appends to its own)
    assert made.moves is not reference.moves and made.attempts is not reference.attempts
    assert made.history == reference.history == [] and not made.has_copy()


@pytest.mark.parametrize("module", [built_run, pure_run], ids=["compiled", "pure"])
@given(shapes=st.lists(costs, min_size=1, max_size=4), picks=st.data())
@settings(max_examples=40, deadline=None)
def test_a_run_s_records_are_the_constructor_s_records(
    module: ModuleType, shapes: list[dict[str, float]], picks: Any
) -> None:
    """Shared cost dicts (as ``plain_graph`` makes them) and one dict a task alike; each record
    as the constructor makes it from the run's position, rank and the cost's items, and
    neighbours that share a cost dict share its items and key."""
    n = picks.draw(st.integers(1, 12))
    specs = []
    for i in range(n):
        shared = picks.draw(st.booleans())
        cost = shapes[picks.draw(st.integers(0, len(shapes) - 1))]
        specs.append(TaskSpec(f"t{i}", (), cost if shared else dict(cost), b"p"))
    run = module.RunState("r", specs, RunOptions())
    for s in specs:
        rec = run.tasks[s.id]
        reference = module.TaskRecord(
            s, rec.position, rec.upward_rank, cost_items=tuple(s.cost.items())
        )
        got, want = fields(rec), fields(reference)
        assert got.pop("order") == run.ordered.index(rec)
        want.pop("order")
        assert got == want
    for a, b in zip(specs[:-1], specs[1:], strict=True):  # (one key a run of one dict)
        if a.cost is b.cost:
            ra, rb = run.tasks[a.id], run.tasks[b.id]
            assert ra.cost_items is rb.cost_items and ra.shape_key is rb.shape_key


@pytest.mark.parametrize("module", [built_run, pure_run], ids=["compiled", "pure"])
@given(shapes=st.lists(costs, min_size=1, max_size=3), picks=st.data())
@settings(max_examples=40, deadline=None)
def test_a_record_s_cost_and_pin_are_its_spec_s_objects(
    module: ModuleType, shapes: list[dict[str, float]], picks: Any
) -> None:
    """The walk, the ready queue, the books and the outbox read ``rec.cost`` and ``rec.pin``
    for ``spec.cost`` and ``spec.node``: identity tests (a block is one cost object, a queue's
    like run one cost and pin) hold only if they are the spec's own objects, whichever
    constructor built the record."""
    n = picks.draw(st.integers(1, 10))
    specs = []
    for i in range(n):
        cost = shapes[picks.draw(st.integers(0, len(shapes) - 1))]
        pin = picks.draw(st.sampled_from([None, "d0", "d1"]))
        specs.append(TaskSpec(f"t{i}", (), cost, b"p", node=pin))
    run = module.RunState("r", specs, RunOptions())
    for s in specs:
        for rec in (run.tasks[s.id], module.TaskRecord(s, 0, 0.0, tuple(s.cost.items()))):
            assert rec.cost is s.cost
            assert rec.pin is s.node
