"""The scheduler-facing kernels behind ``handoffd._core.api``: the compiled ``sched`` and its twin
``sched_py`` give identical answers (and identical errors) on random input, ties and the tolerance
edge included; the entry point's backend choice and its decision counters."""

from __future__ import annotations

import logging
import os
import random
import sys

import pytest
from core_strategies import dags, seeded, size, sparse_node
from core_strategies import resource_map as some_resources
from hypothesis import given, settings
from hypothesis import strategies as st

from handoffd._core import api
from handoffd._core import sched as compiled
from handoffd._core import sched_py as twin

EPS = api.EPS
KINDS = ["cpu", "memory", "gpu", "x", "y"]

# Quantities on a coarse grid (ties are common), some nudged across the tolerance edge: a demand
# within EPS of what is free fits, one beyond it does not.
_NUDGES = [0.0, 0.0, 0.0, EPS / 2, -EPS / 2, EPS, -EPS, 1.5 * EPS, -1.5 * EPS, 2 * EPS, 1e-12]


def test_both_backends_are_what_they_claim():
    assert compiled.BACKEND == "cython" and compiled.__file__.endswith((".so", ".pyd"))
    assert twin.BACKEND == "python" and twin.__file__.endswith(".py")
    assert api.kernels("cython") is compiled and api.kernels("python") is twin
    chosen = "python" if os.environ.get("HANDOFFD_CORE") == "python" else "cython"
    assert api.BACKEND == chosen
    assert api.place is api.kernels(chosen).place  # bound once: no wrapper frame per call
    assert api.fits is api.kernels(chosen).fits


def _quantity(rng: random.Random) -> float:
    return max(rng.randint(0, 16) / 4 + rng.choice(_NUDGES), 0.0)


def _resources(rng: random.Random) -> dict[str, float]:
    return some_resources(rng, KINDS, _quantity, 4)


resource_map = seeded(_resources)


def batch(rng: random.Random) -> tuple:
    n_nodes = size(rng, 0, 6)
    capacities = [_resources(rng) for _ in range(n_nodes)]
    # Free is the capacity minus a little or a lot, sometimes below zero (a raced ledger).
    frees = [
        {k: v * rng.choice([0.0, 0.5, 1.0]) + rng.choice(_NUDGES) for k, v in cap.items()}
        for cap in capacities
    ]
    n_tasks = size(rng, 0, 20)
    demands = [_resources(rng) for _ in range(n_tasks)]
    pins = [sparse_node(rng, n_nodes) for _ in range(n_tasks)]
    prefs = [sparse_node(rng, n_nodes) for _ in range(n_tasks)]
    policy = rng.choice(api.POLICIES)
    return demands, frees, capacities, pins, prefs, policy


def batches() -> st.SearchStrategy[tuple]:
    return seeded(batch)


@settings(max_examples=400, deadline=None)
@given(batch=batches())
def test_place_is_identical(batch):
    demands, frees, capacities, pins, prefs, policy = batch
    got = compiled.place(demands, frees, capacities, pins, prefs, policy)
    assert got == twin.place(demands, frees, capacities, pins, prefs, policy)
    # The contract, checked independently: pins are obeyed and nothing is over-committed beyond
    # the tolerance (each placed task may use up to EPS more than was free, per kind).
    used: dict[int, dict[str, float]] = {}
    for t, n in enumerate(got):
        assert n == -1 or pins[t] in (-1, n)
        if n >= 0:
            for k, q in demands[t].items():
                used.setdefault(n, {})[k] = used.get(n, {}).get(k, 0.0) + q
    for n, load in used.items():
        count = sum(1 for g in got if g == n)
        for k, q in load.items():
            assert q <= max(frees[n].get(k, 0.0), 0.0) + count * EPS + 1e-12


@pytest.mark.parametrize(("n_tasks", "n_nodes"), [(1, 1), (1, 2), (8, 8), (9, 8), (40, 6)])
def test_place_is_identical_with_the_gil_kept_or_let_go(n_tasks, n_nodes):
    # (the compiled ``place`` keeps the GIL for a batch of at most 64 task x node pairs and lets
    # it go above: both sides of that line answer as the twin does)
    capacities = [{"cpu": 4.0 + i % 3, "memory": 1000.0 * (1 + i % 2)} for i in range(n_nodes)]
    frees = [
        {k: q * (0.5 if i % 2 else 1.0) for k, q in c.items()} for i, c in enumerate(capacities)
    ]
    demands = [{"cpu": 1.0 + t % 2, "memory": 100.0 * (t % 5)} for t in range(n_tasks)]
    pins = [t % n_nodes if t % 7 == 3 else -1 for t in range(n_tasks)]
    prefs = [(t + 1) % n_nodes if t % 5 == 2 else -1 for t in range(n_tasks)]
    for policy in api.POLICIES:
        got = compiled.place(demands, frees, capacities, pins, prefs, policy)
        assert got == twin.place(demands, frees, capacities, pins, prefs, policy)
        assert any(n >= 0 for n in got)


