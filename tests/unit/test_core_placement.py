"""The placement kernel, both backends: invariants (hypothesis), hand-written policy cases, errors."""

from __future__ import annotations

import random

import numpy as np
import pytest
from core_strategies import seeded, size, sparse_node
from hypothesis import given, settings
from hypothesis import strategies as st

from handoffd._core import api
from handoffd._core import binpack as compiled
from handoffd._core import binpack_py as twin

BACKENDS = [pytest.param(compiled, id="cython"), pytest.param(twin, id="python")]
EPS = api.EPS


def test_backends_are_what_they_claim():
    assert compiled.BACKEND == "cython" and compiled.__file__.endswith((".so", ".pyd"))
    assert twin.BACKEND == "python" and twin.__file__.endswith(".py")
    assert compiled.POLICIES == twin.POLICIES == ("binpack", "spread", "first_fit")


def batch(rng: random.Random) -> tuple:
    """A small random batch: quantities on a 0.25 grid so sums are exact and ties are common."""
    n_tasks = size(rng, 0, 25)
    n_nodes = size(rng, 0, 6)
    n_dims = size(rng, 0, 4)
    demand = np.array(
        [[rng.randint(0, 16) / 4 for _ in range(n_dims)] for _ in range(n_tasks)]
    ).reshape(n_tasks, n_dims)
    capacity = np.array(
        [[2 * rng.randint(0, 16) / 4 for _ in range(n_dims)] for _ in range(n_nodes)]
    ).reshape(n_nodes, n_dims)
    # (a node's share used: empty and full as often as Hypothesis' floats drew them)
    used = np.array(
        [rng.choice((0.0, 1.0, rng.random(), rng.random())) for _ in range(n_nodes * n_dims)]
    )
    free = np.round(capacity * (1 - used.reshape(n_nodes, n_dims)) * 4) / 4
    order = list(range(n_tasks))
    rng.shuffle(order)
    order = np.array(order[: size(rng, 0, n_tasks)], dtype=np.int64)
    pinned = np.array([sparse_node(rng, n_nodes) for _ in range(n_tasks)], dtype=np.int64)
    preferred = np.array([sparse_node(rng, n_nodes) for _ in range(n_tasks)], dtype=np.int64)
    policy = rng.choice(twin.POLICIES)
    return demand, free, capacity, order, pinned, preferred, policy


def batches() -> st.SearchStrategy[tuple]:
    return seeded(batch)


def _key(free_row, inv):
    """binpack's key: free normalised by the largest capacity of each dim, summed."""
    return sum(f * i for f, i in zip(free_row, inv, strict=True))


def _free_fraction(free_row, cap_row):
    """spread's key: mean over the dims the node has of free / its own capacity (0: none)."""
    shares = [f / c for f, c in zip(free_row, cap_row, strict=True) if c > 0]
    return sum(shares) / len(shares) if shares else 0.0


def replay_and_check(demand, free0, capacity, order, pinned, preferred, policy, assignment, placed):
    """Independent check of the contract, step by step along the order."""
    free = free0.astype(float).copy()
    n_nodes = free.shape[0]
    top = capacity.max(axis=0) if n_nodes else np.zeros(demand.shape[1])
    inv = [1 / t if t > 0 else 0.0 for t in top]
    in_order = set(order.tolist())
    for t in range(demand.shape[0]):
        if t not in in_order:
            assert assignment[t] == -1
    count = 0
    for t in order.tolist():
        need = demand[t]
        fits = [bool(np.all(free[n] + EPS >= need)) for n in range(n_nodes)]
        chosen = int(assignment[t])
        if pinned[t] >= 0:
            assert chosen in (-1, pinned[t]), "a pinned task went elsewhere"
            assert (chosen == -1) == (not fits[pinned[t]])
        elif preferred[t] >= 0 and fits[preferred[t]]:
            assert chosen == preferred[t], "feasible preferred node ignored"
        elif not any(fits):
            assert chosen == -1
        else:
            assert chosen >= 0, "a task that fits some node was left unplaced"
            assert fits[chosen]
            feasible = [n for n in range(n_nodes) if fits[n]]
            if policy == "first_fit":
                assert chosen == feasible[0]
            elif policy == "binpack":
                keys = {n: _key(free[n], inv) for n in feasible}
                assert keys[chosen] <= min(keys.values()) + 1e-12
            else:
                keys = {n: _free_fraction(free[n], capacity[n]) for n in feasible}
                assert keys[chosen] >= max(keys.values()) - 1e-12
        if chosen >= 0:
            count += 1
            free[chosen] = np.maximum(free[chosen] - need, 0.0)
    assert placed == count
    # Never over-committed: what was placed on a node fits in what it had free.
    for n in range(n_nodes):
        on_node = demand[assignment == n].sum(axis=0)
        assert np.all(on_node <= free0[n] + EPS * max(1, int((assignment == n).sum())))
    return free


