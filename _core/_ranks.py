"""Upward ranks over plain lists, with no numpy import: the one implementation shared by the
pure-Python twins (``binpack_py`` and ``sched_py``)."""

from __future__ import annotations

from collections.abc import Sequence


def upward_ranks_lists(
    consumers: Sequence[Sequence[int]], est: Sequence[float]
) -> tuple[list[float], list[int]]:
    """rank[t] = est[t] + max(rank[c] for c in consumers[t]) (0 without consumers), computed from
    the sinks up (Kahn, no recursion). Returns (rank, remaining): a task with remaining > 0 is on or
    behind a cycle, so ``any(remaining)`` means the graph is not a DAG. Consumers must be valid
    indices; callers check that first."""
    n_tasks = len(consumers)
    producers: list[list[int]] = [[] for _ in range(n_tasks)]
    remaining = [0] * n_tasks
    for t in range(n_tasks):
        remaining[t] = len(consumers[t])
        for c in consumers[t]:
            producers[c].append(t)
    best_consumer = [0.0] * n_tasks
    rank = [0.0] * n_tasks
    ready = [t for t in range(n_tasks) if remaining[t] == 0]
    while ready:
        c = ready.pop()
        rank[c] = est[c] + best_consumer[c]
        for p in producers[c]:
            if rank[c] > best_consumer[p]:
                best_consumer[p] = rank[c]
            remaining[p] -= 1
            if remaining[p] == 0:
                ready.append(p)
    return rank, remaining
