"""The ordering kernel, both backends: upward ranks, the sort keys, cycles, errors, scale."""

from __future__ import annotations

import numpy as np
import pytest
from core_strategies import dags
from hypothesis import given, settings

from handoffd._core import CycleError
from handoffd._core import binpack as compiled
from handoffd._core import binpack_py as twin

BACKENDS = [pytest.param(compiled, id="cython"), pytest.param(twin, id="python")]


def csr(consumers):
    indptr = np.zeros(len(consumers) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(c) for c in consumers])
    indices = np.array([c for cs in consumers for c in cs], dtype=np.int64)
    return indptr, indices


@pytest.mark.parametrize("core", BACKENDS)
@settings(max_examples=150, deadline=None)
@given(dag=dags())
def test_order_contract(core, dag):
    priority, consumers, estimate, size = dag
    indptr, indices = csr(consumers)
    order, rank = core.order_tasks(priority, indptr, indices, estimate, size)
    n = len(consumers)
    assert sorted(order.tolist()) == list(range(n))
    for t in range(n):
        assert rank[t] == estimate[t] + max((rank[c] for c in consumers[t]), default=0.0)
    keys = [(-priority[t], -rank[t], -size[t], t) for t in order.tolist()]
    assert keys == sorted(keys)
    np.testing.assert_array_equal(core.upward_ranks(indptr, indices, estimate), rank)


@settings(max_examples=150, deadline=None)
@given(dag=dags())
def test_backends_identical(dag):
    priority, consumers, estimate, size = dag
    indptr, indices = csr(consumers)
    order_c, rank_c = compiled.order_tasks(priority, indptr, indices, estimate, size)
    order_p, rank_p = twin.order_tasks(priority, indptr, indices, estimate, size)
    np.testing.assert_array_equal(order_c, order_p)
    np.testing.assert_array_equal(rank_c, rank_p)


@pytest.mark.parametrize("core", BACKENDS)
def test_priority_then_critical_path_then_size_then_index(core):
    # 0 -> 1 -> 2 is the long chain; 3 is alone but has top priority; 4 and 5 tie on rank.
    consumers = [[1], [2], [], [], [], []]
    estimate = [1.0, 1.0, 1.0, 1.0, 2.0, 2.0]
    size = [0.1, 0.1, 0.1, 0.1, 0.5, 0.9]
    priority = [0, 0, 0, 5, 0, 0]
    order, rank = core.order_tasks(priority, *csr(consumers), estimate, size)
    assert rank.tolist() == [3.0, 2.0, 1.0, 1.0, 2.0, 2.0]
    # 3 (priority) | 0 (rank 3) | 5, 4, 1 tie at rank 2: size 0.9, 0.5, 0.1 | 2 (rank 1)
    assert order.tolist() == [3, 0, 5, 4, 1, 2]
    # Equal everything: lowest index first.
    order, _ = core.order_tasks([0] * 3, *csr([[], [], []]), [1.0] * 3, [1.0] * 3)
    assert order.tolist() == [0, 1, 2]


@pytest.mark.parametrize("core", BACKENDS)
def test_rank_takes_the_longest_consumer_path(core):
    # Diamond: 0 feeds 1 (cheap) and 2 (expensive), both feed 3.
    consumers = [[1, 2], [3], [3], []]
    rank = core.upward_ranks(*csr(consumers), [1.0, 1.0, 10.0, 2.0])
    assert rank.tolist() == [13.0, 3.0, 12.0, 2.0]


@pytest.mark.parametrize("core", BACKENDS)
def test_long_chain_is_iterative(core):
    # 100k-long chain: any recursion would blow the stack.
    n = 100_000
    indptr = np.minimum(np.arange(n + 1), n - 1).astype(np.int64)
    indices = np.arange(1, n, dtype=np.int64)
    order, rank = core.order_tasks(
        np.zeros(n, dtype=np.int64), indptr, indices, np.ones(n), np.zeros(n)
    )
    assert rank[0] == n and rank[-1] == 1
    np.testing.assert_array_equal(order, np.arange(n))


@pytest.mark.parametrize("core", BACKENDS)
@pytest.mark.parametrize(
    "consumers", [[[0]], [[1], [0]], [[1], [2], [0], []], [[], [2], [3], [1]]], ids=str
)
def test_cycles_are_errors(core, consumers):
    n = len(consumers)
    with pytest.raises(CycleError, match="cycle"):
        core.order_tasks([0] * n, *csr(consumers), [1.0] * n, [0.0] * n)
    with pytest.raises(ValueError, match="cycle"):
        core.upward_ranks(*csr(consumers), [1.0] * n)


@pytest.mark.parametrize("core", BACKENDS)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([0, 0], [0, 1], [1], [1.0, 1.0], [0.0, 0.0]), "indptr has length 2"),
        (([0, 0], [1, 1, 1], [], [1.0, 1.0], [0.0, 0.0]), "indptr\\[0\\] = 1"),
        (([0, 0], [0, 1, 0], [1], [1.0, 1.0], [0.0, 0.0]), "non-decreasing"),
        (([0, 0], [0, 1, 1], [], [1.0, 1.0], [0.0, 0.0]), "indices has 0"),
        (([0, 0], [0, 1, 1], [2], [1.0, 1.0], [0.0, 0.0]), "indices\\[0\\] = 2"),
        (([0, 0], [0, 0, 0], [], [1.0, np.nan], [0.0, 0.0]), "estimate\\[1\\]"),
        (([0, 0], [0, 0, 0], [], [1.0, -1.0], [0.0, 0.0]), "negative"),
        (([0, 0], [0, 0, 0], [], [1.0, 1.0], [0.0]), "size must be"),
        (([0, 0], [0, 0, 0], [], [1.0, 1.0], [0.0, np.inf]), "size\\[1\\]"),
        (([0], [0, 0, 0], [], [1.0, 1.0], [0.0, 0.0]), "priority has length 1"),
        (([0.5, 0], [0, 0, 0], [], [1.0, 1.0], [0.0, 0.0]), "priority must hold integers"),
    ],
)
def test_bad_input_is_a_clear_error(core, args, message):
    with pytest.raises(ValueError, match=message):
        core.order_tasks(*args)