@pytest.mark.parametrize("core", BACKENDS)
@settings(max_examples=150, deadline=None)
@given(batch=batches())
def test_placement_contract(core, batch):
    demand, free, capacity, order, pinned, preferred, policy = batch
    free0 = free.copy()
    assignment, placed = core.place_batch(demand, free, capacity, order, pinned, preferred, policy)
    expected_free = replay_and_check(
        demand, free0, capacity, order, pinned, preferred, policy, assignment, placed
    )
    np.testing.assert_array_equal(free, expected_free)


@settings(max_examples=200, deadline=None)
@given(batch=batches())
def test_backends_identical(batch):
    demand, free, capacity, order, pinned, preferred, policy = batch
    free_c, free_p = free.copy(), free.copy()
    got_c = compiled.place_batch(demand, free_c, capacity, order, pinned, preferred, policy)
    got_p = twin.place_batch(demand, free_p, capacity, order, pinned, preferred, policy)
    np.testing.assert_array_equal(got_c[0], got_p[0])
    assert got_c[1] == got_p[1]
    np.testing.assert_array_equal(free_c, free_p)


@pytest.mark.parametrize("policy", twin.POLICIES)
def test_backends_identical_at_scale(policy):
    # Heterogeneous nodes and continuous quantities: exercises the live list and both prunings.
    rng = np.random.default_rng(7)
    demand = rng.uniform(0, 4, (3000, 4)) * (rng.random((3000, 4)) < 0.8)
    capacity = rng.uniform(10, 60, (60, 4)).round(1)
    free_c = capacity.copy()
    free_p = capacity.copy()
    order = rng.permutation(3000)
    pinned = np.where(rng.random(3000) < 0.05, rng.integers(0, 60, 3000), -1)
    preferred = np.where(rng.random(3000) < 0.2, rng.integers(0, 60, 3000), -1)
    got_c = compiled.place_batch(demand, free_c, capacity, order, pinned, preferred, policy)
    got_p = twin.place_batch(demand, free_p, capacity, order, pinned, preferred, policy)
    np.testing.assert_array_equal(got_c[0], got_p[0])
    assert got_c[1] == got_p[1]
    assert 0 < got_c[1] < 3000  # some placed, some not: the saturated path ran too
    np.testing.assert_array_equal(free_c, free_p)


def _place(core, demand, capacity, policy, free=None, pinned=None, preferred=None):
    demand = np.array(demand, dtype=float)
    capacity = np.array(capacity, dtype=float)
    free = capacity.copy() if free is None else np.array(free, dtype=float)
    n = demand.shape[0]
    pinned = np.full(n, -1) if pinned is None else np.array(pinned)
    preferred = np.full(n, -1) if preferred is None else np.array(preferred)
    assignment, placed = core.place_batch(
        demand, free, capacity, np.arange(n), pinned, preferred, policy
    )
    return assignment.tolist(), placed, free


@pytest.mark.parametrize("core", BACKENDS)
def test_best_fit_keeps_the_big_node_for_the_big_task(core):
    capacity = [[16, 64000], [4, 16000]]  # node 0 big, node 1 small
    tasks = [[1, 1000], [16, 64000]]
    assert _place(core, tasks, capacity, "binpack")[0] == [1, 0]
    # The other policies put the small task on the big node and strand the big one.
    assert _place(core, tasks, capacity, "spread")[0] == [0, -1]
    assert _place(core, tasks, capacity, "first_fit")[0] == [0, -1]


