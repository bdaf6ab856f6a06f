"""Placement over plain lists, with no numpy import: the pure-Python twins' one placement algorithm
(``binpack_py.place_batch`` over its arrays' ``tolist()``, ``sched_py.place`` over the scheduler's
dicts), doing the same float operations in the same order as ``binpack.pyx`` (see ``binpack_py``
for which)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ._consts import BINPACK, EPS, FIRST_FIT, SPREAD


def place_lists(
    dem: Sequence[Sequence[float]],
    fr: list[list[float]],
    cap: Sequence[Sequence[float]],
    order: Iterable[int],
    pins: Sequence[int],
    prefs: Sequence[int],
    code: int,
) -> tuple[list[int], int]:
    """Place tasks in ``order``; update ``fr`` (free per node, per dim) in place; return (node per
    task or -1, placed count). ``pins``/``prefs``: a node index per task, -1 for none. Indices must be
    valid; callers check that first."""
    n_nodes = len(cap)
    dims = range(len(cap[0]) if n_nodes else 0)
    inv = []
    for d in dims:
        top = 0.0
        for n in range(n_nodes):
            if cap[n][d] > top:
                top = cap[n][d]
        inv.append(1.0 / top if top > 0.0 else 0.0)  # (never divides by zero)
    result = [-1] * len(dem)

    def fits(node: int, need: Sequence[float]) -> bool:
        row = fr[node]
        for d in dims:
            if row[d] + EPS < need[d]:
                return False
        return True

    def key(node: int) -> float:
        row = fr[node]
        s = 0.0
        if code == SPREAD:
            # Free fraction: mean over the dims the node has of free / capacity (0: no capacity).
            cap_row = cap[node]
            k = 0
            for d in dims:
                if cap_row[d] > 0.0:
                    s = s + row[d] / cap_row[d]
                    k += 1
            return s / k if k > 0 else 0.0
        for d in dims:
            s = s + row[d] * inv[d]
        return s

    placed = 0
    for t in order:
        need = dem[t]
        chosen = -1
        if pins[t] >= 0:
            if fits(pins[t], need):
                chosen = pins[t]
        elif prefs[t] >= 0 and fits(prefs[t], need):
            chosen = prefs[t]
        else:
            best_key = 0.0
            for n in range(n_nodes):
                if not fits(n, need):
                    continue
                if code == FIRST_FIT:
                    chosen = n
                    break
                k = key(n)
                if (
                    chosen < 0
                    or (code == BINPACK and k < best_key)
                    or (code == SPREAD and k > best_key)
                ):
                    chosen, best_key = n, k
        if chosen >= 0:
            row = fr[chosen]
            for d in dims:
                left = row[d] - need[d]
                row[d] = left if left > 0.0 else 0.0
            result[t] = chosen
            placed += 1
    return result, placed
