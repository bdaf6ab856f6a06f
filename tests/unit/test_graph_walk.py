"""The general walk's cycle check without an inline function (``graph._acyclic``) and its
placement order's check (issue 13: a run's graph built with less per-task Python): the same
answers as the walks they stand for, on random graphs."""

from __future__ import annotations

import itertools
import random

import pytest

from handoffd.errors import ValidationError
from handoffd.scheduler import graph
from handoffd.scheduler.graph import build_graph
from handoffd.scheduler.placement import order
from handoffd.spec import TaskSpec


def _random_specs(rng: random.Random, n: int, cyclic: bool) -> list[TaskSpec]:
    """``n`` tasks, each depending on a few earlier ones (some twice); ``cyclic``: one back edge."""
    deps: list[list[str]] = [
        [f"t{rng.randrange(i)}" for _ in range(rng.randrange(4))] if i else [] for i in range(n)
    ]
    if cyclic and n > 1:
        lo, hi = sorted(rng.sample(range(n), 2))
        deps[lo].append(f"t{hi}")  # hi reaches lo only through its own path, or lo is a root: a
        deps[hi].append(f"t{lo}")  # cycle either way, the two edges closing it
    return [
        TaskSpec(f"t{i}", tuple(d), {"cpu": 1.0}, b"p", priority=rng.randrange(3))
        for i, d in enumerate(deps)
    ]


@pytest.mark.parametrize("seed", range(40))
def test_acyclic_agrees_with_the_topological_walk(seed: int) -> None:
    rng = random.Random(seed)
    specs = _random_specs(rng, rng.randrange(1, 30), cyclic=seed % 2 == 1)
    deps = {s.id: tuple(dict.fromkeys(s.deps)) for s in specs}
    consumers: dict[str, list[str]] = {s.id: [] for s in specs}
    for s in specs:
        for d in deps[s.id]:
            consumers[d].append(s.id)
    try:
        graph.topological(specs)
        expected = True
    except ValidationError:
        expected = False
    assert graph._acyclic(deps, consumers) is expected
    shuffled = list(specs)
    rng.shuffle(shuffled)  # (the walk's answer does not hang on submission order)
    if expected:
        build_graph(shuffled, None, order)
    else:
        with pytest.raises(ValidationError) as raised:
            build_graph(shuffled, None, order)
        with pytest.raises(ValidationError) as walked:
            graph.topological(shuffled)
        assert raised.value.kind == "cycle"
        assert (raised.value.function_id, raised.value.message) == (
            walked.value.function_id,
            walked.value.message,
        )


@pytest.mark.parametrize("seed", range(20))
def test_placement_order_is_sorted_by_the_key(seed: int) -> None:
    rng = random.Random(seed)
    specs = _random_specs(rng, rng.randrange(1, 40), cyclic=False)
    g = build_graph(specs, None, order)
    key = graph.keys_of(g.regular, g.position, g.upward_rank)
    assert sorted(g.placement_order) == list(range(len(specs)))
    assert all(key(a) <= key(b) for a, b in itertools.pairwise(g.placement_order))


def test_a_ranking_that_disagrees_is_sorted() -> None:
    specs = [TaskSpec(f"t{i}", (), {"cpu": 1.0}, b"p", priority=i) for i in range(5)]

    def backwards(priority, consumers, estimate, size):  # type: ignore[no-untyped-def]
        return list(range(len(consumers))), [1.0] * len(consumers)  # priority ignored

    g = build_graph(specs, None, backwards)
    assert [g.regular[i].id for i in g.placement_order] == ["t4", "t3", "t2", "t1", "t0"]