@settings(max_examples=300, deadline=None)
@given(dag=dags(min_size=-0.5))  # negative sizes: both kernels take them alike
def test_order_is_identical(dag):
    priority, consumers, estimate, size = dag
    order, rank = compiled.order(priority, consumers, estimate, size)
    assert (order, rank) == twin.order(priority, consumers, estimate, size)
    assert sorted(order) == list(range(len(consumers)))
    for t in range(len(consumers)):
        assert rank[t] == estimate[t] + max((rank[c] for c in consumers[t]), default=0.0)
    keys = [(-priority[t], -rank[t], -size[t], t) for t in order]
    assert keys == sorted(keys)


@settings(max_examples=500, deadline=None)
@given(demand=resource_map, free=resource_map)
def test_fits_is_identical(demand, free):
    expected = all(q <= 0 or free.get(k, 0.0) + EPS >= q for k, q in demand.items())
    assert compiled.fits(demand, free) == twin.fits(demand, free) == expected


@settings(max_examples=300, deadline=None)
@given(
    capacity=resource_map,
    load=resource_map,
    window=st.sampled_from([1, 2, 8, 32, 2.5]),
    low_water=st.sampled_from([0.5, 0.25, 1.0]),
)
def test_below_low_water_is_identical(capacity, load, window, low_water):
    got = compiled.below_low_water(capacity, load, window, low_water)
    assert got == twin.below_low_water(capacity, load, window, low_water)


def window_pass(rng: random.Random) -> tuple:
    n_nodes = size(rng, 0, 5)
    capacities = [_resources(rng) for _ in range(n_nodes)]
    loads = [_resources(rng) for _ in range(n_nodes)]
    window = rng.choice([1, 2, 4, 32])
    low_water = rng.choice([None, None, 0.5])
    seconds = [-1.0, 0.0, 0.0001, 0.001, 0.003, 1.0]
    budgets = (
        None
        if rng.random() < 0.5
        else [rng.choice([-1.0, 0.0, 0.002, 0.005, 0.01]) for _ in range(n_nodes)]
    )
    picks = [
        (_resources(rng), sparse_node(rng, n_nodes), rng.choice(api.POLICIES), rng.choice(seconds))
        for _ in range(size(rng, 0, 30))
    ]
    return capacities, loads, window, low_water, budgets, picks


def window_passes() -> st.SearchStrategy[tuple]:
    return seeded(window_pass)


@settings(max_examples=400, deadline=None)
@given(case=window_passes())
def test_window_fill_is_identical(case):
    capacities, loads, window, low_water, budgets, picks = case
    a = compiled.window_fill(capacities, loads, window, low_water, budgets)
    b = twin.window_fill(capacities, loads, window, low_water, budgets)
    assert a.left == b.left
    spent = [0.0] * len(capacities)
    for need, pin, policy, seconds in picks:
        got = a.pick(need, pin, policy, seconds)
        assert got == b.pick(need, pin, policy, seconds)
        assert a.left == b.left
        if got >= 0:
            assert pin in (-1, got)
            assert compiled.fits(need, capacities[got])  # never more than the node can ever hold
            if budgets is not None:
                # only known durations, only on a node whose budget was not spent yet
                assert seconds >= 0.0 and budgets[got] - spent[got] > 0.0
                caps = capacities[got]
                share = max(
                    (q / caps[k] for k, q in need.items() if q > 0 and caps.get(k, 0) > 0),
                    default=0.0,
                )
                spent[got] += seconds * share


