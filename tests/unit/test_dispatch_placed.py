"""A dispatch as the scheduler's columns (``outbox.Placed``, session 28): the owner's books append
each placed task to its (node, run) batch's columns, what consecutive tasks of one function share
kept once a group, and the shell's builders (``daemon/dispatch.py``, ``daemon/lane.py``) read
those columns whole. The batch reads back as the ``DispatchedTask`` items it stands for, in both
builds, and the builders' output is the per-item reference's (``dispatch_tasks``)."""

from __future__ import annotations

import random
from typing import Any

import pytest
from core_strategies import seeded, size
from hypothesis import given, settings
from pure_build import pure
from scheduler_harness import dispatches
from test_protocol_columns import _check_here_table, wire
from test_scheduler_twin import cluster

from handoffd.daemon import lane
from handoffd.daemon.dispatch import dispatch_message, dispatch_tasks
from handoffd.protocol.columns import dispatch_items, split_frames
from handoffd.scheduler import events as ev
from handoffd.scheduler import outbox as imported
from handoffd.spec import TaskSpec

pytestmark = pytest.mark.timeout(120)


BUILDS = {"imported": imported, "pure": pure(imported, "_pure_outbox_for_placed")}

# Shared objects, as a run's tasks of one function share theirs; equal but distinct ones too
# (b"code" twice), which must start a group of their own.
PAYLOADS = [b"code", bytes(bytearray(b"code")), b"other"]
COSTS = [{"cpu": 1.0}, {"cpu": 1.0}, {"cpu": 2.0, "gpu": 1.0}]
TEXTS = ["variadic", "as_list"]
TIMEOUTS = [None, 2.5]
REF = ev.ValueRef("p", ("b",), b"v")


def item_list(rng: random.Random) -> list[ev.DispatchedTask]:
    """Up to 12 items of the shared objects above (one drawn seed, ``core_strategies.seeded``)."""
    return [
        ev.DispatchedTask(
            f"t{i}",
            rng.choice((1, 1 << 40, rng.randint(1, 1 << 40))),
            rng.choice(PAYLOADS),
            rng.choice(COSTS),
            rng.choice(TEXTS),
            rng.choice(TIMEOUTS),
            rng.choice([(), (), (REF,)]),
            rng.randint(-5, 5),
            rng.choice((0.0, 1e6, rng.uniform(0, 1e6))),
        )
        for i in range(size(rng, 0, 12))
    ]


def _groups(items: list[ev.DispatchedTask]) -> int:
    """How many runs of consecutive tasks share the same four objects."""
    keys = [(id(i.payload), id(i.cost), id(i.argument_inclusion), id(i.timeout)) for i in items]
    return sum(1 for j, key in enumerate(keys) if j == 0 or key != keys[j - 1])


@pytest.mark.parametrize("build", sorted(BUILDS))
@settings(max_examples=150, deadline=None)
@given(items=seeded(item_list))
def test_a_placed_batch_reads_back_as_its_items_one_group_a_run_of_shared_objects(
    build: str, items: list[ev.DispatchedTask]
) -> None:
    placed = BUILDS[build].placed_of(items)
    assert placed.tasks() == tuple(items) and placed == tuple(items) and tuple(items) == placed
    assert list(placed) == items and len(placed) == len(items)
    assert len(placed.groups) == _groups(items) and placed.size() == len(items)
    assert sum(r[0] for r in placed.runs()) == len(items)
    assert (placed.inputs is None) == (not any(i.inputs for i in items))
    assert ev.Dispatch("n", "r", 1, placed) == ev.Dispatch("n", "r", 1, tuple(items))


@pytest.mark.parametrize("pure", [True, False])
def test_the_schedulers_dispatch_is_its_columns_and_builds_as_its_items(pure: bool) -> None:
    """A run whose tasks are of two functions: each node's dispatch holds one group a function
    (the payload, cost and inclusion objects read once a run of its tasks, not kept a task), and
    what the shell builds from it, to another node and to our own, is what the per-item
    reference builds from its items."""
    c = cluster(pure, {"a": 8.0, "b": 8.0}, 8, None)
    cost, f, g = {"cpu": 1.0}, b"f-code", b"g-code"
    specs = [TaskSpec(f"f{i}", (), cost, f) for i in range(6)]
    specs += [TaskSpec(f"g{i}", (), cost, g, priority=1) for i in range(6)]
    sent = dispatches(c.submit("r", specs))
    assert sum(len(d.items) for d in sent) == 12
    for d in sent:
        placed: Any = d.items
        assert type(placed).__name__ == "Placed"
        items = list(placed)
        assert len(placed.groups) == _groups(items) <= 2
        assert all(g[1] is items[g[0]].payload for g in placed.groups)
        addresses = {"a": "a:1", "b": "b:1"}
        msg, frames = dispatch_message(d, "o:1", addresses.get, ())
        got, received = wire(msg, frames)
        direct, direct_frames = dispatch_tasks(d, "o:1", addresses.get, ())
        assert dispatch_items(got) == direct
        assert split_frames(got.frame_sizes, received, "DispatchColumns") == direct_frames
        _check_here_table(d)


@pytest.mark.parametrize("pure", [True, False])
def test_a_one_task_dispatch_takes_the_one_task_table(pure: bool) -> None:
    """``lane.one_table`` reads the one task's columns: the table ``dispatch_here`` builds."""
    c = cluster(pure, {"a": 1.0}, 1, None)
    (d,) = dispatches(c.submit("r", [TaskSpec("x", (), {"cpu": 1.0}, b"x", timeout=3.0)]))
    built = lane.one_table(d, "a:1", {"a": "a:1"}.get, ())
    assert built is not None
    table, frames = built
    assert frames == [b"x"] and table.task_ids == ("x",) and table.timeouts == [3.0]
    assert table.tasks() == dispatch_tasks(d, "a:1", {"a": "a:1"}.get, ())[0]
