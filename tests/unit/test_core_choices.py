"""The placement core's kernels for the choices the scheduler once made in Python (issue 13 item 4):
collocation (``place(..., follow=)``), locality (``prefer``) and the rebalance choice (``take``).
The compiled ``sched`` and its twin ``sched_py`` give identical answers and errors on random
input; each answer is also checked against the kernel's contract, independently."""

from __future__ import annotations

import random

import pytest
from core_strategies import resource_map as some_resources
from core_strategies import seeded, size, sparse_node
from hypothesis import given, settings
from hypothesis import strategies as st

from handoffd._core import api
from handoffd._core import sched as compiled
from handoffd._core import sched_py as twin

EPS = api.EPS
KINDS = ["cpu", "memory", "gpu", "x"]
_NUDGES = [0.0, 0.0, EPS / 2, -EPS / 2, EPS, -1.5 * EPS, 2 * EPS]


def _quantity(rng: random.Random) -> float:
    return max(rng.randint(0, 12) / 4 + rng.choice(_NUDGES), 0.0)


def _resources(rng: random.Random) -> dict[str, float]:
    return some_resources(rng, KINDS, _quantity, 3)


def _free(rng: random.Random) -> dict[str, float]:
    # A node's view net of unanswered dispatches may be below zero.
    return some_resources(rng, KINDS, lambda r: _quantity(r) * r.choice([1, 1, -1]), len(KINDS))


def group(rng: random.Random) -> tuple:
    """A batch where some tasks follow an earlier one (collocation riders)."""
    n_nodes = size(rng, 0, 5)
    capacities = [_resources(rng) for _ in range(n_nodes)]
    frees = [{k: v * rng.choice([0.0, 0.5, 1.0]) for k, v in c.items()} for c in capacities]
    n_tasks = size(rng, 0, 16)
    demands = [_resources(rng) for _ in range(n_tasks)]
    pins = [sparse_node(rng, n_nodes) for _ in range(n_tasks)]
    prefs = [
        -1 if not n_nodes or rng.random() < 0.5 else rng.randint(-1, n_nodes - 1)
        for _ in range(n_tasks)
    ]
    follow = [-1 if not t or rng.random() < 0.5 else rng.randint(-1, t - 1) for t in range(n_tasks)]
    policy = rng.choice(api.POLICIES)
    return demands, frees, capacities, pins, prefs, policy, follow


def take_case(rng: random.Random) -> tuple[dict[str, float], list[dict[str, float]]]:
    return _free(rng), [_resources(rng) for _ in range(size(rng, 0, 12))]


@settings(max_examples=400, deadline=None)
@given(case=seeded(group))
def test_place_with_followers_is_identical(case):
    demands, frees, capacities, pins, prefs, policy, follow = case
    got = compiled.place(demands, frees, capacities, pins, prefs, policy, follow)
    assert got == twin.place(demands, frees, capacities, pins, prefs, policy, follow)
    # Contract: a follower is where its leader went; the others are placed as if the followers
    # were not in the batch at all (they consume nothing).
    for t, lead in enumerate(follow):
        if lead >= 0:
            assert got[t] == got[lead]
    alone = [t for t in range(len(demands)) if follow[t] < 0]
    solo = compiled.place(
        [demands[t] for t in alone],
        frees,
        capacities,
        [pins[t] for t in alone],
        [prefs[t] for t in alone],
        policy,
    )
    assert [got[t] for t in alone] == solo
    # No follower at all: the same as without ``follow``.
    assert compiled.place(demands, frees, capacities, pins, prefs, policy, [-1] * len(demands)) == (
        compiled.place(demands, frees, capacities, pins, prefs, policy)
    )


held_maps = st.dictionaries(
    st.sampled_from(["a", "b", "c", "n10", "n2"]),
    st.one_of(st.integers(1, 4), st.sampled_from([0.5, 1.0, 2.0])),
    max_size=5,
)


@settings(max_examples=300, deadline=None)
@given(held=held_maps)
def test_prefer_is_identical(held):
    got = compiled.prefer(held)
    assert got == twin.prefer(held)
    if not held:
        assert got is None
    else:  # the most bytes; ties to the greatest name (what the scheduler did before)
        assert got == max((b, n) for n, b in held.items())[1]