def test_window_budgets_bound_queued_work_by_time():
    for core in (compiled, twin):
        # two 2-cpu nodes: node 0 has 1 ms of work left to give, node 1 none
        fill = core.window_fill([{"cpu": 2.0}] * 2, [{}, {}], 32, None, [0.001, 0.0])
        assert fill.left == 1
        assert fill.pick({"cpu": 1.0}, -1, "binpack", -1.0) == -1  # unknown: never queued
        assert fill.pick({"cpu": 1.0}, -1, "binpack", 0.001) == 0  # spends 0.5 ms of node 0
        assert fill.pick({"cpu": 1.0}, -1, "binpack", 0.001) == 0  # spends the rest
        assert fill.left == 0
        assert fill.pick({"cpu": 1.0}, -1, "binpack", 0.0001) == -1
        # no budgets: the depth alone bounds (the fallback), unknown durations included
        fill = core.window_fill([{"cpu": 2.0}], [{}], 2)
        assert fill.pick({"cpu": 1.0}, -1, "binpack", -1.0) == 0


def test_a_cost_within_the_tolerance_fits_everywhere_and_one_beyond_it_nowhere():
    within, beyond = {"cpu": 1.0 - EPS / 2}, {"cpu": 1.0 - 2 * EPS}
    for core in (compiled, twin):
        assert core.fits({"cpu": 1.0}, within) and not core.fits({"cpu": 1.0}, beyond)
        assert core.place(
            [{"cpu": 1.0}] * 2, [within, beyond], [{"cpu": 1.0}] * 2, [-1] * 2, [-1] * 2
        ) == [0, -1]
        assert core.place([{"cpu": 1.0}], [beyond], [{"cpu": 1.0}], [-1], [-1]) == [-1]
        # window room: 1 x 2 - (1 + EPS/2) left, a task of 1 still goes; with 2 EPS it does not
        fill = core.window_fill(
            [{"cpu": 1.0}] * 2, [{"cpu": 1.0 + EPS / 2}, {"cpu": 1.0 + 2 * EPS}], 2
        )
        assert fill.pick({"cpu": 1.0}, 1, "binpack") == -1
        assert fill.pick({"cpu": 1.0}, -1, "binpack") == 0
        assert fill.left == 1  # node 0's room is within EPS of empty now: it takes no more


def test_window_pick_scores_by_policy():
    capacities = [{"cpu": 4.0}, {"cpu": 16.0}, {"cpu": 4.0}]
    loads = [{"cpu": 8.0}, {"cpu": 8.0}, {}]
    for core in (compiled, twin):
        # room: 0 -> 8 of 16, 1 -> 56 of 64, 2 -> 16 of 16
        assert core.window_fill(capacities, loads, 4).pick({"cpu": 1}, -1, "binpack") == 0
        assert core.window_fill(capacities, loads, 4).pick({"cpu": 1}, -1, "spread") == 2
        assert core.window_fill(capacities, loads, 4).pick({"cpu": 1}, -1, "first_fit") == 0
        assert core.window_fill(capacities, loads, 4).pick({"cpu": 5}, -1, "binpack") == 1
        assert core.window_fill(capacities, loads, 4).pick({"cpu": 1}, 1, "binpack") == 1
        assert core.window_fill(capacities, loads, 4).pick({"gpu": 1}, -1, "binpack") == -1
        # low water 0.5: nodes 0 (8 of 16) and 2 (0) are due, node 1 (8 of 64) too
        assert core.window_fill(capacities, loads, 4, 0.5).left == 3
        assert core.window_fill(capacities, [{"cpu": 9.0}, {}, {}], 4, 0.5).left == 2


# Bad input: both raise ValueError, with the same words.
_BAD_PLACE = [
    (([{"cpu": -1}], [{}], [{}], [-1], [-1]), r"demand\[0\]: cpu = -1 is negative"),
    (([{"cpu": float("nan")}], [{}], [{}], [-1], [-1]), "is not a finite number"),
    (([{"cpu": True}], [{}], [{}], [-1], [-1]), "is not a number"),
    (([{}], [{"cpu": "1"}], [{}], [-1], [-1]), r"free\[0\]: cpu = '1' is not a number"),
    (([{}], [{}], [{"cpu": float("inf")}], [-1], [-1]), r"capacity\[0\]: cpu = inf"),
    (([{}], [{}], [{}], [1], [-1]), r"pins\[0\] = 1 is out of range"),
    (([{}], [{}], [{}], [-1], [-2]), r"prefs\[0\] = -2 is out of range"),
    (([{}], [{}], [{}], [-1], [0.0]), r"prefs\[0\] = 0.0 is not an integer"),
    (([{}], [{}], [], [-1], [-1]), "capacities has 0 entries"),
    (([{}], [], [], [], []), "pins and prefs need one entry per demand"),
]


