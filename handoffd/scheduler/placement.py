"""Placement adapter: resource dicts in, node names out, over the compiled core (or its twin).

The scheduler thinks in ``{"cpu": 2, "memory": 512}`` dicts and node names; the core thinks in dense
float64 arrays. This module converts one to the other (dims in ``resources.kinds()`` order, a kind a
node lacks counts as 0 available), picks the backend, and converts the answer back. It is pure: no
clock, no I/O, inputs never mutated.

Backend choice: the ``backend`` argument, else ``HANDOFFD_CORE`` (``cython`` or ``python``). Asking
for ``cython`` explicitly when the compiled module is missing is an error (``CoreUnavailable``); when
nothing is asked for, a missing compiled module falls back to the Python twin with one warning.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from handoffd import resources
from handoffd._core import EPS, POLICIES, CycleError
from handoffd._core._place import place_lists
from handoffd._core._ranks import upward_ranks_lists
from handoffd.errors import ValidationError

if TYPE_CHECKING:
    import numpy as np

# numpy (~0.1 s to import) and the compiled core load on the first call that needs arrays: small
# batches (``place_small``, ``order`` of a small graph) never do, so a daemon starts without them.

__all__ = [
    "POLICIES",
    "CoreUnavailable",
    "NodeView",
    "TaskRequest",
    "backend_name",
    "fits_some_capacity",
    "largest_node",
    "order",
    "place",
    "place_small",
    "task_sizes",
]

log = logging.getLogger("handoffd.scheduler")

_MODULES = {"cython": "handoffd._core.binpack", "python": "handoffd._core.binpack_py"}
_warned_fallback = False


class CoreUnavailable(ImportError):
    """The compiled core was asked for explicitly but cannot be imported."""


@dataclass(frozen=True)
class NodeView:
    """A node as placement sees it: total capacity and currently free resources per kind."""

    name: str
    capacity: dict[str, float]
    free: dict[str, float]


@dataclass(frozen=True)
class TaskRequest:
    """One task to place: its demand, an optional required node, an optional preferred node."""

    demand: dict[str, float]
    pin: str | None = None
    prefer: str | None = None


def _requested(backend: str | None) -> tuple[str, bool]:
    """(backend name, whether it was asked for explicitly)."""
    explicit = backend if backend is not None else os.environ.get("HANDOFFD_CORE") or None
    if explicit is None:
        return "cython", False
    if explicit not in _MODULES:
        source = "backend" if backend is not None else "HANDOFFD_CORE"
        raise ValueError(f"{source}={explicit!r}: valid core backends are 'cython' and 'python'")
    return explicit, True


def _module(backend: str | None) -> ModuleType:
    global _warned_fallback
    name, explicit = _requested(backend)
    if name == "python":
        return importlib.import_module(_MODULES["python"])
    try:
        return importlib.import_module(_MODULES["cython"])
    except ImportError as exc:
        if explicit:
            raise CoreUnavailable(
                f"the compiled placement core (handoffd._core.binpack) was requested but cannot be "
                f"imported ({exc}); rebuild it with `make install` (needs Cython and a C compiler) "
                f"or set HANDOFFD_CORE=python"
            ) from exc
        if not _warned_fallback:
            _warned_fallback = True
            log.warning(
                "compiled placement core not importable (%s); using the pure-Python twin, which "
                "is much slower. Rebuild with `make install`.",
                exc,
            )
        return importlib.import_module(_MODULES["python"])


def backend_name(backend: str | None = None) -> str:
    """The backend a call with this ``backend`` argument would use: "cython" or "python"."""
    return str(_module(backend).BACKEND)


def _check_policy(policy: str) -> None:
    if policy not in POLICIES:
        raise ValueError(
            f"unknown placement policy {policy!r}; valid policies are {', '.join(POLICIES)}"
        )


def _row(amounts: Mapping[str, float], dims: Sequence[str], what: str) -> list[float]:
    """One array row in ``dims`` order; missing kinds are 0; malformed amounts raise ValueError."""
    for kind, qty in amounts.items():
        if isinstance(qty, bool) or not isinstance(qty, (int, float)) or math.isnan(qty):
            raise ValueError(f"{what}: {kind} = {qty!r} is not a number")
    return [float(amounts.get(kind, 0.0)) for kind in dims]


def _node_arrays(
    nodes: Sequence[NodeView], dims: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    import numpy as np

    index: dict[str, int] = {}
    for i, node in enumerate(nodes):
        if node.name in index:
            raise ValueError(
                f"node name {node.name!r} appears twice (nodes {index[node.name]} and {i})"
            )
        index[node.name] = i
    shape = (len(nodes), len(dims))
    capacity = np.array([_row(n.capacity, dims, f"node {n.name!r} capacity") for n in nodes])
    free = np.array([_row(n.free, dims, f"node {n.name!r} free") for n in nodes])
    capacity = capacity.reshape(shape)
    # Gossip can briefly report a ledger below zero (a claim raced a release): that node is full.
    free = np.maximum(free.reshape(shape), 0.0)
    return capacity, free, index


def place(
    requests: Sequence[TaskRequest],
    nodes: Sequence[NodeView],
    policy: str = "binpack",
    backend: str | None = None,
) -> list[str | None]:
    """Node name (or None) per request, in request order; earlier requests consume free first."""
    import numpy as np

    _check_policy(policy)
    core = _module(backend)
    dims = resources.kinds(
        [r.demand for r in requests] + [n.capacity for n in nodes] + [n.free for n in nodes]
    )
    capacity, free, index = _node_arrays(nodes, dims)
    demand = np.array(
        [_row(r.demand, dims, f"request {i} demand") for i, r in enumerate(requests)]
    ).reshape(len(requests), len(dims))
    if demand.size and (demand < 0).any():
        i, d = (int(x) for x in np.argwhere(demand < 0)[0])
        raise ValueError(f"request {i} demand: {dims[d]} = {demand[i, d]} is negative")
    pinned = np.full(len(requests), -1, dtype=np.int64)
    preferred = np.full(len(requests), -1, dtype=np.int64)
    ordered = []
    for i, request in enumerate(requests):
        if request.pin is not None:
            if request.pin not in index:
                continue  # pinned to a node that is not (or no longer) here: unplaceable now
            pinned[i] = index[request.pin]
        if request.prefer is not None and request.prefer in index:
            preferred[i] = index[request.prefer]
        ordered.append(i)
    assignment, _ = core.place_batch(
        demand, free, capacity, np.array(ordered, dtype=np.int64), pinned, preferred, policy
    )
    return [nodes[n].name if n >= 0 else None for n in assignment.tolist()]


#: Batches up to this size are placed by ``place_small`` (plain Python, no arrays): for one or two
#: tasks, building numpy arrays costs far more than the placement itself.
SMALL_BATCH = 16
#: ``order`` takes the plain-Python path for graphs up to this size while numpy is not loaded yet:
#: ~8 ms per 10,000 tasks, against 0.1-0.2 s for a daemon's first numpy import (start-up leaves
#: numpy out, so the first large submission paid it); once numpy is in, the core is faster.
PY_ORDER_MAX = 50_000


def place_small(
    requests: Sequence[TaskRequest], nodes: Sequence[NodeView], policy: str = "binpack"
) -> list[str | None]:
    """``place`` in plain Python over dicts: the same answer as the core (the Python twin's own list
    kernel, ``_core/_place.py``), for small batches of well-formed requests."""
    _check_policy(policy)
    dims = resources.kinds(
        [r.demand for r in requests] + [n.capacity for n in nodes] + [n.free for n in nodes]
    )
    index = {node.name: i for i, node in enumerate(nodes)}
    pins = [-1] * len(requests)
    prefs = [-1] * len(requests)
    todo = []
    for i, request in enumerate(requests):
        if request.pin is not None:
            if request.pin not in index:
                continue  # pinned to a node that is not here: unplaceable
            pins[i] = index[request.pin]
        elif request.prefer is not None and request.prefer in index:
            prefs[i] = index[request.prefer]
        todo.append(i)
    result, _ = place_lists(
        [[float(r.demand.get(k, 0.0)) for k in dims] for r in requests],
        [[max(float(n.free.get(k, 0.0)), 0.0) for k in dims] for n in nodes],
        [[float(n.capacity.get(k, 0.0)) for k in dims] for n in nodes],
        todo,
        pins,
        prefs,
        POLICIES.index(policy),
    )
    return [nodes[n].name if n >= 0 else None for n in result]


def order(
    priority: Sequence[int],
    consumers: Sequence[Sequence[int]],
    estimate: Sequence[float],
    size: Sequence[float],
    backend: str | None = None,
) -> tuple[list[int], list[float]]:
    """(task indices by priority, upward rank, size, index; upward rank per task)."""
    n_tasks = len(consumers)
    for name, seq in (("priority", priority), ("estimate", estimate), ("size", size)):
        if len(seq) != n_tasks:
            raise ValueError(f"{name} has {len(seq)} entries but consumers has {n_tasks}")
    for p in priority:
        if isinstance(p, bool) or not _is_integer(p):
            raise ValueError(f"priority {p!r} is not an integer")
        if not -(2**63) <= int(p) < 2**63:
            raise ValueError(f"priority {p} does not fit in 64 bits")
    if backend is None and (
        n_tasks <= SMALL_BATCH or (n_tasks <= PY_ORDER_MAX and "numpy" not in sys.modules)
    ):
        small = _order_small(priority, consumers, estimate, size)
        if small is not None:
            return small
    import numpy as np

    core = _module(backend)
    lengths = np.fromiter((len(c) for c in consumers), dtype=np.int64, count=n_tasks)
    indptr = np.zeros(n_tasks + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    indices = np.fromiter(
        (c for cs in consumers for c in cs), dtype=np.int64, count=int(indptr[-1])
    )
    try:
        task_order, ranks = core.order_tasks(
            np.array(priority, dtype=np.int64), indptr, indices, estimate, size
        )
    except CycleError as exc:
        raise ValidationError("cycle", None, str(exc)) from exc
    return task_order.tolist(), ranks.tolist()


def _is_integer(p: object) -> bool:
    if isinstance(p, int):
        return True
    if type(p).__module__ == "numpy":  # numpy is loaded if the caller holds a numpy integer
        import numpy as np

        return isinstance(p, np.integer)
    return False


def _order_small(
    priority: Sequence[int],
    consumers: Sequence[Sequence[int]],
    estimate: Sequence[float],
    size: Sequence[float],
) -> tuple[list[int], list[float]] | None:
    """``order`` in plain Python for a small graph: the same ranks (the same Kahn pass and float
    additions as ``_core/binpack_py.py``) and the same sort key. None when the input is anything but
    well-formed (a consumer index out of range, a non-finite number, a cycle): the core then raises
    its usual error."""
    n_tasks = len(consumers)
    try:
        est = [float(e) for e in estimate]
        size_l = [float(x) for x in size]
        prio = [int(p) for p in priority]
    except (TypeError, ValueError):
        return None
    if not all(math.isfinite(x) for x in est) or not all(math.isfinite(x) for x in size_l):
        return None
    for cs in consumers:
        for c in cs:
            if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < n_tasks:
                return None
    rank, remaining = upward_ranks_lists(consumers, est)
    if any(remaining):
        return None
    idx = sorted(range(n_tasks), key=lambda i: (-prio[i], -rank[i], -size_l[i], i))
    return idx, rank


def task_sizes(demands: Sequence[Mapping[str, float]], nodes: Sequence[NodeView]) -> list[float]:
    """Size of each demand for ``order``: sum over kinds of demand / largest capacity of that kind.

    The same normalisation the core uses for its node keys (kinds no node has count 0).
    """
    dims = resources.kinds(list(demands) + [n.capacity for n in nodes])
    top = {k: max((float(n.capacity.get(k, 0.0)) for n in nodes), default=0.0) for k in dims}
    return [sum(float(d.get(k, 0.0)) / top[k] for k in dims if top[k] > 0.0) for d in demands]


def fits_some_capacity(demand: dict[str, float], nodes: Sequence[NodeView]) -> bool:
    """True if some node's *capacity* (idle) holds demand: used for Unschedulable."""
    return any(resources.fits(demand, node.capacity, EPS) for node in nodes)


def largest_node(demand: dict[str, float], nodes: Sequence[NodeView]) -> NodeView | None:
    """The node whose capacity comes closest to holding ``demand`` (None when there are no nodes).

    Closeness is the smallest capacity/demand ratio over the demanded kinds (>= 1 means it fits);
    with no positive demand, the node with the largest total capacity normalised per kind. Ties go
    to the first node. Meant for the ``Unschedulable`` message ("the largest node has ...").
    """
    if not nodes:
        return None
    wanted = {k: float(v) for k, v in demand.items() if v > 0}
    if wanted:

        def closeness(node: NodeView) -> float:
            return min(float(node.capacity.get(k, 0.0)) / v for k, v in wanted.items())

    else:
        dims = resources.kinds(n.capacity for n in nodes)
        top = {k: max(float(n.capacity.get(k, 0.0)) for n in nodes) for k in dims}

        def closeness(node: NodeView) -> float:
            return sum(float(node.capacity.get(k, 0.0)) / top[k] for k in dims if top[k] > 0.0)

    best = nodes[0]
    best_score = closeness(best)
    for node in nodes[1:]:
        score = closeness(node)
        if score > best_score:
            best, best_score = node, score
    return best
