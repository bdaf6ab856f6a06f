"""The placement adapter: node names <-> indices over the core's entry point, both backends."""

from __future__ import annotations

import copy
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handoffd.errors import ValidationError
from handoffd.scheduler import placement
from handoffd.scheduler.placement import NodeView, TaskRequest

BACKENDS = ["cython", "python"]


def node(name, free=None, **capacity):
    return NodeView(name, dict(capacity), dict(capacity if free is None else free))


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("HANDOFFD_CORE", raising=False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_place_in_request_order_consuming_free(backend):
    nodes = [node("a", cpu=4, memory=1000), node("b", cpu=2, memory=8000)]
    requests = [
        TaskRequest({"cpu": 3}),
        TaskRequest({"cpu": 3}),  # a has 1 left, b only 2: nowhere
        TaskRequest({"cpu": 1, "memory": 4000}),
        TaskRequest({"cpu": 1}),
    ]
    before = copy.deepcopy(nodes)
    assert placement.place(requests, nodes, backend=backend) == ["a", None, "b", "a"]
    assert nodes == before  # inputs untouched


@pytest.mark.parametrize("backend", BACKENDS)
def test_custom_kinds_and_missing_kinds(backend):
    nodes = [node("plain", cpu=64), node("fpga", cpu=8, fpga=1)]
    requests = [
        TaskRequest({"cpu": 1, "fpga": 1}),
        TaskRequest({"fpga": 1}),
        TaskRequest({"tpu": 1}),
    ]
    assert placement.place(requests, nodes, backend=backend) == ["fpga", None, None]


@pytest.mark.parametrize("backend", BACKENDS)
def test_free_is_what_is_used_not_capacity(backend):
    nodes = [node("busy", free={"cpu": 0.5}, cpu=8), node("idle", cpu=2)]
    assert placement.place([TaskRequest({"cpu": 1})], nodes, backend=backend) == ["idle"]
    # A ledger briefly below zero is a full node, not an error.
    nodes = [node("over", free={"cpu": -1}, cpu=8), node("ok", cpu=2)]
    assert placement.place([TaskRequest({"cpu": 1})], nodes, backend=backend) == ["ok"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_policies(backend):
    nodes = [node("big", cpu=16), node("small", cpu=4)]
    requests = [TaskRequest({"cpu": 1}), TaskRequest({"cpu": 16})]
    assert placement.place(requests, nodes, backend=backend) == ["small", "big"]
    assert placement.place(requests, nodes, "spread", backend) == ["big", None]
    assert placement.place(requests, nodes, "first_fit", backend) == ["big", None]


@pytest.mark.parametrize("backend", BACKENDS)
def test_pins_and_preferences(backend):
    nodes = [node("a", cpu=2), node("b", cpu=8)]
    requests = [
        TaskRequest({"cpu": 1}, pin="a"),
        TaskRequest({"cpu": 4}, pin="a"),  # does not fit a; must not go to b
        TaskRequest({"cpu": 1}, pin="gone"),  # unknown node: None, not "anywhere"
        TaskRequest({"cpu": 1}, prefer="b"),
        TaskRequest({"cpu": 1}, prefer="gone"),  # unknown preference: ignored
    ]
    assert placement.place(requests, nodes, backend=backend) == ["a", None, None, "b", "a"]


def test_place_errors():
    nodes = [node("a", cpu=2)]
    with pytest.raises(ValueError, match="binpack, spread, first_fit"):
        placement.place([], nodes, policy="best")
    with pytest.raises(ValueError, match=r"demand\[1\]: cpu = -1 is negative"):
        placement.place([TaskRequest({"cpu": 1}), TaskRequest({"cpu": -1})], nodes)
    with pytest.raises(ValueError, match=r"demand\[0\]: cpu = nan is not a finite number"):
        placement.place([TaskRequest({"cpu": float("nan")})], nodes)
    with pytest.raises(ValueError, match=r"capacity\[0\]: cpu = 'x' is not a number"):
        placement.place([], [NodeView("a", {"cpu": "x"}, {})])  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="appears twice"):
        placement.place([], [node("a", cpu=1), node("a", cpu=2)])
    assert placement.place([TaskRequest({"cpu": 1})], []) == [None]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.dictionaries(st.sampled_from(["cpu", "memory", "gpu", "x"]), st.integers(0, 5)),
        max_size=15,
    ),
    st.lists(
        st.dictionaries(st.sampled_from(["cpu", "memory", "gpu", "y"]), st.integers(0, 9)),
        max_size=5,
    ),
    st.sampled_from(placement.POLICIES),
)
def test_backends_agree_through_the_adapter(demands, capacities, policy):
    nodes = [
        NodeView(f"n{i}", {k: float(v) for k, v in c.items()}, {k: float(v) for k, v in c.items()})
        for i, c in enumerate(capacities)
    ]
    requests = [TaskRequest({k: float(v) for k, v in d.items()}) for d in demands]
    got = placement.place(requests, nodes, policy, "cython")
    assert got == placement.place(requests, nodes, policy, "python")
    # Never over-commits any kind on any node.
    for n in nodes:
        for kind, cap in n.capacity.items():
            used = sum(
                r.demand.get(kind, 0.0)
                for r, where in zip(requests, got, strict=True)
                if where == n.name
            )
            assert used <= cap
    for r, where in zip(requests, got, strict=True):
        if where is not None:
            assert all(
                v == 0 or v <= placement_node(nodes, where).capacity.get(k, 0)
                for k, v in r.demand.items()
            )