@pytest.mark.parametrize("core", BACKENDS)
def test_spread_balances(core):
    assignment, placed, free = _place(core, [[1, 1]] * 6, [[4, 4]] * 3, "spread")
    assert assignment == [0, 1, 2, 0, 1, 2] and placed == 6
    np.testing.assert_array_equal(free, [[2, 2]] * 3)


@pytest.mark.parametrize("core", BACKENDS)
def test_spread_balances_load_fraction_on_unequal_nodes(core):
    # Keys are each node's own free fraction, mean over cpu and memory: all start at 1.0.
    capacity = [[2, 2000], [2, 2000], [4, 8000]]
    assignment, placed, free = _place(core, [[1, 0]] * 3, capacity, "spread")
    # 0 (tie, lowest index) -> 0.75; 1 (tie with 2) -> 0.75; 2 (1.0 > 0.75): one task per node.
    assert assignment == [0, 1, 2] and placed == 3
    np.testing.assert_array_equal(free[:, 0], [1, 1, 3])
    assignment, placed, free = _place(core, [[1, 0]] * 6, capacity, "spread")
    # Then: 2 (0.875) -> 0.75; three-way tie at 0.75 -> 0 -> 0.5; 1 (0.75 vs 2's 0.75) -> 0.5.
    assert assignment == [0, 1, 2, 2, 0, 1] and placed == 6
    np.testing.assert_array_equal(free[:, 0], [0, 0, 2])
    # The old rule (free normalised by the largest capacity) sent all 3 to node 2; binpack still
    # uses it and fills one node first.
    assert _place(core, [[1, 0]] * 3, capacity, "binpack")[0] == [0, 0, 1]


@pytest.mark.parametrize("core", BACKENDS)
def test_best_fit_fills_one_node_then_the_next(core):
    assignment, _, _ = _place(core, [[1]] * 6, [[3]] * 3, "binpack")
    assert assignment == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("core", BACKENDS)
def test_first_fit_takes_the_first(core):
    capacity = [[2, 8], [100, 800], [100, 800]]
    assignment, _, _ = _place(core, [[1, 1], [1, 1], [1, 1], [50, 1]], capacity, "first_fit")
    assert assignment == [0, 0, 1, 1]


@pytest.mark.parametrize("core", BACKENDS)
@pytest.mark.parametrize("policy", twin.POLICIES)
def test_ties_go_to_the_lowest_index(core, policy):
    assert _place(core, [[1, 1]], [[4, 4]] * 5, policy)[0] == [0]


@pytest.mark.parametrize("core", BACKENDS)
@pytest.mark.parametrize("policy", twin.POLICIES)
def test_feasible_preference_wins_over_policy(core, policy):
    capacity = [[4], [8], [16]]
    assert _place(core, [[2]], capacity, policy, preferred=[1])[0] == [1]
    # An infeasible preference leaves the decision to the policy (spread: nodes 1 and 2 are both
    # fully free, free fraction 1.0, so the lower index wins).
    expected = {"binpack": 1, "spread": 1, "first_fit": 1}[policy]
    assert _place(core, [[6]], capacity, policy, free=[[4], [8], [16]], preferred=[0])[0] == [
        expected
    ]


@pytest.mark.parametrize("core", BACKENDS)
def test_pin_only_to_its_node(core):
    capacity = [[2], [100]]
    assignment, placed, free = _place(core, [[1], [4], [1]], capacity, "spread", pinned=[0, 0, -1])
    # Task 1 does not fit its pinned node; the big free node 1 must not take it.
    assert assignment == [0, -1, 1] and placed == 2
    np.testing.assert_array_equal(free, [[1], [99]])
    # A pin beats a preference.
    assert _place(core, [[1]], capacity, "binpack", pinned=[1], preferred=[0])[0] == [1]


