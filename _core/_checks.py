"""Input validation of the array kernels (``place_batch``, ``order_tasks``, ``upward_ranks``),
shared by the compiled core and its Python twin; it needs numpy, so the kernels import it on their
first array call.

Both backends call these before touching the data, so bad input is a ValueError that says what is
wrong (which array, which index, which value) instead of a crash inside a nogil loop, and both
backends reject exactly the same inputs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _consts
from ._consts import CycleError, policy_code


def _float_matrix(name: str, value: Any, *, writable: bool = False) -> np.ndarray:
    if writable:
        # Updated in place: a silent copy would lose the caller's updates, so demand the exact type.
        if not isinstance(value, np.ndarray) or value.dtype != np.float64:
            raise ValueError(f"{name} must be a float64 numpy array (it is updated in place)")
        if not value.flags.c_contiguous or not value.flags.writeable:
            raise ValueError(f"{name} must be C-contiguous and writeable (it is updated in place)")
        arr = value
    else:
        try:
            arr = np.ascontiguousarray(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a 2-D array of numbers: {exc}") from None
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {arr.shape}")
    return arr


def _check_finite(name: str, arr: np.ndarray, *, non_negative: bool) -> None:
    bad = ~np.isfinite(arr)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name}{list(where)} = {float(arr[where])!r} is not a finite number")
    if non_negative:
        neg = arr < 0
        if neg.any():
            where = tuple(int(i) for i in np.argwhere(neg)[0])
            raise ValueError(
                f"{name}{list(where)} = {float(arr[where])!r} is negative; quantities are >= 0"
            )


def _int_vector(name: str, value: Any, length: int | None = None) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name} holds values beyond int64")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if length is not None and arr.shape[0] != length:
        raise ValueError(f"{name} has length {arr.shape[0]}, expected {length}")
    return arr


def _check_range(name: str, arr: np.ndarray, low: int, high: int, meaning: str) -> None:
    """Every value must lie in [low, high)."""
    if arr.size == 0:
        return
    bad = (arr < low) | (arr >= high)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"{name}[{i}] = {int(arr[i])} is out of range: {meaning}")


def check_place(
    demand: Any,
    free: Any,
    capacity: Any,
    order: Any,
    pinned: Any,
    preferred: Any,
    policy: str,
    out: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, np.ndarray]:
    """Validate place_batch's arguments; return them as contiguous arrays of the kernel's types."""
    code = policy_code(policy)
    demand_a = _float_matrix("demand", demand)
    free_a = _float_matrix("free", free, writable=True)
    capacity_a = _float_matrix("capacity", capacity)
    n_tasks, n_dims = demand_a.shape
    n_nodes = free_a.shape[0]
    if free_a.shape[1] != n_dims:
        raise ValueError(
            f"free has {free_a.shape[1]} resource dims but demand has {n_dims} "
            f"(free {free_a.shape}, demand {demand_a.shape})"
        )
    if capacity_a.shape != free_a.shape:
        raise ValueError(f"capacity has shape {capacity_a.shape}, free has {free_a.shape}")
    _check_finite("demand", demand_a, non_negative=True)
    _check_finite("free", free_a, non_negative=True)
    _check_finite("capacity", capacity_a, non_negative=True)
    order_a = _int_vector("order", order)
    _check_range("order", order_a, 0, n_tasks, f"task indices are 0..{n_tasks - 1}")
    if order_a.size and int(np.bincount(order_a, minlength=n_tasks).max()) > 1:
        dup = int(np.argmax(np.bincount(order_a, minlength=n_tasks)))
        raise ValueError(f"order lists task {dup} more than once")
    pinned_a = _int_vector("pinned", pinned, n_tasks)
    _check_range("pinned", pinned_a, -1, n_nodes, f"-1 (any node) or a node index 0..{n_nodes - 1}")
    preferred_a = _int_vector("preferred", preferred, n_tasks)
    _check_range(
        "preferred", preferred_a, -1, n_nodes, f"-1 (none) or a node index 0..{n_nodes - 1}"
    )
    if out is None:
        out_a = np.empty(n_tasks, dtype=np.int64)
    else:
        if not isinstance(out, np.ndarray) or out.dtype != np.int64 or out.ndim != 1:
            raise ValueError("out must be a 1-D int64 numpy array")
        if out.shape[0] != n_tasks or not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError(f"out must be C-contiguous, writeable and of length {n_tasks}")
        out_a = out
    return demand_a, free_a, capacity_a, order_a, pinned_a, preferred_a, code, out_a


def check_graph(
    indptr: Any, indices: Any, estimate: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate a CSR consumers graph and per-task estimates; return the kernel's arrays."""
    estimate_a = np.ascontiguousarray(estimate, dtype=np.float64)
    if estimate_a.ndim != 1:
        raise ValueError(f"estimate must be 1-D, got shape {estimate_a.shape}")
    n_tasks = estimate_a.shape[0]
    _check_finite("estimate", estimate_a, non_negative=True)
    indptr_a = _int_vector("indptr", indptr, n_tasks + 1)
    indices_a = _int_vector("indices", indices)
    if indptr_a[0] != 0:
        raise ValueError(f"indptr[0] = {int(indptr_a[0])}, must be 0")
    steps = np.diff(indptr_a)
    if steps.size and (steps < 0).any():
        i = int(np.argmax(steps < 0))
        raise ValueError(f"indptr decreases at {i + 1}: indptr must be non-decreasing")
    if indptr_a[-1] != indices_a.shape[0]:
        raise ValueError(
            f"indptr[-1] = {int(indptr_a[-1])} but indices has {indices_a.shape[0]} entries"
        )
    _check_range("indices", indices_a, 0, n_tasks, f"consumer task indices are 0..{n_tasks - 1}")
    return indptr_a, indices_a, estimate_a


def check_order_keys(priority: Any, size: Any, n_tasks: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate the per-task sort keys of the ordering kernel."""
    priority_a = _int_vector("priority", priority, n_tasks)
    size_a = np.ascontiguousarray(size, dtype=np.float64)
    if size_a.ndim != 1 or size_a.shape[0] != n_tasks:
        raise ValueError(f"size must be 1-D of length {n_tasks}, got shape {size_a.shape}")
    _check_finite("size", size_a, non_negative=False)
    return priority_a, size_a


def cycle_error(remaining: np.ndarray) -> CycleError:
    """Build the error for a graph where the tasks with remaining > 0 lie on or behind a cycle."""
    return _consts.cycle_error(np.flatnonzero(remaining > 0).tolist())
