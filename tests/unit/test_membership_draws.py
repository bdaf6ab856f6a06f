"""``records.below/sample/choice`` draw what ``random.Random``'s ``_randbelow``, ``sample``,
``choice`` and ``randint`` draw from the same seed, step by step (the membership machines call
them in C instead of ``random.py``'s Python frames, issue 20): every seeded simulation, and so
every digest test, depends on it. Both builds: the compiled records module and its .py source."""

from __future__ import annotations

import random
from collections.abc import Iterator
from types import ModuleType

import pytest
from pure_build import pure

import handoffd.membership.records as built_records

SIZES = (1, 2, 3, 5, 6, 20, 21, 22, 40, 41, 100, 257, 1000)


def _builds() -> Iterator[ModuleType]:
    yield built_records
    yield pure(built_records, "_pure_records_for_draws")


@pytest.mark.parametrize("records", list(_builds()), ids=["built", "pure"])
def test_draws_equal_randoms_own(records: ModuleType) -> None:
    for seed in range(40):
        ours, theirs = random.Random(seed), random.Random(seed)
        for n in SIZES:
            items = [f"n{i}" for i in range(n)]
            for k in range(min(n, 9) + 1):
                assert records.sample(ours, items, k) == theirs.sample(items, k), (seed, n, k)
            assert records.choice(ours, items) == theirs.choice(items), (seed, n)
            assert records.below(ours, n + 1) == theirs.randint(0, n), (seed, n)
            assert records.below(ours, n) == theirs.randrange(n), (seed, n)
        assert ours.getstate() == theirs.getstate()  # (the same draws used up)


@pytest.mark.parametrize("records", list(_builds()), ids=["built", "pure"])
def test_another_generator_is_asked(records: ModuleType) -> None:
    class Counted(random.Random):
        calls = 0

        def sample(self, population, k, *, counts=None):  # type: ignore[no-untyped-def]
            Counted.calls += 1
            return super().sample(population, k, counts=counts)

    items = [f"n{i}" for i in range(50)]
    assert records.sample(Counted(1), items, 3) == random.Random(1).sample(items, 3)
    assert Counted.calls == 1
    with pytest.raises(ValueError):
        records.sample(random.Random(1), items, 51)  # (random's own error)
