"""The one placement entry point: picks the backend once and exposes every kernel the scheduler uses.

Backends: ``cython`` (the compiled ``sched`` module over ``binpack``'s C kernels) and ``python``
(``sched_py``, the pure-Python twin the tests hold the compiled one to). The choice is made once, when
this module is imported, from the environment:

  * ``HANDOFFD_CORE=python``: the twin. ``HANDOFFD_CORE=cython``: the compiled core, and an error
    (``CoreUnavailable``) when it cannot be imported.
  * Unset: the compiled core; when it cannot be imported, the twin with one warning, unless
    ``HANDOFFD_REQUIRE_CYTHON=1`` (CI and ``make``), where that is an error too.

The module's kernels (``place``, ``place_one``, ``order``, ``fits``, ``below_low_water``, ``window_fill``,
``prefer``, ``take``) are the chosen backend's functions themselves, bound here: a call costs no
extra frame. Each backend takes one algorithm for every batch size (the compiled one copies the dicts into C buffers, no numpy), so
nothing depends on the size of a batch or on what happens to be imported. ``kernels(name)`` gives a
named backend's kernels for tests and benchmarks that compare the two; ``decisions()`` the count of
decisions taken per kernel and backend, ``shares()`` their sum per backend (the daemon's stats).

``EPS`` is the one tolerance of "it fits", used by both backends, the owner and the ledger.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Protocol, cast

from ._consts import EPS, KERNELS, POLICIES, STANDARD_KINDS, CycleError, kinds

__all__ = [
    "BACKEND",
    "BACKENDS",
    "EPS",
    "KERNELS",
    "POLICIES",
    "STANDARD_KINDS",
    "CoreUnavailable",
    "CycleError",
    "Kernels",
    "WindowPass",
    "below_low_water",
    "closest",
    "decisions",
    "fits",
    "kernels",
    "kinds",
    "order",
    "place",
    "place_one",
    "prefer",
    "select",
    "shares",
    "take",
    "window_fill",
]

log = logging.getLogger("handoffd.core")

BACKENDS: tuple[str, ...] = ("cython", "python")
_MODULES = {"cython": "handoffd._core.sched", "python": "handoffd._core.sched_py"}


class CoreUnavailable(ImportError):
    """The compiled core was required (asked for by name, or HANDOFFD_REQUIRE_CYTHON=1) but cannot
    be imported."""


class WindowPass(Protocol):
    """One top-up pass over the nodes' dispatch windows (``sched_py.WindowFill``)."""

    @property
    def left(self) -> int: ...

    def pick(
        self, need: Mapping[str, float], pin: int, policy: str, seconds: float = ...
    ) -> int: ...

    def count(self, limit: int) -> int: ...

    def follow(self, n: int, seconds: Sequence[float] | None = ...) -> int: ...


class Kernels(Protocol):
    """What each backend module provides (``sched`` and ``sched_py``)."""

    BACKEND: str

    def place(
        self,
        demands: Sequence[Mapping[str, float]],
        frees: Sequence[Mapping[str, float]],
        capacities: Sequence[Mapping[str, float]],
        pins: Sequence[int],
        prefs: Sequence[int],
        policy: str = ...,
        follow: Sequence[int] | None = ...,
    ) -> list[int]: ...

    def place_one(
        self,
        need: Mapping[str, float],
        free: Mapping[str, Mapping[str, float]],
        capacities: Sequence[Mapping[str, float]],
        pin: str | None,
        pref: str | None,
        policy: str = ...,
    ) -> str | None: ...

    def order(
        self,
        priority: Sequence[int],
        consumers: Sequence[Sequence[int]],
        estimate: Sequence[float],
        size: Sequence[float],
    ) -> tuple[list[int], list[float]]: ...

    def fits(self, demand: Mapping[str, float], free: Mapping[str, float]) -> bool: ...

    def prefer(self, held: Mapping[str, float]) -> str | None: ...

    def take(
        self, free: Mapping[str, float], demands: Sequence[Mapping[str, float]]
    ) -> list[int]: ...

    def below_low_water(
        self,
        capacity: Mapping[str, float],
        load: Mapping[str, float],
        window: float,
        low_water: float,
    ) -> bool: ...

    def window_fill(
        self,
        capacities: Sequence[Mapping[str, float]],
        loads: Sequence[Mapping[str, float]],
        window: float,
        low_water: float | None = ...,
        budgets: Sequence[float] | None = ...,
    ) -> WindowPass: ...

    def decisions(self) -> dict[str, int]: ...


