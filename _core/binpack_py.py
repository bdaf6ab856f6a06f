"""Pure-Python twin of the compiled placement core: same signatures, same results, naive algorithm.

Design note: this module is the oracle the compiled kernels are tested against, so it does the
obvious thing -- a full scan of every node for every task, and a recursion-free Kahn pass for upward
ranks -- using exactly the same floating-point operations in the same order as ``binpack.pyx``
(feasibility ``free + EPS >= demand``; binpack's node key ``sum_d free[n, d] * inv_scale[d]`` and
spread's ``(sum_d free[n, d] / capacity[n, d] over dims with capacity > 0) / count`` summed in dim
order), so the two backends agree bit for bit. ``sched_py`` is the twin of the scheduler-facing
kernels, over the same list kernel. See ``binpack.pyx`` for what the policies mean, why binpack normalises by the largest
capacity of each dim and why spread uses each node's own capacity (its free fraction).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import check_graph, check_order_keys, check_place, cycle_error
from ._consts import EPS, POLICIES, CycleError
from ._place import place_lists
from ._ranks import upward_ranks_lists

__all__ = [
    "BACKEND",
    "EPS",
    "POLICIES",
    "CycleError",
    "order_tasks",
    "place_batch",
    "upward_ranks",
]

BACKEND = "python"


def place_batch(
    demand: Any,
    free: np.ndarray,
    capacity: Any,
    order: Any,
    pinned: Any,
    preferred: Any,
    policy: str = "binpack",
    out: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Place tasks in ``order``; update ``free`` in place; return (node per task or -1, placed count)."""
    dem_a, free_a, cap_a, order_a, pin_a, pref_a, code, out_a = check_place(
        demand, free, capacity, order, pinned, preferred, policy, out
    )
    n_nodes, n_dims = free_a.shape
    fr = free_a.tolist()
    result, placed = place_lists(
        dem_a.tolist(), fr, cap_a.tolist(), order_a.tolist(), pin_a.tolist(), pref_a.tolist(), code
    )
    if n_nodes and n_dims:
        free_a[...] = fr
    out_a[...] = result
    return out_a, placed


def upward_ranks(indptr: Any, indices: Any, estimate: Any) -> np.ndarray:
    """rank[t] = estimate[t] + max(rank[c] for c consuming t's output), 0 for no consumers."""
    indptr_a, indices_a, est_a = check_graph(indptr, indices, estimate)
    return np.array(_ranks(indptr_a, indices_a, est_a), dtype=np.float64)


def _ranks(indptr_a: np.ndarray, indices_a: np.ndarray, est_a: np.ndarray) -> list[float]:
    ptr = indptr_a.tolist()
    cons = indices_a.tolist()
    consumers = [cons[ptr[t] : ptr[t + 1]] for t in range(est_a.shape[0])]
    rank, remaining = upward_ranks_lists(consumers, est_a.tolist())
    if any(remaining):
        raise cycle_error(np.array(remaining))
    return rank


def order_tasks(
    priority: Any, indptr: Any, indices: Any, estimate: Any, size: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Order tasks by priority desc, upward rank desc, size desc, index asc; return (order, ranks)."""
    indptr_a, indices_a, est_a = check_graph(indptr, indices, estimate)
    prio_a, size_a = check_order_keys(priority, size, est_a.shape[0])
    rank = _ranks(indptr_a, indices_a, est_a)
    prio = prio_a.tolist()
    size_l = size_a.tolist()
    idx = sorted(range(len(rank)), key=lambda i: (-prio[i], -rank[i], -size_l[i], i))
    return np.array(idx, dtype=np.int64), np.array(rank, dtype=np.float64)
