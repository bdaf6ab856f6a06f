"""The ranking kernel's sort (``_core/binpack.pyx`` ``sort_tasks``) on keys that come in order
or nearly: it leaves keys already in order as they are and sorts any others, so the compiled
``order`` still gives exactly what its twin (``sched_py.order``) gives: ties in index order, one
key out of place at the start, the middle or the end, and random ties."""

from __future__ import annotations

import random

import pytest

from handoffd._core import ranking
from handoffd._core import sched_py as twin

pytestmark = pytest.mark.timeout(60)


def _independent(
    priority: list[int], size: list[float]
) -> tuple[list[int], list[list[int]], list[float], list[float]]:
    n = len(priority)
    return priority, [[] for _ in range(n)], [1.0] * n, size


def _cases() -> list[tuple[list[int], list[float]]]:
    n = 300
    cases = [([0] * n, [1.0] * n), ([], []), ([5], [2.0])]
    cases.append((list(range(n, 0, -1)), [1.0] * n))  # priorities descending: in order
    for at in (0, 1, n // 2, n - 1):
        priority = [0] * n
        priority[at] = 1  # one task first by priority, wherever it stands
        cases.append((priority, [1.0] * n))
        size = [1.0] * n
        size[at] = 2.0  # one task first by size
        cases.append(([0] * n, size))
    rng = random.Random(4)
    for _ in range(20):
        cases.append(([rng.choice((0, 0, 0, 1)) for _ in range(n)], [rng.choice((1.0, 1.0, 2.0)) for _ in range(n)]))  # fmt: skip
    return cases


@pytest.mark.parametrize("case", _cases())
def test_keys_in_order_or_nearly_are_ordered_as_the_twin_orders_them(
    case: tuple[list[int], list[float]],
) -> None:
    args = _independent(*case)
    got = ranking.order(*args)
    assert got == twin.order(*args)
    order = got[0]
    keys = [(-args[0][t], -got[1][t], -args[3][t], t) for t in order]
    assert keys == sorted(keys)


def test_ties_come_in_index_order() -> None:
    order, _ = ranking.order(*_independent([0] * 1000, [1.0] * 1000))
    assert order == list(range(1000))
