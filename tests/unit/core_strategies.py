"""Hypothesis strategies shared by the tests of the placement core's kernels."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st


@st.composite
def dags(
    draw: Any, min_size: float = 0.0
) -> tuple[list[int], list[list[int]], list[float], list[float]]:
    """A random DAG: edges go from lower to higher rank in a random topological labelling; with
    each task's priority, estimate and output size (multiples of 0.5 from ``min_size`` to 1.5)."""
    n = draw(st.integers(0, 30))
    labels = draw(st.permutations(range(n)))
    consumers: list[list[int]] = [[] for _ in range(n)]
    for a in range(n):
        for b in range(a + 1, n):
            if draw(st.integers(0, 9)) < 2:
                consumers[labels[a]].append(labels[b])
    priority = draw(st.lists(st.integers(-2, 2), min_size=n, max_size=n))
    estimate = draw(st.lists(st.integers(0, 4).map(float), min_size=n, max_size=n))
    halves = st.integers(int(min_size * 2), 3).map(lambda v: v / 2)
    size = draw(st.lists(halves, min_size=n, max_size=n))
    return priority, consumers, estimate, size
