"""handoffd._core: the placement kernels, compiled (``binpack``) and the pure-Python twin (``binpack_py``).

Both modules export the same names (``BACKEND``, ``EPS``, ``POLICIES``, ``CycleError``,
``place_batch``, ``order_tasks``, ``upward_ranks``) with the same signatures and results. Choose one
through ``handoffd.scheduler.placement``; importing this package loads neither.
"""

from ._consts import EPS, POLICIES, CycleError

__all__ = ["EPS", "POLICIES", "CycleError"]
