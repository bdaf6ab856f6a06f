"""``NodeState`` (a C class when compiled, its fields C fields the room index reads and writes
directly): in both builds, assigning ``alive``, ``capacity`` or ``free`` from Python marks the
node in the index watching it (``shape`` for liveness and capacity), assigning the same value
marks nothing, ``address`` and ``version`` are not watched, and nodes compare and print by value
as the dataclass they replace did.
"""

from __future__ import annotations

from types import ModuleType

import pytest
from room_builds import build


@pytest.fixture(params=["imported", "pure"])
def module(request: pytest.FixtureRequest) -> ModuleType:
    return build(request.param, "_room_index_state_pure")


def _watched(module: ModuleType) -> tuple[object, object, list[tuple[str, bool]]]:
    marks: list[tuple[str, bool]] = []
    nodes = module.Nodes(lambda name, shape=False: marks.append((name, shape)), lambda: None)
    n = module.NodeState("n0", "a:1", True, {"cpu": 2.0}, {"cpu": 1.0}, 3)
    nodes["n0"] = n
    marks.clear()  # (adding it marks it: that is the index's ``changed(name, True)``)
    return nodes, n, marks


def test_assignments_mark_the_watching_index(module: ModuleType) -> None:
    _, n, marks = _watched(module)
    n.free = {"cpu": 0.0}
    assert marks == [("n0", False)] and n.free == {"cpu": 0.0}
    n.capacity = {"cpu": 4.0}
    assert marks[-1] == ("n0", True) and n.capacity == {"cpu": 4.0}
    n.alive = False
    assert marks[-1] == ("n0", True) and n.alive is False
    marks.clear()
    n.free = {"cpu": 0.0}  # equal values: nothing changed
    n.capacity = {"cpu": 4.0}
    n.alive = False
    n.address = "b:2"  # (not watched: no room depends on them)
    n.version = 9
    assert marks == []
    assert (n.address, n.version) == ("b:2", 9)


def test_unwatched_node_takes_assignments(module: ModuleType) -> None:
    n = module.NodeState("n1", "a", True, {"cpu": 1.0}, {}, 0)
    n.free = {"cpu": 1.0}
    n.alive = False
    assert n.free == {"cpu": 1.0} and not n.alive


def test_value_equality_and_repr(module: ModuleType) -> None:
    a = module.NodeState("n0", "a", True, {"cpu": 1.0}, {"cpu": 1.0}, 1)
    b = module.NodeState("n0", "a", True, {"cpu": 1.0}, {"cpu": 1.0}, 1)
    assert a == b
    b.free = {"cpu": 0.5}
    assert a != b
    assert a != "n0"
    assert repr(a) == (
        "NodeState(name='n0', address='a', alive=True, capacity={'cpu': 1.0}, "
        "free={'cpu': 1.0}, version=1)"
    )
    with pytest.raises(TypeError):
        hash(a)
