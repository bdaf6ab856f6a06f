"""A node's report written by ``RoomIndex.report`` (one C call when compiled) leaves the view and
the room index exactly as assigning the node's fields did (``NodeState``'s property setters, the
owner's path before): the same fields, the same nodes marked dirty, the same caches dropped (live nodes,
largest capacity), the same answer (capacity shrunk, free changed). Random report sequences go
through the imported build and through the ``.py`` (the pure-Python build) alike, each against
the assignments replayed on a twin index of the same build, and the two builds must agree.
"""

from __future__ import annotations

import random
from types import ModuleType
from typing import Any

import pytest
from pure_build import pure

from handoffd.resources import fits
from handoffd.scheduler import room_index as imported

_CAPACITIES = (
    {"cpu": 4.0, "memory": 4e3},
    {"cpu": 4.0, "memory": 4e3},
    {"cpu": 2.0, "memory": 4e3},
    {"cpu": 8.0, "memory": 8e3, "gpu": 1.0},
    {"cpu": 4.0},
)
_FREES = (
    {"cpu": 4.0, "memory": 4e3},
    {"cpu": 0.0, "memory": 4e3},
    {"cpu": 1.0, "memory": 2e3},
    {"cpu": 3.0},
    {},
)


def _pure() -> ModuleType:  # the .py itself, whatever build is imported
    return pure(imported, "_room_index_pure")


def _assigned(n: Any, address: str, capacity: dict, version: int, free: dict) -> int:
    """The owner's update before ``report``: ``ClusterView.renew`` then the version and free
    assignments, each through ``NodeState``'s setters."""
    out = 0
    if n.address != address:
        n.address = address
    if n.capacity != capacity:
        if not fits(n.capacity, capacity):
            out |= 1
        n.capacity = dict(capacity)
    if version > n.version:
        n.version = version
        if free != n.free:
            n.free = dict(free)
            out |= 2
    return out


def _index(module: ModuleType, names: list[str]) -> tuple[Any, Any]:
    rooms = module.RoomIndex()
    nodes = module.Nodes(rooms.changed, rooms.reordered)
    for name in names:
        nodes[name] = module.NodeState(name, "a", True, dict(_CAPACITIES[0]), dict(_FREES[0]), 0)
    return rooms, nodes


def _state(rooms: Any, nodes: Any) -> tuple[Any, ...]:
    rows = tuple(
        (n.name, n.address, n.alive, n.capacity, n.free, n.version) for n in nodes.values()
    )
    return rows, sorted(rooms.dirty), rooms._alive is None, rooms._top is None


def _trace(module: ModuleType, seed: int) -> list[tuple[Any, ...]]:
    """Random reports through ``report`` on one index and the assignments on a twin, both of
    ``module``'s build: equal after every step; returns the steps' states."""
    rng = random.Random(seed)
    names = [f"n{i}" for i in range(rng.randint(1, 6))]
    rooms, nodes = _index(module, names)
    twin_rooms, twin_nodes = _index(module, names)
    trace = []
    for _ in range(400):
        roll = rng.random()
        if roll < 0.1:  # a placement pass: the dirty set is consumed, the caches rebuilt
            for r, ns in ((rooms, nodes), (twin_rooms, twin_nodes)):
                r.dirty.clear()
                r.top(r.alive(ns))
            continue
        name = rng.choice(names)
        address = rng.choice(("a", "a", "b"))
        capacity = dict(rng.choice(_CAPACITIES))
        version = nodes[name].version + rng.choice((-1, 0, 1, 1, 2))
        free = dict(rng.choice(_FREES))
        got = rooms.report(nodes, name, address, capacity, version, free)
        want = _assigned(twin_nodes[name], address, capacity, version, free)
        assert got == want
        assert got & ~(module.SHRUNK | module.FREED) == 0
        assert _state(rooms, nodes) == _state(twin_rooms, twin_nodes)
        # the node keeps copies: the report's dicts are the sender's
        capacity["cpu"] = -1.0
        free["cpu"] = -1.0
        assert _state(rooms, nodes) == _state(twin_rooms, twin_nodes)
        trace.append((got, _state(rooms, nodes)))
    return trace


@pytest.mark.parametrize("seed", range(12))
def test_report_as_assignments_in_both_builds(seed: int) -> None:
    pure = _pure()
    assert _trace(imported, seed) == _trace(pure, seed)


def test_report_marks_and_answers() -> None:
    rooms, nodes = _index(imported, ["n0", "n1"])
    rooms.dirty.clear()
    rooms.top(rooms.alive(nodes))
    n0 = nodes["n0"]
    # same capacity, newer version, same free: nothing marked, nothing to say
    assert rooms.report(nodes, "n0", "a", dict(_CAPACITIES[0]), 1, dict(_FREES[0])) == 0
    assert n0.version == 1 and not rooms.dirty
    # an older report's free is ignored
    assert rooms.report(nodes, "n0", "a", dict(_CAPACITIES[0]), 0, {"cpu": 1.0}) == 0
    assert n0.free == _FREES[0] and not rooms.dirty
    # newer free: the room only
    assert rooms.report(nodes, "n0", "b", dict(_CAPACITIES[0]), 2, {"cpu": 1.0}) == imported.FREED
    assert n0.free == {"cpu": 1.0} and n0.address == "b" and rooms.dirty == {"n0"}
    assert rooms._alive is not None and rooms._top is not None
    # a smaller capacity: shrunk, and the live nodes and largest capacity recomputed
    got = rooms.report(nodes, "n0", "b", {"cpu": 2.0, "memory": 4e3}, 2, {"cpu": 1.0})
    assert got == imported.SHRUNK
    assert rooms._alive is None and rooms._top is None
    assert rooms.top(rooms.alive(nodes)) == {"cpu": 4.0, "memory": 4e3}


def test_report_refuses_what_is_not_a_dict_of_nodes() -> None:
    rooms, nodes = _index(imported, ["n0"])
    with pytest.raises(TypeError, match="nodes must be a dict"):
        rooms.report(list(nodes.values()), "n0", "a", {}, 1, {})
    # unknown and dead nodes: nothing written, the owner takes them whole
    assert rooms.report(nodes, "n9", "a", {}, 1, {}) == imported.ABSENT
    nodes["n0"].alive = False
    rooms.dirty.clear()
    assert rooms.report(nodes, "n0", "b", {"cpu": 1.0}, 9, {"cpu": 1.0}) == imported.ABSENT
    assert nodes["n0"].address == "a" and nodes["n0"].version == 0 and not rooms.dirty
