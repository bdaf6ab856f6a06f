"""Pure-Python twin of the scheduler-facing kernels (``sched.pyx``): same names, same answers.

These are the kernels the owner calls, over what it holds: resource dicts (kind -> quantity) and
plain lists, never numpy. ``handoffd._core.api`` picks this module or the compiled one once; the
tests run both on the same random input and compare every answer, including the errors.

  * ``place``: a batch of demands on nodes (free, capacity), with pins and preferences, by policy.
    The dicts become dense rows over ``kinds()`` (standard kinds first, then custom ones sorted; a
    kind a map lacks is 0; free below zero counts as 0), placed by ``_place.place_lists`` (the naive
    scan; the compiled module runs ``binpack.pyx``'s kernel, which gives the same answer).
  * ``order``: the run's task order (priority, upward rank, size, index) and the upward ranks.
  * ``window_fill``: one top-up pass over the nodes' dispatch windows (``WindowFill.pick`` per task).
  * ``below_low_water``: whether a node's window is due for a top-up.
  * ``fits``: ``free + EPS >= demand`` in every demanded kind, the one test of "it fits".
  * ``prefer``: the node a task's inputs are on most (locality), from bytes held per node.
  * ``take``: which of a list of demands a node's free resources take, in order (the rebalance
    choice of queued work to move to a node that has room).

Every float operation happens in the same order as in ``sched.pyx`` so both agree bit for bit.
Each module counts its decisions per kernel (``decisions()``): tasks placed or ordered, window picks
and low-water tests, fits tests.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from operator import index as as_index

from ._consts import (
    EPS,
    FIRST_FIT,
    FITS,
    KERNELS,
    ORDER,
    PLACE,
    PREFER,
    SPREAD,
    TAKE,
    WINDOW,
    cycle_error,
    item_error,
    kinds,
    policy_code,
    quantity_error,
)
from ._place import place_lists
from ._ranks import upward_ranks_lists

__all__ = [
    "BACKEND",
    "WindowFill",
    "below_low_water",
    "decisions",
    "fits",
    "order",
    "place",
    "place_one",
    "prefer",
    "take",
    "window_fill",
]

BACKEND = "python"
_counts = [0] * len(KERNELS)
INT64 = 2**63


def decisions() -> dict[str, int]:
    """Decisions taken by this backend so far, per kernel."""
    return dict(zip(KERNELS, _counts, strict=True))


def _quantity(value: object, what: str, i: int, kind: object) -> float:
    if type(value) is float:
        q = value
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise quantity_error(what, i, kind, value, "is not a number")
    else:
        try:
            q = float(value)
        except OverflowError:
            raise quantity_error(what, i, kind, value, "is not a finite number") from None
    if not math.isfinite(q):
        raise quantity_error(what, i, kind, value, "is not a finite number")
    return q


def _rows(
    maps: Iterable[Mapping[str, object]], index: dict[str, int], what: str, clamp: bool
) -> list[list[float]]:
    """Dense rows; a negative quantity is an error, or 0 with ``clamp`` (a ledger briefly below
    zero, as gossip can report when a claim raced a release, is a full node)."""
    rows = []
    n_dims = len(index)
    for i, m in enumerate(maps):
        row = [0.0] * n_dims
        for kind, value in m.items():
            q = _quantity(value, what, i, kind)
            if q < 0.0:
                if not clamp:
                    raise quantity_error(what, i, kind, value, "is negative; quantities are >= 0")
                q = 0.0
            row[index[kind]] = q
        rows.append(row)
    return rows


def _integer(value: object, name: str, i: int) -> int:
    if isinstance(value, bool):
        raise item_error(name, i, value, "is not an integer")
    try:
        return as_index(value)  # type: ignore[arg-type]
    except TypeError:
        raise item_error(name, i, value, "is not an integer") from None


def _node_indices(values: Sequence[object], n_nodes: int, name: str) -> list[int]:
    out = []
    for i, value in enumerate(values):
        v = _integer(value, name, i)
        if not -1 <= v < n_nodes:
            raise item_error(
                name, i, v, f"is out of range: -1 (none) or a node index 0..{n_nodes - 1}"
            )
        out.append(v)
    return out


def place(
    demands: Sequence[Mapping[str, float]],
    frees: Sequence[Mapping[str, float]],
    capacities: Sequence[Mapping[str, float]],
    pins: Sequence[int],
    prefs: Sequence[int],
    policy: str = "binpack",
    follow: Sequence[int] | None = None,
) -> list[int]:
    """Node index per demand (-1: none), placed in list order, each consuming free as it goes.
    ``pins[t]``: the only node task t may go to (-1: any); ``prefs[t]``: a node it goes to when
    it fits there (-1: none), else the policy chooses. ``follow[t]`` (collocation): an earlier
    task whose node task t takes, consuming nothing (its leader's demand holds the group's cost;
    its own demand, pin and preference are not looked at); -1: placed itself."""
    code = policy_code(policy)
    n_tasks, n_nodes = len(demands), len(frees)
    if len(capacities) != n_nodes:
        raise ValueError(f"capacities has {len(capacities)} entries but frees has {n_nodes}")
    if len(pins) != n_tasks or len(prefs) != n_tasks:
        raise ValueError(
            f"pins and prefs need one entry per demand ({n_tasks}), got {len(pins)} and {len(prefs)}"
        )
    dims = kinds([*demands, *frees, *capacities])
    index = {kind: d for d, kind in enumerate(dims)}
    demand = _rows(demands, index, "demand", False)
    free = _rows(frees, index, "free", True)
    capacity = _rows(capacities, index, "capacity", False)
    pin = _node_indices(pins, n_nodes, "pins")
    pref = _node_indices(prefs, n_nodes, "prefs")
    leader = _followed(follow, n_tasks)
    todo = range(n_tasks) if leader is None else [t for t in range(n_tasks) if leader[t] < 0]
    result, _ = place_lists(demand, free, capacity, todo, pin, pref, code)
    if leader is not None:
        for t in range(n_tasks):
            if leader[t] >= 0:
                result[t] = result[leader[t]]
    _counts[PLACE] += n_tasks
    return result


def place_one(
    need: Mapping[str, float],
    free: Mapping[str, Mapping[str, float]],
    capacities: Sequence[Mapping[str, float]],
    pin: str | None,
    pref: str | None,
    policy: str = "binpack",
) -> str | None:
    """One task's node (None: none): ``place`` over the nodes of ``free`` (node name -> its free
    resources, in order; ``capacities``: theirs, by position) whose free ``fits`` ``need``, the
    task pinned to ``pin`` (None: any; a pin that is not such a node: None) or preferring
    ``pref`` (None: none; ignored when it is not such a node). The owner's one-task free pass
    (``ClusterView._place_one``) in one call: the same candidates, indices and answer as its
    ``fits`` and ``place`` calls."""
    if len(capacities) != len(free):
        raise ValueError(f"capacities has {len(capacities)} entries but free has {len(free)}")
    names: list[str] = []
    frees: list[Mapping[str, float]] = []
    caps: list[Mapping[str, float]] = []
    for (name, f), capacity in zip(free.items(), capacities, strict=True):
        if fits(need, f):
            names.append(name)
            frees.append(f)
            caps.append(capacity)
    if not names:
        return None
    if pin is not None:
        if pin not in names:
            return None
        at, before = names.index(pin), -1
    else:
        at, before = -1, names.index(pref) if pref is not None and pref in names else -1
    n = place([need], frees, caps, [at], [before], policy)[0]
    return names[n] if n >= 0 else None


def _followed(follow: Sequence[int] | None, n_tasks: int) -> list[int] | None:
    """``follow`` checked: an earlier task's index or -1 per task; None when nobody follows."""
    if follow is None:
        return None
    if len(follow) != n_tasks:
        raise ValueError(f"follow needs one entry per demand ({n_tasks}), got {len(follow)}")
    out = []
    for t, value in enumerate(follow):
        v = _integer(value, "follow", t)
        if not -1 <= v < t:
            raise item_error("follow", t, v, "is out of range: -1 (none) or an earlier task")
        out.append(v)
    return out if any(v >= 0 for v in out) else None