@pytest.mark.parametrize("core", BACKENDS)
def test_dims_without_capacity_do_not_divide_by_zero(core):
    capacity = [[4, 0], [8, 0]]
    # spread averages over the dims a node has (cpu only): both are fully free, the lower index wins.
    assert _place(core, [[1, 0], [1, 1]], capacity, "spread")[0] == [0, -1]
    assert _place(core, [[1, 0], [1, 0]], capacity, "spread")[0] == [0, 1]
    # A node with no capacity at all has free fraction 0: it loses to any node with something free
    # and wins ties by index.
    no_cap = [[0, 0], [4, 4]]
    assert _place(core, [[0, 0]], no_cap, "spread", free=[[0, 0], [1, 1]])[0] == [1]
    assert _place(core, [[0, 0]], no_cap, "spread", free=[[0, 0], [0, 0]])[0] == [0]
    assert _place(core, [[1, 0]], capacity, "binpack")[0] == [0]
    assert _place(core, [[0, 0]], np.zeros((2, 2)), "binpack")[0] == [0]


@pytest.mark.parametrize("core", BACKENDS)
def test_tasks_outside_the_order_and_the_out_parameter(core):
    demand = np.ones((3, 1))
    free = np.full((2, 1), 5.0)
    out = np.full(3, 99, dtype=np.int64)
    got, placed = core.place_batch(
        demand, free, free.copy(), [2, 0], [-1] * 3, [-1] * 3, "first_fit", out
    )
    assert got is out and out.tolist() == [0, -1, 0] and placed == 2
    np.testing.assert_array_equal(free, [[3.0], [5.0]])


@pytest.mark.parametrize("core", BACKENDS)
def test_empty_inputs(core):
    got, placed = core.place_batch(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros((0, 2)), [], [], [])
    assert got.tolist() == [] and placed == 0
    got, placed = core.place_batch(
        np.ones((2, 2)), np.zeros((0, 2)), np.zeros((0, 2)), [0, 1], [-1, -1], [-1, -1]
    )
    assert got.tolist() == [-1, -1] and placed == 0


def _args(**change):
    args = {
        "demand": np.ones((2, 2)),
        "free": np.full((3, 2), 4.0),
        "capacity": np.full((3, 2), 4.0),
        "order": np.array([0, 1]),
        "pinned": np.array([-1, -1]),
        "preferred": np.array([-1, -1]),
        "policy": "binpack",
    }
    args.update(change)
    return args


@pytest.mark.parametrize("core", BACKENDS)
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"demand": np.ones((2, 3))}, "resource dims"),
        ({"demand": np.ones(2)}, "must be 2-D"),
        ({"capacity": np.ones((2, 2))}, "capacity has shape"),
        ({"demand": np.array([[1.0, -1.0], [0, 0]])}, "negative"),
        ({"demand": np.array([[1.0, np.nan], [0, 0]])}, "not a finite"),
        ({"capacity": np.array([[np.inf, 1]] * 3)}, "not a finite"),
        ({"free": np.array([[-1.0, 1]] * 3)}, "negative"),
        ({"free": [[4.0, 4.0]] * 3}, "float64 numpy array"),
        ({"free": np.full((3, 2), 4, dtype=np.int64)}, "float64 numpy array"),
        ({"free": np.full((2, 3), 4.0).T}, "C-contiguous"),
        ({"order": np.array([0, 2])}, "order\\[1\\] = 2 is out of range"),
        ({"order": np.array([-1])}, "out of range"),
        ({"order": np.array([1, 1])}, "more than once"),
        ({"order": np.array([0.0, 1.0])}, "integers"),
        ({"pinned": np.array([-1, 3])}, "pinned\\[1\\] = 3"),
        ({"pinned": np.array([-2, 0])}, "pinned\\[0\\] = -2"),
        ({"preferred": np.array([-1])}, "preferred has length 1"),
        ({"policy": "worst_fit"}, "binpack, spread, first_fit"),
    ],
)
def test_bad_input_is_a_clear_error(core, change, message):
    with pytest.raises(ValueError, match=message):
        core.place_batch(**_args(**change))


@pytest.mark.parametrize("core", BACKENDS)
def test_read_only_free_and_bad_out_are_errors(core):
    free = np.full((3, 2), 4.0)
    free.setflags(write=False)
    with pytest.raises(ValueError, match="writeable"):
        core.place_batch(**_args(free=free))
    with pytest.raises(ValueError, match="out must"):
        core.place_batch(**_args(), out=np.zeros(2, dtype=np.int32))
    with pytest.raises(ValueError, match="length 2"):
        core.place_batch(**_args(), out=np.zeros(5, dtype=np.int64))
