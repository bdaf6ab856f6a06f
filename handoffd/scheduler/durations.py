# cython: annotation_typing=False
# (the annotations are for mypy; durations.pxd beside it gives the compiled build its C types)
"""What the owner has learned of how long tasks run: an EWMA per function and per cost shape.

Pure state (no clock, no I/O). Every successful attempt reports the seconds it ran in its worker
(``TaskReport.duration``); ``observe`` folds it into two moving averages: one per function (its id
and cost shape; a run that loops over the same DAG reuses its ids) and one per cost shape (what a
function never seen before is guessed to take, when tasks of its shape have run). ``estimate`` is
the function's average when known, else its shape's, else ``UNKNOWN`` (-1): the placement
treats an unknown duration as long, so only work known to be short is queued ahead of a node.

``share`` and ``charge`` turn an estimate into the *work* a task brings a node: the seconds it
runs times the share of the node it takes (its largest demand / capacity ratio), so a node's
summed work is about how long it needs to drain what it was given at full parallelism.

The averages are keyed by strings (``shape_key``, ``function_key``), not by ``(function, shape)``
tuples: a str caches its hash and a tuple does not, and a run of distinct functions (W1: 10,000
ids past the 4,096 kept) rehashed the nested tuple on every observe, eviction, estimate and
charge. A task record holds its keys (``TaskRecord.shape_key``/``duration_key``), built once;
the ``*_task`` methods read them.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ALPHA",
    "MAX_KEYS",
    "UNKNOWN",
    "UNKNOWN_CHARGE",
    "Durations",
    "function_key",
    "shape_key",
    "share",
]

ALPHA = 0.3  # weight of the newest attempt in the moving averages
MAX_KEYS = 4096  # functions remembered; the oldest learned is forgotten first
UNKNOWN = -1.0
#: The seconds charged to a node for a task of unknown duration: long enough that nothing is
#: queued behind it (any budget of queued work is a few ms).
UNKNOWN_CHARGE = 1.0

Shape = tuple[tuple[str, float], ...]

# How many keys an order has taken off its head before it is compacted (when they are half).
_COMPACT = 64

# Names of the shapes seen (``shape_key``), cleared when it grows past this: a name is a pure
# function of the shape, so a cleared one is rebuilt the same.
_NAMES_LIMIT = 4096
_names: dict[Shape, str] = {}


def shape_key(shape: Shape) -> str:
    """The key of a cost shape: its repr, quantities as floats (``0 == 0.0 == -0.0`` as in the
    tuples it stands for). A complete tuple literal, so no key is a prefix of another."""
    name = _names.get(shape)
    if name is None:
        if len(_names) >= _NAMES_LIMIT:
            _names.clear()
        # (a list comprehension: a compiled cpdef function holds no closure)
        name = repr(tuple([(kind, float(qty) + 0.0) for kind, qty in shape]))
        _names[shape] = name
    return name


def function_key(function: str, shape: Shape) -> str:
    """The key of a function of a shape: the shape's key, then the function id."""
    return shape_key(shape) + function


def share(cost: dict[str, float], capacity: dict[str, float]) -> float:
    """The share of a node a task takes: its largest demand / capacity ratio (0 for no cost).
    Both are dicts (a spec's cost, a node's capacity): compiled, the capacity's look-up is the
    dict's own and the ratios C doubles, not a method call and two float objects a kind."""
    most = 0.0
    for kind, qty in cost.items():
        cap = capacity.get(kind, 0.0)
        if qty > 0.0 and cap > 0.0 and qty / cap > most:
            most = qty / cap
    return most