@pytest.mark.parametrize(("args", "message"), _BAD_PLACE)
def test_place_errors_are_identical(args, message):
    errors = []
    for core in (compiled, twin):
        with pytest.raises(ValueError, match=message) as info:
            core.place(*args)
        errors.append(str(info.value))
    assert errors[0] == errors[1]
    for core in (compiled, twin):
        with pytest.raises(ValueError, match="valid policies are binpack, spread, first_fit"):
            core.place([], [], [], [], [], "worst_fit")


_BAD_ORDER = [
    (([0], [[]], [1.0], [0.0, 1.0]), "size has 2 entries but consumers has 1"),
    (([2**63], [[]], [1.0], [0.0]), "does not fit in 64 bits"),
    (([False], [[]], [1.0], [0.0]), r"priority\[0\] = False is not an integer"),
    (([0], [[]], [-1.0], [0.0]), r"estimate\[0\] = -1.0 is negative"),
    (([0], [[]], [1.0], [float("inf")]), r"size\[0\] = inf is not a finite number"),
    (([0, 0], [[1], [2]], [1.0, 1.0], [0.0, 0.0]), r"consumers\[1\]\[0\] = 2 is out of range"),
    (([0, 0], [[1], [0]], [1.0, 1.0], [0.0, 0.0]), "cycle: 2 task"),
]


@pytest.mark.parametrize(("args", "message"), _BAD_ORDER)
def test_order_errors_are_identical(args, message):
    errors = []
    for core in (compiled, twin):
        with pytest.raises(ValueError, match=message) as info:
            core.order(*args)
        errors.append((type(info.value), str(info.value)))
    assert errors[0] == errors[1]


def test_window_errors_are_identical():
    for core in (compiled, twin):
        with pytest.raises(ValueError, match="window = 0.0: it must be > 0"):
            core.window_fill([{}], [{}], 0)
        with pytest.raises(ValueError, match="loads has 0 entries"):
            core.window_fill([{}], [], 2)
        with pytest.raises(ValueError, match="budgets has 2 entries"):
            core.window_fill([{}], [{}], 2, None, [0.0, 0.0])
        with pytest.raises(ValueError, match=r"budgets\[0\] = 'x' is not a number"):
            core.window_fill([{}], [{}], 2, None, ["x"])
        with pytest.raises(ValueError, match="pin = 3"):
            core.window_fill([{"cpu": 1}], [{}], 2).pick({}, 3, "binpack")
        with pytest.raises(ValueError, match=r"need\[0\]: cpu = 'a' is not a number"):
            core.window_fill([{"cpu": 1}], [{}], 2).pick({"cpu": "a"}, -1, "binpack")


# -- the entry point -----------------------------------------------------------------------------


def test_select_follows_the_environment(monkeypatch, caplog):
    assert api.select({}) is compiled
    assert api.select({"HANDOFFD_CORE": "python"}) is twin
    assert api.select({"HANDOFFD_CORE": "cython", "HANDOFFD_REQUIRE_CYTHON": "1"}) is compiled
    with pytest.raises(ValueError, match="HANDOFFD_CORE='fortran'"):
        api.select({"HANDOFFD_CORE": "fortran"})
    with pytest.raises(ValueError, match="backend='c'"):
        api.kernels("c")
    # The compiled module missing (as after a build without Cython): its import now fails.
    monkeypatch.setitem(sys.modules, "handoffd._core.sched", None)
    with caplog.at_level(logging.WARNING, logger="handoffd.core"):
        assert api.select({}) is twin
    assert sum("pure-Python twin" in r.getMessage() for r in caplog.records) == 1
    assert api.select({"HANDOFFD_CORE": "python", "HANDOFFD_REQUIRE_CYTHON": "1"}) is twin
    with pytest.raises(api.CoreUnavailable, match="HANDOFFD_REQUIRE_CYTHON=1"):
        api.select({"HANDOFFD_REQUIRE_CYTHON": "1"})
    with pytest.raises(api.CoreUnavailable, match="HANDOFFD_CORE=cython.*HANDOFFD_CORE=python"):
        api.select({"HANDOFFD_CORE": "cython"})
    with pytest.raises(api.CoreUnavailable, match="backend='cython'"):
        api.kernels("cython")