def placement_node(nodes, name):
    return next(n for n in nodes if n.name == name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_order(backend):
    order, rank = placement.order(
        [0, 0, 1], [[1], [], []], [1.0, 2.0, 1.0], [0.0, 0.0, 0.0], backend
    )
    assert order == [2, 0, 1] and rank == [3.0, 2.0, 1.0]
    with pytest.raises(ValidationError, match="cycle"):
        placement.order([0, 0], [[1], [0]], [1.0, 1.0], [0.0, 0.0], backend)
    with pytest.raises(ValueError, match="size has 1 entries"):
        placement.order([0, 0], [[], []], [1.0, 1.0], [0.0], backend)
    with pytest.raises(ValueError, match="64 bits"):
        placement.order([2**70], [[]], [1.0], [0.0], backend)
    assert placement.order([], [], [], [], backend) == ([], [])


def test_fits_some_capacity_and_largest_node():
    nodes = [node("a", free={}, cpu=4, memory=1000), node("b", free={}, cpu=16, gpu=1)]
    assert placement.fits_some_capacity({"cpu": 16}, nodes)  # busy now, but fits when idle
    assert not placement.fits_some_capacity({"cpu": 4, "gpu": 2}, nodes)
    assert not placement.fits_some_capacity({"cpu": 1}, [])
    assert placement.largest_node({"cpu": 32}, nodes).name == "b"
    assert placement.largest_node({"memory": 4000}, nodes).name == "a"
    assert placement.largest_node({}, nodes).name == "b"
    assert placement.largest_node({"cpu": 1}, []) is None


def test_backends_agree_on_random_batches_with_pins_and_preferences() -> None:
    """Pins, preferences (known or not), kinds some nodes lack and free below zero (a ledger
    briefly over-claimed): both backends give the same answer through the adapter."""
    rng = random.Random(7)
    kinds = ["cpu", "memory", "gpu", "x"]
    for _ in range(1500):
        nodes = []
        for i in range(rng.randint(1, 5)):
            cap = {
                k: float(rng.choice([0, 1, 2, 4, 8])) for k in rng.sample(kinds, rng.randint(1, 4))
            }
            free = {
                k: v * rng.choice([0, 0.5, 1]) - rng.choice([0, 0, 0.5]) for k, v in cap.items()
            }
            nodes.append(NodeView(f"n{i}", cap, free))
        requests = [
            TaskRequest(
                {
                    k: float(rng.choice([0, 0.5, 1, 2]))
                    for k in rng.sample(kinds, rng.randint(0, 3))
                },
                rng.choice([None, None, None, "n0", "nX"]),
                rng.choice([None, None, "n1", "n0"]),
            )
            for _ in range(rng.randint(0, 10))
        ]
        for policy in placement.POLICIES:
            got = placement.place(requests, nodes, policy, "cython")
            assert got == placement.place(requests, nodes, policy, "python")
            for r, where in zip(requests, got, strict=True):
                assert where is None or r.pin in (None, where)


def _dag(rng: random.Random, n: int, p: float) -> list[list[int]]:
    perm = list(range(n))
    rng.shuffle(perm)
    where = {t: i for i, t in enumerate(perm)}
    return [[perm[j] for j in range(where[t] + 1, n) if rng.random() < p] for t in range(n)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_order_errors(backend):
    with pytest.raises(ValueError, match=r"consumers\[0\]\[0\] = 5 is out of range"):
        placement.order([0], [[5]], [1.0], [0.0], backend)
    with pytest.raises(ValueError, match=r"estimate\[0\] = nan is not a finite number"):
        placement.order([0], [[]], [float("nan")], [0.0], backend)
    with pytest.raises(ValueError, match=r"priority\[0\] = 0.5 is not an integer"):
        placement.order([0.5], [[]], [1.0], [0.0], backend)  # type: ignore[list-item]


def test_order_backends_agree_on_random_graphs() -> None:
    rng = random.Random(11)
    for _ in range(300):
        n = rng.randint(0, 40)
        consumers = _dag(rng, n, 0.3 * rng.random())
        priority = [rng.choice([0, 0, 1, -2]) for _ in range(n)]
        estimate = [rng.choice([1.0, 0.5, 2.0]) for _ in range(n)]
        size = [rng.choice([0.0, 1.0, 0.25]) for _ in range(n)]
        assert placement.order(priority, consumers, estimate, size, "cython") == placement.order(
            priority, consumers, estimate, size, "python"
        )