def _number(value: object, name: str, i: int, negative: bool) -> float:
    if type(value) is float:
        q = value
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise item_error(name, i, value, "is not a number")
    else:
        try:
            q = float(value)
        except OverflowError:
            raise item_error(name, i, value, "is not a finite number") from None
    if not math.isfinite(q):
        raise item_error(name, i, value, "is not a finite number")
    if q < 0.0 and not negative:
        raise item_error(name, i, value, "is negative")
    return q


def order(
    priority: Sequence[int],
    consumers: Sequence[Sequence[int]],
    estimate: Sequence[float],
    size: Sequence[float],
) -> tuple[list[int], list[float]]:
    """(task indices by priority desc, upward rank desc, size desc, index asc; rank per task).
    rank[t] = estimate[t] + max(rank[c] for c in consumers[t]) (0 without consumers); a cycle
    raises CycleError."""
    n = len(consumers)
    for name, seq in (("priority", priority), ("estimate", estimate), ("size", size)):
        if len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} entries but consumers has {n}")
    prio = []
    for i, p in enumerate(priority):
        v = _integer(p, "priority", i)
        if not -INT64 <= v < INT64:
            raise item_error("priority", i, v, "does not fit in 64 bits")
        prio.append(v)
    est = [_number(e, "estimate", i, False) for i, e in enumerate(estimate)]
    sizes = [_number(s, "size", i, True) for i, s in enumerate(size)]
    cons: list[list[int]] = []
    for t, cs in enumerate(consumers):
        row = []
        for j, c in enumerate(cs):
            v = _integer(c, f"consumers[{t}]", j)
            if not 0 <= v < n:
                raise item_error(
                    f"consumers[{t}]", j, v, f"is out of range: task indices are 0..{n - 1}"
                )
            row.append(v)
        cons.append(row)
    rank, remaining = upward_ranks_lists(cons, est)
    if any(remaining):
        raise cycle_error([t for t in range(n) if remaining[t] > 0])
    idx = sorted(range(n), key=lambda i: (-prio[i], -rank[i], -sizes[i], i))
    _counts[ORDER] += n
    return idx, rank