@settings(max_examples=400, deadline=None)
@given(case=seeded(take_case))
def test_take_is_identical(case):
    free, demands = case
    got = compiled.take(free, demands)
    assert got == twin.take(free, demands)
    # Contract, checked independently: in order, each taken one fits what the earlier ones left,
    # nothing skipped would have fit then, and the walk ends only when nothing is left above EPS.
    left = dict(free)
    taken = set(got)
    assert got == sorted(taken)
    for i, demand in enumerate(demands):
        if not any(q > EPS for q in left.values()):
            assert all(j not in taken for j in range(i, len(demands)))
            break
        fit = all(left.get(k, 0.0) + EPS >= q for k, q in demand.items() if q > 0)
        assert (i in taken) == fit, (i, demand, left)
        if fit:
            for k, q in demand.items():
                if q > 0:
                    left[k] = left.get(k, 0.0) - q


def test_take_and_prefer_examples():
    for core in (compiled, twin):
        assert core.take({"cpu": 2}, [{"cpu": 1}, {"cpu": 3}, {"cpu": 1}, {}]) == [0, 2]
        assert core.take({"cpu": 0.0, "memory": -5.0}, [{}]) == []  # nothing free: nothing moves
        assert core.take({"cpu": 1}, [{}, {"gpu": 1}, {"cpu": 1}]) == [0, 2]
        assert core.prefer({"n1": 10, "n2": 30, "n3": 30}) == "n3"
        assert core.prefer({}) is None


_BAD = [
    (
        lambda c: c.place([{}], [{}], [{}], [-1], [-1], "binpack", [0]),
        r"follow\[0\] = 0 is out of range",
    ),
    (
        lambda c: c.place([{}, {}], [{}], [{}], [-1] * 2, [-1] * 2, "binpack", [-1]),
        "follow needs one entry",
    ),
    (
        lambda c: c.place([{}, {}], [{}], [{}], [-1] * 2, [-1] * 2, "binpack", [-1, 1.0]),
        r"follow\[1\] = 1.0 is not an integer",
    ),
    (lambda c: c.prefer({"a": -1}), r"held\[0\] = -1 is negative"),
    (lambda c: c.prefer({"a": 1, 2: 1}), r"held\[1\] = 2 is not a node name"),
    (lambda c: c.prefer({"a": "x"}), r"held\[0\] = 'x' is not a number"),
    (lambda c: c.take({"cpu": "1"}, [{}]), r"free\[0\]: cpu = '1' is not a number"),
    (lambda c: c.take({"cpu": 2}, [{}, {"cpu": -1}]), r"demand\[1\]: cpu = -1 is negative"),
    (
        lambda c: c.take({"cpu": 2}, [{"cpu": float("nan")}]),
        r"demand\[0\]: cpu = nan is not a finite",
    ),
]


@pytest.mark.parametrize(("call", "message"), _BAD)
def test_errors_are_identical(call, message):
    errors = []
    for core in (compiled, twin):
        with pytest.raises(ValueError, match=message) as info:
            call(core)
        errors.append(str(info.value))
    assert errors[0] == errors[1]


def test_new_kernels_are_counted_and_summed_per_backend():
    before = api.decisions()
    compiled.take({"cpu": 2}, [{"cpu": 1}, {"cpu": 1}, {"cpu": 1}])  # 2 examined, then empty
    twin.prefer({"a": 1})
    compiled.place(
        [{"cpu": 1}, {}], [{"cpu": 2}], [{"cpu": 2}], [-1, -1], [-1, -1], "binpack", [-1, 0]
    )
    after = api.decisions()

    def grew(kernel: str, backend: str) -> int:
        return after[(kernel, backend)] - before.get((kernel, backend), 0)

    assert grew("take", "cython") == 2
    assert grew("prefer", "python") == 1
    assert grew("place", "cython") == 2  # the follower's decision is the core's too
    shares = api.shares({("place", "cython"): 5, ("fits", "cython"): 2, ("take", "python"): 1})
    assert shares == {"cython": 7, "python": 1}
    assert set(api.shares()) == {"cython", "python"}
