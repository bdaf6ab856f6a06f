"""The room index's sets kept through a node's membership bits (``NodeState._sets``), in both
builds: over random sequences of reports, dispatches, answers, task moves, capacity changes, deaths
and comebacks, nodes dropped and the same node object added again, window and budget changes,
every set holds after each refresh what the view's reference arithmetic says; and a renew that
changes no membership writes no set.
"""

from __future__ import annotations

import random
from types import ModuleType
from typing import Any

import pytest
from room_builds import build

from handoffd.scheduler.room_view import RoomView


@pytest.fixture(params=["imported", "pure"])
def module(request: pytest.FixtureRequest) -> ModuleType:
    return build(request.param, "_room_index_sets_pure")


_KINDS = ("cpu", "memory")


def _amounts(rng: random.Random, low: float = 0.0) -> dict[str, float]:
    return {k: rng.choice((low, 0.0, 0.5, 1.0, 2.0)) for k in rng.sample(_KINDS, rng.randint(0, 2))}


def _check(view: RoomView, rooms: Any) -> None:
    alive = [n for n in view.nodes.values() if n.alive]
    names = {n.name for n in alive}
    expect: dict[str, set[str]] = {"room": set(), "fill": set(), "free": set(), "wave": set()}
    hollow = set()
    for n in alive:
        room = view.room_of(n)
        # (the values: a report of the same free in another key order marks no node, so the
        # order may be the older one's; test_room_renew holds the order of a renew)
        assert rooms.room[n.name] == room
        if any(q > 0.0 for q in room.values()):
            expect["room"].add(n.name)
        if view.may_take_part(n):
            expect["fill"].add(n.name)
        if any(q > 1e-9 for q in view.effective_free(n.name).values()):
            expect["free"].add(n.name)
        load = view.outstanding.get(n.name, {})
        if any(q > 0.0 and q - load.get(k, 0.0) > 0.0 for k, q in n.capacity.items()):
            expect["wave"].add(n.name)
        if not any(q > 0.0 for q in n.capacity.values()):
            hollow.add(n.name)
    assert rooms._with_room.members & names == expect["room"]
    assert rooms._fillable.members & names == expect["fill"]
    assert rooms._with_free.members & names == expect["free"]
    assert rooms._with_wave.members & names == expect["wave"]
    assert rooms._hollow & names == hollow
    gone = set(rooms.room) - names
    assert not gone
    for members in (rooms._with_room, rooms._fillable, rooms._with_free, rooms._with_wave):
        assert members.members <= names  # (a lost or dropped node left every set)
    assert rooms._hollow <= names


@pytest.mark.parametrize("seed", range(8))
def test_the_sets_follow_every_change_through_the_bits(module: ModuleType, seed: int) -> None:
    rng = random.Random(seed)
    rooms = module.RoomIndex()
    nodes = module.Nodes(rooms.changed, rooms.reordered)
    view = RoomView(nodes, rng.choice((None, 0.005)), 4)
    made = [
        module.NodeState(f"n{i}", f"a{i}", True, _amounts(rng), _amounts(rng, -0.5), 1)
        for i in range(4)
    ]
    for n in made[:3]:
        nodes[n.name] = n
    rooms.refresh(view)
    _check(view, rooms)
    for _ in range(400):
        n = rng.choice(made)
        name = n.name
        move = rng.randrange(9)
        if move == 0:
            n.free = _amounts(rng, -0.5)  # (a report: the watched setter marks it)
        elif move == 1:
            view.pending[name] = _amounts(rng)
            rooms.dirty.add(name)
        elif move == 2:
            view.outstanding[name] = {k: 4 * q for k, q in _amounts(rng).items()}
            rooms.dirty.add(name)
        elif move == 3:
            view.work[name] = rng.choice((0.0, 0.001, 0.01))
            rooms.dirty.add(name)
        elif move == 4:
            n.capacity = _amounts(rng)
        elif move == 5 and name in nodes:
            n.alive = not n.alive
        elif move == 6 and name in nodes:
            del nodes[name]  # (dropped: its name marked as the owner's removal does)
            rooms.changed(name, True)
        elif move == 7 and name not in nodes:
            nodes[name] = n  # (the very object again: its bits are stale for this index)
        elif move == 8:
            view.window = rng.choice((1, 2, 4))
        rooms.refresh(view)
        _check(view, rooms)


def test_a_renew_that_changes_no_membership_writes_no_set(module: ModuleType) -> None:
    puts: list[tuple[str, bool]] = []

    class Counted(module._Ordered):  # type: ignore[name-defined,misc]
        def put(self, name: str, inside: bool) -> None:
            puts.append((name, inside))
            super().put(name, inside)

    rooms = module.RoomIndex()
    rooms._with_room, rooms._fillable = Counted(), Counted()
    rooms._with_free, rooms._with_wave = Counted(), Counted()
    nodes = module.Nodes(rooms.changed, rooms.reordered)
    view = RoomView(nodes, 0.005, 4)
    n = module.NodeState("a", "a:1", True, {"cpu": 1.0}, {"cpu": 1.0}, 1)
    nodes["a"] = n
    rooms.refresh(view)
    assert len(puts) == 4  # (new to the index: every set written once)
    assert rooms._with_room.members == {"a"}
    del puts[:]
    n.free = {"cpu": 0.0}  # (a report: the slot taken, our dispatch pending no more)
    view.outstanding["a"] = {"cpu": 1.0}
    rooms.refresh(view)
    assert puts and all(p == ("a", False) for p in puts)
    assert len(puts) == 3  # (free, wave and room: the three it left)
    del puts[:]
    view.work["a"] = 0.001  # (another task's charge: nothing it is in changes)
    rooms.dirty.add("a")
    rooms.refresh(view)
    assert puts == []
    assert rooms._with_room.members == set() and rooms._fillable.members == {"a"}
