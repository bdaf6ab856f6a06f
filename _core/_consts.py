"""What both placement backends share, with no numpy import (so ``handoffd._core``, the scheduler
and a daemon load without numpy): the policies, the one tolerance, the resource dims' order, the
error type and the wording of the errors both backends raise for the same bad input."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

#: Placement policies, in the order of their integer codes in the kernels.
POLICIES: tuple[str, ...] = ("binpack", "spread", "first_fit")
BINPACK, SPREAD, FIRST_FIT = 0, 1, 2

#: The one tolerance of every "does it fit" test (``free + EPS >= demand``): the owner's view,
#: both backends' kernels and the executing node's ledger use this constant and nothing else, so
#: they cannot disagree about what fits. Absolute, and large enough to absorb the rounding of
#: thousands of claims and releases on memory in MB (~1e6, where one ulp is ~1e-10); a positive
#: quantity at or below it is refused by ``resources.parse`` (it would fit anywhere).
EPS = 1e-6

#: The kernels whose decisions are counted per backend (``handoffd._core.api.decisions``).
KERNELS: tuple[str, ...] = ("place", "order", "window", "fits", "prefer", "take")
PLACE, ORDER, WINDOW, FITS, PREFER, TAKE = 0, 1, 2, 3, 4, 5

#: The kinds every node reports, first in this order in the dense rows; custom kinds follow sorted.
STANDARD_KINDS: tuple[str, ...] = ("cpu", "memory", "gpu")


class CycleError(ValueError):
    """The consumers graph given to the ordering kernel is not a DAG."""


def policy_code(policy: str) -> int:
    """A policy name's kernel code; an unknown name raises ValueError naming the valid ones."""
    try:
        return POLICIES.index(policy)
    except ValueError:
        raise ValueError(
            f"unknown placement policy {policy!r}; valid policies are {', '.join(POLICIES)}"
        ) from None


def kinds(maps: Iterable[Mapping[str, object]]) -> list[str]:
    """All kinds present, standard ones first, then custom ones sorted: the dims of the dense rows.
    The order is part of the result (binpack sums its key over the dims in this order)."""
    seen: set[str] = set().union(*maps)  # (one call: 3x faster than an update per map)
    custom = sorted(seen.difference(STANDARD_KINDS))
    return [k for k in STANDARD_KINDS if k in seen] + custom


def quantity_error(what: str, i: int, kind: object, value: object, problem: str) -> ValueError:
    """The error for entry ``kind`` of the ``i``-th map of ``what`` (demand, free, capacity)."""
    return ValueError(f"{what}[{i}]: {kind} = {value!r} {problem}")


def item_error(name: str, i: int, value: object, problem: str) -> ValueError:
    """The error for entry ``i`` of the sequence ``name`` (priority, estimate, size, pins, ...)."""
    return ValueError(f"{name}[{i}] = {value!r} {problem}")


def cycle_error(stuck: list[int]) -> CycleError:
    """The error for a graph where the tasks ``stuck`` lie on or behind a cycle."""
    return CycleError(
        f"the consumers graph has a cycle: {len(stuck)} task(s) never become ready, "
        f"e.g. task(s) {stuck[:5]}"
    )


def let_others_run() -> None:
    """Nothing, in bytecode. Compiled loops that run long in a thread (the ordering kernel, the
    scheduler's run building: ``scheduler.run_books.let_go``) call it every few thousand items,
    since compiled code never lets the GIL go by itself: entering a Python function checks for a
    drop request from a thread that has waited a switch interval for the GIL (the event loop) and
    hands it over then, only then. Releasing and retaking it (``with nogil: pass``) wakes that
    thread without letting it in (the holder retakes first) and restarts its timed wait, so it
    never asks: the upload thread held the GIL 70-150 ms at a time ordering a 1,000,000-task
    chain. ``os.sched_yield`` let it go every time and gave the CPU away too."""
