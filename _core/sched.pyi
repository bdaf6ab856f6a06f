# Type stubs for the compiled scheduler-facing kernels; sched_py.py has the same signatures.
from collections.abc import Mapping, Sequence

BACKEND: str

def decisions() -> dict[str, int]: ...
def place(
    demands: Sequence[Mapping[str, float]],
    frees: Sequence[Mapping[str, float]],
    capacities: Sequence[Mapping[str, float]],
    pins: Sequence[int],
    prefs: Sequence[int],
    policy: str = "binpack",
    follow: Sequence[int] | None = None,
) -> list[int]: ...
def place_one(
    need: Mapping[str, float],
    free: Mapping[str, Mapping[str, float]],
    capacities: Sequence[Mapping[str, float]],
    pin: str | None,
    pref: str | None,
    policy: str = "binpack",
) -> str | None: ...
def order(
    priority: Sequence[int],
    consumers: Sequence[Sequence[int]],
    estimate: Sequence[float],
    size: Sequence[float],
) -> tuple[list[int], list[float]]: ...
def fits(demand: Mapping[str, float], free: Mapping[str, float]) -> bool: ...
def prefer(held: Mapping[str, float]) -> str | None: ...
def take(free: Mapping[str, float], demands: Sequence[Mapping[str, float]]) -> list[int]: ...
def below_low_water(
    capacity: Mapping[str, float], load: Mapping[str, float], window: float, low_water: float
) -> bool: ...

class WindowFill:
    @property
    def left(self) -> int: ...
    def __init__(
        self,
        capacities: Sequence[Mapping[str, float]],
        loads: Sequence[Mapping[str, float]],
        window: float,
        low_water: float | None = None,
        budgets: Sequence[float] | None = None,
    ) -> None: ...
    def pick(
        self, need: Mapping[str, float], pin: int, policy: str, seconds: float = 0.0
    ) -> int: ...
    def count(self, limit: int) -> int: ...
    def follow(self, n: int, seconds: Sequence[float] | None = None) -> int: ...

def window_fill(
    capacities: Sequence[Mapping[str, float]],
    loads: Sequence[Mapping[str, float]],
    window: float,
    low_water: float | None = None,
    budgets: Sequence[float] | None = None,
) -> WindowFill: ...