def fits(demand: Mapping[str, float], free: Mapping[str, float]) -> bool:
    """True when every kind ``demand`` asks for (> 0) is in ``free`` within ``EPS``. A plain
    loop: the owner calls this for every ready task it looks at."""
    _counts[FITS] += 1
    for kind, qty in demand.items():
        if qty > 0 and free.get(kind, 0.0) + EPS < qty:
            return False
    return True


def prefer(held: Mapping[str, float]) -> str | None:
    """The node (name) holding the most of a task's input (``held``: node -> bytes), where it
    goes when it fits (locality); ties go to the greatest name; None when ``held`` is empty."""
    _counts[PREFER] += 1
    best: str | None = None
    most = 0.0
    for i, (node, value) in enumerate(held.items()):
        if type(node) is not str:
            raise item_error("held", i, node, "is not a node name (str)")
        q = _number(value, "held", i, False)
        if best is None or q > most or (q == most and node > best):
            best, most = node, q
    return best


def take(free: Mapping[str, float], demands: Sequence[Mapping[str, float]]) -> list[int]:
    """Which ``demands`` (indices, in order) a node with ``free`` takes: each that fits what is
    left (``fits``) is taken and subtracted; the walk stops once nothing positive is left (above
    ``EPS``). Free below zero is allowed (a view net of unanswered dispatches)."""
    left: dict[str, float] = {}
    for kind, value in free.items():
        left[kind] = _quantity(value, "free", 0, kind)
    chosen: list[int] = []
    for i, demand in enumerate(demands):
        if not any(q > EPS for q in left.values()):
            break
        _counts[TAKE] += 1
        need = []
        ok = True
        for kind, value in demand.items():
            q = _quantity(value, "demand", i, kind)
            if q < 0.0:
                raise quantity_error("demand", i, kind, value, "is negative; quantities are >= 0")
            if q > 0.0:
                need.append((kind, q))
                if left.get(kind, 0.0) + EPS < q:
                    ok = False
        if ok:
            chosen.append(i)
            for kind, q in need:
                left[kind] = left.get(kind, 0.0) - q
    return chosen


def _below(capacity: Mapping[str, float], load: Mapping[str, float], limit: float) -> bool:
    for kind, q in capacity.items():
        if q > 0.0 and load.get(kind, 0.0) > q * limit + EPS:
            return False
    return True


def below_low_water(
    capacity: Mapping[str, float], load: Mapping[str, float], window: float, low_water: float
) -> bool:
    """Whether a node's outstanding demand ``load`` is at or below ``low_water`` x ``window`` x
    its capacity in every kind it has: its window is due for a top-up."""
    _counts[WINDOW] += 1
    return _below(capacity, load, window * low_water)


