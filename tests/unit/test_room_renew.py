"""The room index's refresh of one node (``RoomIndex._renew``) and its write of a report
(``RoomIndex.report``), in both builds, against the view's reference arithmetic
(``RoomView.room_of`` and ``may_take_part``): the same room, value for value and key for key in
the same order (the core reads the rooms' kinds in their order), and the same set memberships,
over random nodes whose reported free lacks kinds of their capacity, holds kinds they lack, is
below our unanswered dispatches or above the window's cap, with and without a time budget. A
report's free is kept as a dict of its own, whether it came as a dict or another mapping.
"""

from __future__ import annotations

import random
from types import MappingProxyType, ModuleType

import pytest
from room_builds import build

from handoffd.scheduler.room_view import RoomView


@pytest.fixture(params=["imported", "pure"])
def module(request: pytest.FixtureRequest) -> ModuleType:
    return build(request.param, "_room_index_renew_pure")


_KINDS = ("cpu", "memory", "gpu")


def _some(rng: random.Random, scale: float) -> dict[str, float]:
    """A few kinds in a random order, some at 0, some negative (a free below our dispatches)."""
    kinds = rng.sample(_KINDS, rng.randint(0, 3))
    return {k: rng.choice((0.0, -0.5, 0.25, 1.0, 3.0, 40.0)) * scale for k in kinds}


@pytest.mark.parametrize("seed", range(6))
def test_renew_computes_the_reference_room_and_sets(module: ModuleType, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(60):
        window = rng.choice((1, 2, 4, 32))
        budget = rng.choice((None, 0.005, 0.0))
        nodes = {}
        for i in range(rng.randint(1, 6)):
            capacity = {k: q for k, q in _some(rng, 1.0).items() if q >= 0.0}
            free = _some(rng, 1.0)
            nodes[f"n{i}"] = module.NodeState(f"n{i}", f"a{i}", True, capacity, free, 1)
        view = RoomView(nodes, budget, window)
        for name in nodes:
            if rng.random() < 0.5:
                view.pending[name] = {k: q for k, q in _some(rng, 1.0).items() if q > 0.0}
            if rng.random() < 0.7:
                view.outstanding[name] = {k: q for k, q in _some(rng, 8.0).items() if q > 0.0}
            if rng.random() < 0.5:
                view.work[name] = rng.choice((0.001, 0.005, 0.5))
        rooms = module.RoomIndex()
        elsewhere = rng.random() < 0.3
        if elsewhere:
            rooms._hollow.add("elsewhere")  # (a hollow node of another name stays)
        rooms.dirty.update(nodes)
        rooms.refresh(view)
        for name, n in nodes.items():
            reference = view.room_of(n)
            room = rooms.room[name]
            assert list(room.items()) == list(reference.items()), (name, room, reference)
            assert (name in rooms._with_room.members) == any(q > 0.0 for q in room.values())
            assert (name in rooms._fillable.members) == view.may_take_part(n)
            assert (name in rooms._hollow) == (not any(q > 0.0 for q in n.capacity.values()))
            effective = view.effective_free(name)
            assert (name in rooms._with_free.members) == any(q > 1e-9 for q in effective.values())
        assert ("elsewhere" in rooms._hollow) == elsewhere


def test_renew_drops_a_node_from_the_hollow_set_once_it_has_capacity(module: ModuleType) -> None:
    n = module.NodeState("a", "a:1", True, {}, {}, 1)
    nodes = {"a": n}
    view = RoomView(nodes, None, 4)
    rooms = module.RoomIndex()
    rooms.dirty.add("a")
    rooms.refresh(view)
    assert rooms._hollow == {"a"}
    n._capacity = {"cpu": 1.0}
    rooms.dirty.add("a")
    rooms.refresh(view)
    assert rooms._hollow == set()
    assert list(rooms.room["a"].items()) == [("cpu", 0.0)]  # (the kind it lacked, capped at 0)


@pytest.mark.parametrize("kind", ["dict", "mapping"])
def test_report_keeps_a_dict_of_its_own(module: ModuleType, kind: str) -> None:
    marks: list[str] = []
    nodes = module.Nodes(lambda name, shape=False: marks.append(name), lambda: None)
    nodes["a"] = module.NodeState("a", "a:1", True, {"cpu": 2.0}, {"cpu": 2.0}, 1)
    rooms = module.RoomIndex()
    sent = {"memory": 5.0, "cpu": 1.0}
    free = sent if kind == "dict" else MappingProxyType(sent)
    out = rooms.report(nodes, "a", "a:1", {"cpu": 2.0}, 2, free)
    assert out == module.FREED and "a" in rooms.dirty
    kept = nodes["a"].free
    assert type(kept) is dict and kept is not sent
    assert list(kept.items()) == [("memory", 5.0), ("cpu", 1.0)]
    sent["cpu"] = 0.0  # (the sender's dict changing later leaves ours alone)
    assert kept["cpu"] == 1.0
    # an older report, or the same free again, writes nothing
    assert rooms.report(nodes, "a", "a:1", {"cpu": 2.0}, 1, {"cpu": 0.0}) == 0
    assert rooms.report(nodes, "a", "a:1", {"cpu": 2.0}, 3, dict(kept)) == 0
    assert nodes["a"].free is kept


def test_a_room_that_differs_from_the_free_in_nothing_is_the_free_itself(
    module: ModuleType,
) -> None:
    free = {"cpu": 0.0, "memory": 2.0}
    n = module.NodeState("a", "a:1", True, {"cpu": 1.0, "memory": 4.0}, free, 1)
    view = RoomView({"a": n}, None, 4)
    rooms = module.RoomIndex()
    rooms.dirty.add("a")
    rooms.refresh(view)
    assert rooms.room["a"] is free  # (no pending dispatch, the caps above it: nothing copied)
    # A dispatch unanswered, then a cap below the free, then a kind the free lacks: each a copy,
    # and the node's reported free is left as it was.
    for change in ("pending", "cap", "lacks"):
        if change == "pending":
            view.pending["a"] = {"memory": 1.0}
        elif change == "cap":
            view.pending.clear()
            view.outstanding["a"] = {"memory": 15.0}
        else:
            view.outstanding.clear()
            n._capacity = {"cpu": 1.0, "memory": 4.0, "gpu": 1.0}
        rooms.dirty.add("a")
        rooms.refresh(view)
        assert rooms.room["a"] is not free
        assert list(rooms.room["a"].items()) == list(view.room_of(n).items())
        assert free == {"cpu": 0.0, "memory": 2.0}
