"""handoffd._core: the placement kernels and the one entry point to them (``handoffd._core.api``).

``api`` picks the backend once -- the compiled ``sched`` (over ``binpack``'s C kernels) or the
pure-Python twin ``sched_py`` -- and exposes the scheduler's kernels and the one tolerance ``EPS``.
``binpack`` / ``binpack_py`` are the array kernels (numpy in) for bulk callers and benchmarks.
Importing this package loads no backend and no numpy.
"""

from ._consts import EPS, POLICIES, CycleError

__all__ = ["EPS", "POLICIES", "CycleError"]
