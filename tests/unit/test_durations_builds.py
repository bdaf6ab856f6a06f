"""Both builds of the owner's duration estimates (``scheduler/durations.py`` compiled with the
``durations.pxd`` beside it, and the same ``.py`` run as plain Python) give identical answers on
random input: the compiled one is imported when it was built, the plain one is the reference."""

from __future__ import annotations

import math
import random

from core_strategies import choice, size
from core_strategies import steps as step_lists
from hypothesis import given, settings
from hypothesis import strategies as st
from pure_build import pure as pure_of

import handoffd.scheduler.durations as built

pure = pure_of(built, "handoffd_durations_pure")  # (the .py, whatever is compiled beside it)


def test_the_compiled_build_is_imported_when_the_core_was_built():
    assert pure.__file__ is not None and pure.__file__.endswith(".py")
    try:
        import handoffd._core.sched as compiled_core
    except ImportError:  # a build without Cython: the .py is the only build
        assert built.__file__ is not None and built.__file__.endswith(".py")
        return
    # (the same build step compiles both; one without the other is a broken build)
    assert compiled_core.__file__ is not None and built.__file__ is not None
    assert built.__file__.endswith((".so", ".pyd")), built.__file__


SHAPES = [(), (("cpu", 1.0),), (("cpu", 2.0), ("memory", 100.0)), (("gpu", 1.0),)]
# (the step lists from one drawn seed, core_strategies: a Hypothesis draw per field was most of
# these tests' time) Seconds: any in [0, 10], the edges, tiny and subnormal ones, NaN, negative.
_ODD_SECONDS = (-1.0, math.nan, 0.0, 1e-9, 10.0, 5e-324, 2.2250738585072014e-308, 1e-300)


def _seconds(rng: random.Random) -> float:
    r = rng.random()
    if r < 0.3:
        return rng.choice(_ODD_SECONDS)
    if r < 0.4:
        return rng.uniform(0.0, 1e-6)
    return rng.uniform(0.0, 10.0)


steps = step_lists(
    60,
    choice(["observe", "estimate", "charge"]),
    choice(["a", "b", "c", "d"]),
    choice(SHAPES),
    _seconds,
)
resource_map = st.dictionaries(
    st.sampled_from(["cpu", "memory", "gpu"]), st.sampled_from([0, 0.5, 1, 2.0, 4]), max_size=3
)


@settings(max_examples=300, deadline=None)
@given(
    ops=steps,
    alpha=st.sampled_from([0.1, 0.3, 1.0]),
    max_keys=st.integers(1, 4),
    cost=resource_map,
    capacity=resource_map,
)
def test_both_builds_learn_and_charge_the_same(ops, alpha, max_keys, cost, capacity):
    a = built.Durations(alpha=alpha, max_keys=max_keys)
    b = pure.Durations(alpha=alpha, max_keys=max_keys)
    for op, function, shape, secs in ops:
        if op == "observe":
            a.observe(function, shape, secs)
            b.observe(function, shape, secs)
        elif op == "estimate":
            assert a.estimate(function, shape) == b.estimate(function, shape)
        else:
            assert a.charge(function, shape, cost, capacity) == b.charge(
                function, shape, cost, capacity
            )
    assert a.by_function == b.by_function and list(a.by_function) == list(b.by_function)
    assert a.by_shape == b.by_shape and list(a.by_shape) == list(b.by_shape)
    assert built.share(cost, capacity) == pure.share(cost, capacity)


@settings(max_examples=200, deadline=None)
@given(
    functions=step_lists(80, choice("abcdefgh")).map(lambda steps: [f for (f,) in steps]),
    max_keys=st.integers(1, 5),
)
def test_the_oldest_learned_function_is_forgotten_first(functions, max_keys):
    """Past ``max_keys`` the function learned first is forgotten, whatever was observed of it
    since (an update does not renew it), in both builds: the reference is a plain ordered list."""
    kept: list[str] = []
    for module in (built, pure):
        d = module.Durations(max_keys=max_keys)
        kept = []
        for i, function in enumerate(functions):
            d.observe(function, (("cpu", 1.0),), float(i))
            if function not in kept:
                if len(kept) >= max_keys:
                    kept.pop(0)
                kept.append(function)
        cpu = module.shape_key((("cpu", 1.0),))
        assert list(d.by_function) == [cpu + f for f in kept]
        assert all(d.estimate(f, (("cpu", 1.0),)) >= 0.0 for f in kept)


def _shape(rng: random.Random) -> tuple[tuple[str, float], ...]:
    return tuple(
        (rng.choice(["cpu", "memory", "gpu"]), rng.choice([0, 0.0, -0.0, 1, 1.0, 2.5]))
        for _ in range(size(rng, 0, 2))
    )


@settings(max_examples=200, deadline=None)
@given(pairs=step_lists(12, choice(["a", "b", "(", "a)", ""]), _shape))
def test_the_keys_tell_exactly_the_function_and_shape_pairs_apart(pairs):
    """A string key per (function, shape) pair stands for the pair as the tuple key did: equal
    pairs (``1 == 1.0 == -0.0 + 1``) share a key, different ones never do, in both builds; a
    record's keys learn what ``observe`` by function and shape learns."""
    for module in (built, pure):
        keys = {}
        for function, shape in pairs:
            keys.setdefault((function, shape), set()).add(module.function_key(function, shape))
        assert all(len(k) == 1 for k in keys.values())
        assert len({next(iter(k)) for k in keys.values()}) == len(keys)
        shapes = {shape: module.shape_key(shape) for _, shape in pairs}
        assert len(set(shapes.values())) == len(shapes)

        class Rec:
            def __init__(self, function, shape, cost, keys=module.shape_key):
                self.shape_key = keys(shape)
                self.duration_key = self.shape_key + function
                self.spec = type("Spec", (), {"cost": cost})

        a, b = module.Durations(), module.Durations()
        for i, (function, shape) in enumerate(pairs):
            a.observe(function, shape, float(i))
            b.observe_task(Rec(function, shape, dict(shape)), float(i))
        for function, shape in pairs:
            rec = Rec(function, shape, dict(shape))
            assert a.estimate(function, shape) == b.estimate_task(rec)
            assert a.charge(function, shape, dict(shape), {"cpu": 4.0}) == b.charge_task(
                rec, {"cpu": 4.0}
            )
        assert a.by_function == b.by_function and a.by_shape == b.by_shape
