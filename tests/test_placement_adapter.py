"""The placement adapter: dicts <-> arrays, backend choice, the scheduler-facing contract."""

from __future__ import annotations

import copy
import logging
import sys

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
    with pytest.raises(ValueError, match="request 1 demand: cpu = -1"):
        placement.place([TaskRequest({"cpu": 1}), TaskRequest({"cpu": -1})], nodes)
    with pytest.raises(ValueError, match="request 0 demand: cpu = nan"):
        placement.place([TaskRequest({"cpu": float("nan")})], nodes)
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


def test_task_sizes_normalise_by_the_largest_capacity():
    nodes = [node("a", cpu=4, memory=1000), node("b", cpu=8, memory=500)]
    assert placement.task_sizes([{"cpu": 2, "memory": 500}, {"gpu": 1}, {}], nodes) == [
        0.75,
        0.0,
        0.0,
    ]


def test_fits_some_capacity_and_largest_node():
    nodes = [node("a", free={}, cpu=4, memory=1000), node("b", free={}, cpu=16, gpu=1)]
    assert placement.fits_some_capacity({"cpu": 16}, nodes)  # busy now, but fits when idle
    assert not placement.fits_some_capacity({"cpu": 4, "gpu": 2}, nodes)
    assert not placement.fits_some_capacity({"cpu": 1}, [])
    assert placement.largest_node({"cpu": 32}, nodes).name == "b"
    assert placement.largest_node({"memory": 4000}, nodes).name == "a"
    assert placement.largest_node({}, nodes).name == "b"
    assert placement.largest_node({"cpu": 1}, []) is None


def test_backend_choice(monkeypatch):
    assert placement.backend_name() == "cython"
    assert placement.backend_name("python") == "python"
    monkeypatch.setenv("HANDOFFD_CORE", "python")
    assert placement.backend_name() == "python"
    assert placement.backend_name("cython") == "cython"  # the argument wins over the environment
    monkeypatch.setenv("HANDOFFD_CORE", "fortran")
    with pytest.raises(ValueError, match="HANDOFFD_CORE='fortran'"):
        placement.backend_name()
    with pytest.raises(ValueError, match="backend='c'"):
        placement.backend_name("c")


def test_missing_compiled_core(monkeypatch, caplog):
    monkeypatch.setitem(
        sys.modules, "handoffd._core.binpack", None
    )  # import now raises ImportError
    monkeypatch.setattr(placement, "_warned_fallback", False)
    with pytest.raises(placement.CoreUnavailable, match="HANDOFFD_CORE=python"):
        placement.backend_name("cython")
    monkeypatch.setenv("HANDOFFD_CORE", "cython")
    with pytest.raises(placement.CoreUnavailable):
        placement.place([TaskRequest({"cpu": 1})], [node("a", cpu=1)])
    monkeypatch.delenv("HANDOFFD_CORE")
    with caplog.at_level(logging.WARNING, logger="handoffd.scheduler"):
        assert placement.backend_name() == "python"
        assert placement.place([TaskRequest({"cpu": 1})], [node("a", cpu=1)]) == ["a"]
    assert sum("pure-Python twin" in r.getMessage() for r in caplog.records) == 1


def test_place_small_matches_the_core_on_random_batches() -> None:
    import random as _random

    rng = _random.Random(7)
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
            nodes.append(placement.NodeView(f"n{i}", cap, free))
        requests = [
            placement.TaskRequest(
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
            assert placement.place_small(requests, nodes, policy) == placement.place(
                requests, nodes, policy
            )


def test_order_small_graphs_match_the_core() -> None:
    """``order`` with no backend named takes a plain-Python path for small graphs (no numpy): the
    same order and ranks as the core, and the core's errors for bad input."""
    import random as _random

    rng = _random.Random(11)
    for _ in range(500):
        n = rng.randint(0, placement.SMALL_BATCH)
        # a DAG: consumers only later in a random permutation
        perm = list(range(n))
        rng.shuffle(perm)
        consumers = [
            [perm[j] for j in range(perm.index(t) + 1, n) if rng.random() < 0.3] for t in range(n)
        ]
        priority = [rng.choice([0, 0, 1, -2]) for _ in range(n)]
        estimate = [rng.choice([1.0, 0.5, 2.0]) for _ in range(n)]
        size = [rng.choice([0.0, 1.0, 0.25]) for _ in range(n)]
        small = placement.order(priority, consumers, estimate, size)
        assert small == placement.order(priority, consumers, estimate, size, "python")
    assert placement.order([0, 0, 1], [[1], [], []], [1.0, 2.0, 1.0], [0.0, 0.0, 0.0]) == (
        [2, 0, 1],
        [3.0, 2.0, 1.0],
    )
    with pytest.raises(ValidationError, match="cycle"):
        placement.order([0, 0], [[1], [0]], [1.0, 1.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="out of range"):
        placement.order([0], [[5]], [1.0], [0.0])
    with pytest.raises(ValueError, match="finite"):
        placement.order([0], [[]], [float("nan")], [0.0])


def test_order_of_larger_graphs_without_numpy_matches_the_core() -> None:
    """Up to PY_ORDER_MAX tasks, ``order`` stays in plain Python while numpy is not loaded (a
    daemon's first large submission no longer imports it); the answer is the core's."""
    import random as _random
    import subprocess

    rng = _random.Random(5)
    for n, fan in ((2_000, 0), (1_500, 3)):
        width = 100
        consumers: list[list[int]] = [[] for _ in range(n)]
        for t in range(width if fan else n, n):
            for d in rng.sample(range(width), fan):
                consumers[(t // width - 1) * width + d].append(t)
        priority = [rng.choice([0, 0, 0, 1]) for _ in range(n)]
        estimate = [1.0] * n
        size = [rng.choice([1.0, 0.5]) for _ in range(n)]
        plain = placement._order_small(priority, consumers, estimate, size)
        assert plain == placement.order(priority, consumers, estimate, size)  # numpy is loaded
    code = (
        "import sys; from handoffd.scheduler import placement; "
        "n = 10_000; placement.order([0] * n, [[] for _ in range(n)], [1.0] * n, [1.0] * n); "
        "print('numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_daemon_imports_without_numpy() -> None:
    """numpy loads on the first large placement, not at daemon start-up."""
    import subprocess

    code = (
        "import sys, handoffd.node, handoffd.cli.daemon; "
        "from handoffd.scheduler import placement; "
        "placement.order([0, 0], [[1], []], [1.0, 1.0], [0.0, 0.0]); "
        "print('numpy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