class WindowFill:
    """One top-up pass over the nodes' dispatch windows.

    A node's *room* in a kind it has is ``capacity x window - load`` (load: the outstanding demand
    already sent to it). A node takes part when it has room in some kind and (with ``low_water``)
    is at or below its low-water mark; ``left`` counts the nodes still taking part. ``pick``
    chooses a node for one task and takes the task's demand out of that node's room.

    ``budgets`` (one per node, or None: unbounded) bound the queued work by time: the seconds of
    expected work a node may still be given beyond what it runs. A node takes part only while its
    budget is above zero; a task picked there spends ``seconds`` x its share of the node (its
    largest demand / capacity ratio). With budgets, a task of unknown duration (``seconds`` < 0)
    is never picked: only work known to be short is queued ahead.
    """

    def __init__(
        self,
        capacities: Sequence[Mapping[str, float]],
        loads: Sequence[Mapping[str, float]],
        window: float,
        low_water: float | None = None,
        budgets: Sequence[float] | None = None,
    ) -> None:
        n_nodes = len(capacities)
        if len(loads) != n_nodes:
            raise ValueError(f"loads has {len(loads)} entries but capacities has {n_nodes}")
        if budgets is not None and len(budgets) != n_nodes:
            raise ValueError(f"budgets has {len(budgets)} entries but capacities has {n_nodes}")
        window = float(window)
        if not window > 0.0:
            raise ValueError(f"window = {window!r}: it must be > 0")
        self._budget: list[float] | None = None
        if budgets is not None:
            self._budget = [_number(b, "budgets", i, True) for i, b in enumerate(budgets)]
        dims = kinds(capacities)
        n_dims = len(dims)
        self._index = {kind: d for d, kind in enumerate(dims)}
        self._cap = _rows(capacities, self._index, "capacity", False)
        self._capw = [[c * window for c in row] for row in self._cap]
        self._top = [0.0] * n_dims
        for row in self._capw:
            for d in range(n_dims):
                if row[d] > self._top[d]:
                    self._top[d] = row[d]
        self._room: list[list[float]] = []
        self._open: list[bool] = []
        self.left = 0
        for n in range(n_nodes):
            load = loads[n]
            cap, capw = self._cap[n], self._capw[n]
            room = [0.0] * n_dims
            has_room = False
            for d in range(n_dims):
                if cap[d] > 0.0:
                    room[d] = capw[d] - float(load.get(dims[d], 0.0))
                    if room[d] > EPS:
                        has_room = True
            is_open = (
                has_room
                and (self._budget is None or self._budget[n] > 0.0)
                and (low_water is None or _below(capacities[n], load, window * low_water))
            )
            self._room.append(room)
            self._open.append(is_open)
            self.left += is_open
        # The last pick's node (-1: it chose none) and what it was asked: ``count``/``follow``.
        self._last = -1
        self._want: list[float] = []
        self._pin = -1
        self._code = 0
        self._secs = 0.0

    def pick(self, need: Mapping[str, float], pin: int, policy: str, seconds: float = 0.0) -> int:
        """The node (index) for a task needing ``need`` (-1: none), among the nodes taking part
        (``pin`` >= 0: only that one) where ``need`` fits both the room and the capacity;
        ``seconds``: its expected run time (< 0: unknown), spent from the node's budget.

        The first such node under ``first_fit``, for a pinned task or when one node is left;
        else binpack: the smallest sum over the node's kinds of room left / the largest window
        (capacity x window) of that kind (the node left fullest); spread: the largest mean over
        its kinds of room left / its own window (the node left least loaded, as a fraction).
        Ties go to the lowest index."""
        code = policy_code(policy)
        if not -1 <= pin < len(self._open):
            raise ValueError(
                f"pin = {pin!r}: -1 (any node) or a node index 0..{len(self._open) - 1}"
            )
        _counts[WINDOW] += 1
        secs = _number(seconds, "seconds", 0, True)
        self._last = -1
        if self._budget is not None and secs < 0.0:
            return -1  # unknown duration: not known to be short, never queued ahead
        n_dims = len(self._index)
        want = [0.0] * n_dims
        for kind, value in need.items():
            q = _quantity(value, "need", 0, kind)
            d = self._index.get(kind)
            if d is None:
                if q > EPS:
                    return -1  # a kind no node has
            else:
                want[d] = q
        chosen = self._choose(want, pin, code)
        if chosen >= 0:
            self._take(chosen, want, secs)
            self._last = chosen
            self._want = want
            self._pin = pin
            self._code = code
            self._secs = secs
        return chosen

    def count(self, limit: int) -> int:
        """How many tasks more of the last pick's need, pin and policy, each of its ``seconds``,
        the next picks would give the node it chose, one after another, up to ``limit`` (0: the
        last pick chose none). Nothing changes: an upper bound for a block's ``follow``."""
        last = self._last
        if last < 0:
            return 0
        room = list(self._room[last])
        budget = self._budget[last] if self._budget is not None else 0.0
        is_open = self._open[last]
        left = self.left
        k = 0
        while k < limit and self._choose(self._want, self._pin, self._code) == last:
            self._take(last, self._want, self._secs)
            k += 1
        self._room[last] = room
        if self._budget is not None:
            self._budget[last] = budget
        self._open[last] = is_open
        self.left = left
        return k

    def follow(self, n: int, seconds: Sequence[float] | None = None) -> int:
        """``pick`` for ``n`` tasks more of the last pick's need, pin and policy (the i-th's
        seconds ``seconds[i]``; None: the last pick's), in order, while each goes to the node
        the last pick chose: how many went there (the first that would not is not picked)."""
        last = self._last
        if last < 0:
            return 0
        k = 0
        while k < n:
            secs = self._secs if seconds is None else _number(seconds[k], "seconds", k, True)
            if self._budget is not None and secs < 0.0:
                break
            if self._choose(self._want, self._pin, self._code) != last:
                break
            _counts[WINDOW] += 1
            self._take(last, self._want, secs)
            k += 1
        return k

    def _choose(self, want: list[float], pin: int, code: int) -> int:
        """The node ``pick`` chooses for ``want`` (-1: none); nothing changes."""
        n_dims = len(want)
        first = code == FIRST_FIT or pin >= 0 or self.left == 1
        chosen = -1
        best = 0.0
        for n in range(len(self._open)):
            if (pin >= 0 and n != pin) or not self._open[n]:
                continue
            room, cap = self._room[n], self._cap[n]
            ok = True
            for d in range(n_dims):
                w = want[d]
                if w > 0.0 and (room[d] + EPS < w or cap[d] + EPS < w):
                    ok = False
                    break
            if not ok:
                continue
            if first:
                chosen = n
                break
            s = 0.0
            if code == SPREAD:
                capw = self._capw[n]
                k = 0
                for d in range(n_dims):
                    if cap[d] > 0.0:
                        s = s + (room[d] - want[d]) / capw[d]
                        k += 1
                score = -(s / k) if k > 0 else 0.0
            else:
                top = self._top
                for d in range(n_dims):
                    if cap[d] > 0.0:
                        s = s + (room[d] - want[d]) / top[d]
                score = s
            if chosen < 0 or score < best:
                chosen, best = n, score
        return chosen

    def _take(self, chosen: int, want: list[float], secs: float) -> None:
        """A task of ``want`` and ``secs`` goes to ``chosen``: out of its room and budget."""
        n_dims = len(want)
        room, cap = self._room[chosen], self._cap[chosen]
        has_room = False
        for d in range(n_dims):
            if cap[d] > 0.0:
                room[d] = room[d] - want[d]
                if room[d] > EPS:
                    has_room = True
        budget = self._budget
        if budget is not None:
            share = 0.0
            for d in range(n_dims):
                if want[d] > 0.0 and cap[d] > 0.0 and want[d] / cap[d] > share:
                    share = want[d] / cap[d]
            budget[chosen] = budget[chosen] - secs * share
            if not budget[chosen] > 0.0:
                has_room = False
        if not has_room:
            self._open[chosen] = False
            self.left -= 1


def window_fill(
    capacities: Sequence[Mapping[str, float]],
    loads: Sequence[Mapping[str, float]],
    window: float,
    low_water: float | None = None,
    budgets: Sequence[float] | None = None,
) -> WindowFill:
    """A top-up pass over these nodes (capacity, outstanding demand each); see ``WindowFill``."""
    return WindowFill(capacities, loads, window, low_water, budgets)