def _import(name: str, *, required: bool, why: str) -> ModuleType:
    try:
        return importlib.import_module(_MODULES[name])
    except ImportError as exc:
        if name == "python" or not required:
            raise
        raise CoreUnavailable(
            f"the compiled placement core (handoffd._core.sched) is required ({why}) but cannot "
            f"be imported ({exc}); rebuild it with `make build` (needs Cython and a C compiler) "
            f"or set HANDOFFD_CORE=python"
        ) from exc


def select(environ: Mapping[str, str] | None = None) -> Kernels:
    """The backend the environment asks for (see the module docstring); raises ValueError for an
    unknown HANDOFFD_CORE and CoreUnavailable when the compiled core is required but missing."""
    env = os.environ if environ is None else environ
    wanted = env.get("HANDOFFD_CORE") or None
    if wanted is not None and wanted not in _MODULES:
        raise ValueError(
            f"HANDOFFD_CORE={wanted!r}: valid core backends are {', '.join(map(repr, BACKENDS))}"
        )
    if wanted == "python":
        return cast(Kernels, _import("python", required=True, why=""))
    required = wanted == "cython" or env.get("HANDOFFD_REQUIRE_CYTHON", "0") == "1"
    why = "HANDOFFD_CORE=cython" if wanted == "cython" else "HANDOFFD_REQUIRE_CYTHON=1"
    try:
        return cast(Kernels, _import("cython", required=required, why=why))
    except CoreUnavailable:
        raise
    except ImportError as exc:
        log.warning(
            "compiled placement core not importable (%s); using the pure-Python twin, which is "
            "much slower. Rebuild it with `make build`.",
            exc,
        )
        return cast(Kernels, _import("python", required=True, why=""))


def kernels(backend: str | None = None) -> Kernels:
    """The chosen backend's kernels (``backend`` None), or the named one's ("cython", "python"),
    for tests and benchmarks that compare them; naming a missing compiled core is an error."""
    if backend is None:
        return _chosen
    if backend not in _MODULES:
        raise ValueError(
            f"backend={backend!r}: valid core backends are {', '.join(map(repr, BACKENDS))}"
        )
    return cast(Kernels, _import(backend, required=True, why=f"backend={backend!r}"))


def decisions() -> dict[tuple[str, str], int]:
    """(kernel, backend) -> decisions taken so far in this process: tasks placed or ordered, window
    picks and low-water tests, fits tests. Only backends loaded in this process appear."""
    out: dict[tuple[str, str], int] = {}
    for backend, module in _MODULES.items():
        loaded = sys.modules.get(module)
        if loaded is not None:
            for kernel, count in cast(Kernels, loaded).decisions().items():
                out[(kernel, backend)] = count
    return out


def shares(counts: Mapping[tuple[str, str], int] | None = None) -> dict[str, int]:
    """Decisions per backend, summed over the kernels (``decisions()`` unless ``counts`` given):
    {"cython": n, "python": m}, both always present."""
    out = dict.fromkeys(BACKENDS, 0)
    for (_, backend), n in (decisions() if counts is None else counts).items():
        out[backend] = out.get(backend, 0) + n
    return out


def closest(demand: Mapping[str, float], capacities: Sequence[Mapping[str, float]]) -> int:
    """The node (index) whose capacity comes closest to holding ``demand``; -1 without nodes.

    Closeness is the smallest capacity/demand ratio over the demanded kinds (>= 1: it fits); with
    no positive demand, the largest capacity normalised per kind by the largest of the nodes. Ties
    go to the first node. Not a placement decision: it names a node in an ``Unschedulable`` message.
    """
    if not capacities:
        return -1
    wanted = {k: float(v) for k, v in demand.items() if v > 0}
    top: dict[str, float] = {}
    if not wanted:
        for k in kinds(capacities):
            top[k] = max(float(c.get(k, 0.0)) for c in capacities)

    def closeness(capacity: Mapping[str, float]) -> float:
        if wanted:
            return min(float(capacity.get(k, 0.0)) / v for k, v in wanted.items())
        return sum(float(capacity.get(k, 0.0)) / q for k, q in top.items() if q > 0.0)

    best, best_score = 0, closeness(capacities[0])
    for i in range(1, len(capacities)):
        score = closeness(capacities[i])
        if score > best_score:
            best, best_score = i, score
    return best


_chosen: Kernels = select()
#: The backend chosen for this process: "cython" or "python".
BACKEND: str = _chosen.BACKEND
place = _chosen.place
place_one = _chosen.place_one
order = _chosen.order
fits = _chosen.fits
below_low_water = _chosen.below_low_water
window_fill = _chosen.window_fill
prefer = _chosen.prefer
take = _chosen.take
