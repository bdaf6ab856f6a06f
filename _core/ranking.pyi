# Type stubs for the compiled ordering kernel; sched_py.py's ``order`` has the same signature.
from collections.abc import Sequence

def ordered() -> int: ...
def order(
    priority: Sequence[int],
    consumers: Sequence[Sequence[int]],
    estimate: Sequence[float],
    size: Sequence[float],
) -> tuple[list[int], list[float]]: ...
