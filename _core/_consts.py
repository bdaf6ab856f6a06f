"""Constants and the error type shared by both placement backends, with no numpy import (so
``handoffd._core`` and the scheduler can be imported without loading numpy; it loads on the first
placement or ordering call that needs arrays)."""

from __future__ import annotations

#: Placement policies, in the order of their integer codes in the kernels.
POLICIES: tuple[str, ...] = ("binpack", "spread", "first_fit")
BINPACK, SPREAD, FIRST_FIT = 0, 1, 2
#: Absolute tolerance of the feasibility test (free + EPS >= demand), as in handoffd.resources.fits.
EPS = 1e-9


class CycleError(ValueError):
    """The consumers graph given to the ordering kernel is not a DAG."""
