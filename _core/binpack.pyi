# Type stubs for the compiled core; binpack_py.py has the same signatures (keep them in step).
import numpy as np
import numpy.typing as npt

from ._checks import CycleError as CycleError

BACKEND: str
EPS: float
POLICIES: tuple[str, ...]

def place_batch(
    demand: npt.ArrayLike,
    free: npt.NDArray[np.float64],
    capacity: npt.ArrayLike,
    order: npt.ArrayLike,
    pinned: npt.ArrayLike,
    preferred: npt.ArrayLike,
    policy: str = "binpack",
    out: npt.NDArray[np.int64] | None = None,
) -> tuple[npt.NDArray[np.int64], int]: ...
def upward_ranks(
    indptr: npt.ArrayLike, indices: npt.ArrayLike, estimate: npt.ArrayLike
) -> npt.NDArray[np.float64]: ...
def order_tasks(
    priority: npt.ArrayLike,
    indptr: npt.ArrayLike,
    indices: npt.ArrayLike,
    estimate: npt.ArrayLike,
    size: npt.ArrayLike,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]: ...
