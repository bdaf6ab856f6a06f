"""Random cases shared by the tests of the placement core's kernels.

Each case is built from ONE drawn seed by a plain ``random.Random`` (``seeded``): Hypothesis still
chooses the seeds (new ones every run, as many examples as each test's ``max_examples``), but
drawing every quantity, pin and edge through Hypothesis cost most of these tests' time (a profile
of ``test_place_is_identical``: its ``draw`` ~60 % of the test, the kernels under test not in the
top 25). A failing case is printed as the value the test got and as its seed (a Hypothesis note):
``builder(random.Random(seed))`` builds it again. The builders keep the old strategies' shapes:
sizes from 0 (empty batches and DAGs included), quantities on a coarse grid so ties are common, a
few nudged across the kernels' tolerance edge."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import note
from hypothesis import strategies as st

_SEEDS = st.integers(0, 2**32 - 1)
SEEDS = _SEEDS  # one drawn seed: a rule's or a case's random choices come from it


def seeded(build: Callable[..., Any], *args: Any) -> st.SearchStrategy[Any]:
    """A strategy of cases ``build(random.Random(seed), *args)``, one drawn seed each."""

    @st.composite
    def case(draw: Any) -> Any:
        seed = draw(_SEEDS)
        note(
            f"case seed {seed}: {build.__name__}(random.Random({seed}){''.join(f', {a!r}' for a in args)})"
        )
        return build(random.Random(seed), *args)

    return case()


def swarm(rng: random.Random, names: Sequence[str]) -> frozenset[str]:
    """The actions a state machine's case leaves out, each with one probability drawn for the case,
    as Hypothesis' feature flags disable rules (a case of few kinds of steps goes deeper)."""
    p_disabled = rng.randrange(255) / 255
    return frozenset(n for n in names if rng.random() < p_disabled)


def seeded_step(
    seed: int,
    actions: Sequence[tuple[str, Callable[[random.Random], object], bool]],
    disabled: frozenset[str],
) -> None:
    """One step of a state machine from one drawn seed: an action among those whose precondition
    holds (uniformly, as Hypothesis picks among its valid rules), its arguments from the seed.

    Hypothesis choosing among many rules, most rejected by a precondition or a feature flag, one
    draw per argument, was most of the stateful tests' time, and the length of those draws cut
    most cases short of their step count. The case's ``disabled`` actions sit out unless every
    valid one is disabled (Hypothesis then enables the one it asks about first)."""
    rng = random.Random(seed)
    valid = [(name, act) for name, act, ok in actions if ok]
    name, act = rng.choice([a for a in valid if a[0] not in disabled] or valid)
    note(f"step seed {seed}: {name}")
    act(rng)


def size(rng: random.Random, low: int, high: int) -> int:
    """A count in [low, high], the edges and small counts more often than uniform (as Hypothesis
    draws them): empty and one-element cases stay common at any upper bound."""
    r = rng.random()
    if r < 0.1:
        return low
    if r < 0.2:
        return high
    if r < 0.4:
        return rng.randint(low, min(high, low + 2))
    return rng.randint(low, high)


def resource_map(
    rng: random.Random, kinds: Sequence[str], quantity: Callable[[random.Random], float], most: int
) -> dict[str, float]:
    """Up to ``most`` distinct kinds in a random order, each with ``quantity(rng)``."""
    chosen = rng.sample(list(kinds), size(rng, 0, min(most, len(kinds))))
    return {k: quantity(rng) for k in chosen}


def sparse_node(rng: random.Random, n_nodes: int) -> int:
    """-1 two times in three, else a node index or -1 (a pin or a preference)."""
    if not n_nodes or rng.random() < 2 / 3:
        return -1
    return rng.randint(-1, n_nodes - 1)


def dag(
    rng: random.Random, min_size: float = 0.0
) -> tuple[list[int], list[list[int]], list[float], list[float]]:
    """A random DAG: edges go from lower to higher rank in a random topological labelling (each
    pair one time in five); with each task's priority, estimate and output size (multiples of 0.5
    from ``min_size`` to 1.5)."""
    n = size(rng, 0, 30)
    labels = list(range(n))
    rng.shuffle(labels)
    consumers: list[list[int]] = [[] for _ in range(n)]
    for a in range(n):
        for b in range(a + 1, n):
            if rng.random() < 0.2:
                consumers[labels[a]].append(labels[b])
    priority = [rng.randint(-2, 2) for _ in range(n)]
    estimate = [float(rng.randint(0, 4)) for _ in range(n)]
    size_ = [rng.randint(int(min_size * 2), 3) / 2 for _ in range(n)]
    return priority, consumers, estimate, size_


def dags(min_size: float = 0.0) -> st.SearchStrategy[Any]:
    return seeded(dag, min_size)


def choice(values: Sequence[Any]) -> Callable[[random.Random], Any]:
    """A field of ``steps``: one of ``values`` (the same objects, as ``sampled_from`` gives)."""
    return lambda rng: rng.choice(values)


def ints(low: int, high: int) -> Callable[[random.Random], int]:
    """A field of ``steps``: an int in [low, high], the bounds more often than uniform."""
    return lambda rng: size(rng, low, high)


def floats(low: float, high: float) -> Callable[[random.Random], float]:
    """A field of ``steps``: a float in [low, high], the bounds more often than uniform."""
    return lambda rng: rng.choice((low, high, rng.uniform(low, high), rng.uniform(low, high)))


def steps(most: int, *fields: Callable[[random.Random], Any]) -> st.SearchStrategy[Any]:
    """Lists of up to ``most`` tuples of one value a field, from one drawn seed (a failing list is
    printed whole by Hypothesis: it is the replay)."""

    def step_list(rng: random.Random) -> list[tuple[Any, ...]]:
        return [tuple(f(rng) for f in fields) for _ in range(size(rng, 0, most))]

    return seeded(step_list)