class Durations:
    def __init__(self, *, alpha: float = ALPHA, max_keys: int = MAX_KEYS) -> None:
        self.alpha = alpha
        self.max_keys = max_keys
        self.by_function: dict[str, float] = {}  # by ``function_key``
        self.by_shape: dict[str, float] = {}  # by ``shape_key``
        # Their keys in the order they were learned (a key leaves only as the oldest): forgetting
        # by ``next(iter(dict))`` skipped the deleted slots at the dict's front, up to ~1,300 of
        # them per call once full (a run of 10,000 distinct functions: 1.3 us per observe). A
        # list read from its head (``_first_function``): a deque's left pop and its append were
        # two methods looked up and called a key learned once full (each of W1's keys).
        self._function_order: list[str | None] = []
        self._function_head = 0
        self._shape_order: list[str | None] = []
        self._shape_head = 0

    def function_order(self) -> list[str]:
        """The function keys in the order they were learned (the oldest first)."""
        return self._function_order[self._function_head :]  # type: ignore[return-value]

    def shape_order(self) -> list[str]:
        """The shape keys in the order they were learned (the oldest first)."""
        return self._shape_order[self._shape_head :]  # type: ignore[return-value]

    def _first_function(self) -> str:
        """The function key learned the longest ago, taken off its order."""
        order = self._function_order
        head = self._function_head
        key = order[head]
        order[head] = None
        head += 1
        if head >= _COMPACT and head + head >= len(order):  # (amortized: once a half)
            del order[:head]
            head = 0
        self._function_head = head
        return key  # type: ignore[return-value]

    def _first_shape(self) -> str:
        """The shape key learned the longest ago, taken off its order."""
        order = self._shape_order
        head = self._shape_head
        key = order[head]
        order[head] = None
        head += 1
        if head >= _COMPACT and head + head >= len(order):
            del order[:head]
            head = 0
        self._shape_head = head
        return key  # type: ignore[return-value]

    def observe(self, function: str, shape: Shape, seconds: float) -> None:
        """One attempt of ``function`` (cost ``shape``) ran ``seconds``; negative: not measured."""
        self.observe_keys(function_key(function, shape), shape_key(shape), seconds)

    def observe_task(self, rec: Any, seconds: float) -> None:
        """``observe`` of an attempt of the task record ``rec`` (its keys built already)."""
        self.observe_keys(rec.duration_key, rec.shape_key, seconds)

    def observe_keys(self, key: str, shape: str, seconds: float) -> None:
        if not seconds >= 0.0:  # (NaN too)
            return
        old = self.by_function.get(key)
        if old is None:
            if len(self.by_function) >= self.max_keys:
                del self.by_function[self._first_function()]
            self.by_function[key] = seconds
            self._function_order.append(key)
        else:
            self.by_function[key] = old + self.alpha * (seconds - old)
        old = self.by_shape.get(shape)
        if old is None:
            if len(self.by_shape) >= self.max_keys:
                del self.by_shape[self._first_shape()]
            self.by_shape[shape] = seconds
            self._shape_order.append(shape)
        else:
            self.by_shape[shape] = old + self.alpha * (seconds - old)

    def observe_block(self, keys: list[str], shape: str, secs: list[float]) -> None:
        """``observe_keys(keys[i], shape, secs[i])`` for each ``i`` in order (a success table's
        rows of one cost shape): each function's average as one by one, the shape's carried in
        one local and stored once at the end (the same steps: nothing reads it in between, and
        a key is only inserted, so only evicted, at its first step)."""
        by_function = self.by_function
        alpha = self.alpha
        have = False  # (``mean`` holds the shape's average)
        mean = 0.0
        for i in range(len(keys)):
            seconds = secs[i]
            if not seconds >= 0.0:  # (NaN too)
                continue
            key = keys[i]
            old = by_function.get(key)
            if old is None:
                if len(by_function) >= self.max_keys:
                    del by_function[self._first_function()]
                by_function[key] = seconds
                self._function_order.append(key)
            else:
                by_function[key] = old + alpha * (seconds - old)
            if have:
                mean = mean + alpha * (seconds - mean)
                continue
            have = True
            old = self.by_shape.get(shape)
            if old is None:
                if len(self.by_shape) >= self.max_keys:
                    del self.by_shape[self._first_shape()]
                self.by_shape[shape] = seconds
                self._shape_order.append(shape)
                mean = seconds
            else:
                mean = old + alpha * (seconds - old)
        if have:
            self.by_shape[shape] = mean

    def estimate(self, function: str, shape: Shape) -> float:
        """Expected seconds of one attempt; ``UNKNOWN`` (-1) when nothing of it was learned."""
        return self.estimate_keys(function_key(function, shape), shape_key(shape))

    def estimate_task(self, rec: Any) -> float:
        """``estimate`` of an attempt of the task record ``rec``."""
        return self.estimate_keys(rec.duration_key, rec.shape_key)

    def estimate_keys(self, key: str, shape: str) -> float:
        known = self.by_function.get(key)
        if known is not None:
            return known
        return self.by_shape.get(shape, UNKNOWN)

    def charge(
        self, function: str, shape: Shape, cost: dict[str, float], capacity: dict[str, float]
    ) -> float:
        """The work (seconds at full parallelism) a task brings a node of ``capacity``."""
        seconds = self.estimate_keys(function_key(function, shape), shape_key(shape))
        if seconds < 0.0:
            seconds = UNKNOWN_CHARGE
        return seconds * share(cost, capacity)

    def charge_task(self, rec: Any, capacity: dict[str, float]) -> float:
        """``charge`` of the task record ``rec`` (its spec's cost)."""
        return self.charge_keys(rec.duration_key, rec.shape_key, rec.spec.cost, capacity)

    def charge_keys(
        self, key: str, shape: str, cost: dict[str, float], capacity: dict[str, float]
    ) -> float:
        seconds = self.estimate_keys(key, shape)
        if seconds < 0.0:
            seconds = UNKNOWN_CHARGE
        return seconds * share(cost, capacity)