def test_decisions_are_counted_per_kernel_and_backend():
    before = api.decisions()
    compiled.place([{"cpu": 1}] * 3, [{"cpu": 2}], [{"cpu": 2}], [-1] * 3, [-1] * 3)
    twin.order([0, 0], [[1], []], [1.0, 1.0], [0.0, 0.0])
    fill = compiled.window_fill([{"cpu": 1}], [{}], 2)
    fill.pick({"cpu": 1}, -1, "binpack")
    twin.below_low_water({"cpu": 1}, {}, 2, 0.5)
    compiled.fits({"cpu": 1}, {})
    after = api.decisions()

    def grew(kernel: str, backend: str) -> int:
        return after[(kernel, backend)] - before.get((kernel, backend), 0)

    assert grew("place", "cython") == 3  # a decision per task
    assert grew("order", "python") == 2
    assert grew("window", "cython") == 1 and grew("window", "python") == 1
    assert grew("fits", "cython") == 1
    assert grew("place", "python") == grew("order", "cython") == grew("fits", "python") == 0
    assert {k for k, _ in after} == set(api.KERNELS)


def test_closest_names_the_node_nearest_to_holding_a_demand():
    caps = [{"cpu": 4, "memory": 1000}, {"cpu": 16, "gpu": 1}]
    assert api.closest({"cpu": 32}, caps) == 1
    assert api.closest({"memory": 4000}, caps) == 0
    assert api.closest({}, caps) == 1
    assert api.closest({"cpu": 1}, []) == -1


# More kinds than the compiled kind walk remembers by identity (8), named by equal strings that are
# distinct objects (a decoded report's keys), in dicts and in other mappings: the kinds found and
# their order, so every placement, are the twin's.
_MANY_KINDS = ["cpu", "memory", "gpu"] + [f"k{i}" for i in range(10)]


def many_kind_batch(rng: random.Random) -> tuple:
    from types import MappingProxyType

    def resource(kinds: list[str]) -> object:
        chosen = rng.sample(kinds, size(rng, 0, min(6, len(kinds))))
        # "".join: an equal key that is another str object than the literal
        m = {"".join(list(k)): float(rng.randint(0, 8)) for k in chosen}
        return MappingProxyType(m) if rng.random() < 0.5 else m

    n_nodes = size(rng, 1, 5)
    n_tasks = size(rng, 1, 8)
    capacities = [resource(_MANY_KINDS) for _ in range(n_nodes)]
    frees = [resource(_MANY_KINDS) for _ in range(n_nodes)]
    demands = [resource(_MANY_KINDS[:5]) for _ in range(n_tasks)]
    return demands, frees, capacities, [-1] * n_tasks, [-1] * n_tasks


def many_kind_batches() -> st.SearchStrategy[tuple]:
    return seeded(many_kind_batch)


@settings(max_examples=200, deadline=None)
@given(many_kind_batches(), st.sampled_from(sorted(api.POLICIES)))
def test_place_many_kinds_and_mappings_twin_equal(batch, policy):
    demands, frees, capacities, pins, prefs = batch
    assert compiled.place(demands, frees, capacities, pins, prefs, policy) == twin.place(
        demands, frees, capacities, pins, prefs, policy
    )
    window = compiled.window_fill(capacities, frees, 4, None, None)
    other = twin.window_fill(capacities, frees, 4, None, None)
    for need in demands:
        assert window.pick(need, -1, policy) == other.pick(need, -1, policy)


def batch_sequence(rng: random.Random) -> list[tuple[tuple, bool]]:
    return [(batch(rng), rng.random() < 0.5) for _ in range(rng.randint(2, 6))]


@settings(max_examples=60, deadline=None)
@given(seeded(batch_sequence))
def test_place_in_sequence_is_identical_whatever_the_key_objects(calls):
    """The compiled ``place`` remembers the last call's kind objects (``sched._dims``): calls in a
    row whose maps name the same kinds by the same, other or equal-but-distinct key objects (and
    another number of kinds) are each placed as the twin places them."""
    for (demands, frees, capacities, pins, prefs, policy), fresh in calls:
        if fresh:  # the same kinds, as other str objects of equal value
            demands, frees, capacities = (
                [{"".join(list(k)): q for k, q in m.items()} for m in maps]
                for maps in (demands, frees, capacities)
            )
        want = twin.place(demands, frees, capacities, pins, prefs, policy)
        assert compiled.place(demands, frees, capacities, pins, prefs, policy) == want
