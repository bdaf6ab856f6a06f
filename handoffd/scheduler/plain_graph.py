# cython: annotation_typing=False
# (the annotations are for mypy; plain_graph.pxd beside it gives the compiled build its C types)
"""A run's specs and graph links in one compiled pass when its functions are plain (issue 13).

Most submissions (W1's independent no-ops, W2's layered DAG) are functions that set nothing but
an id, dependencies, a cost, argument inclusion and a priority: no pin, collocation, inline type,
retries or timeout. For those the owner checked the rows (``validation.WireTasks``: a links dict,
a topological walk with consumers of its own), built the specs, then the graph walked them again
(``graph._walk``: an id map, reach, effective dependencies, consumers, an index map and the
ranking's lists). Here ``wire_specs`` checks each row as ``validation`` checks a plain function
and builds its spec, with one cost dict per cost shape of the run (the specs' costs are only read,
as the dispatch and report columns already share theirs), and ``links`` resolves dependencies to
indices once, builds the consumers and walks Kahn's order over index arrays for a cycle.

Both say None for anything else (a row that is not plain, a bad id, a duplicate, an unknown
dependency, a cycle): the caller then takes the general path, which checks from the start and
raises its own error, so every error stays word for word what it was. Pure, data only; compiled
(``setup.py SCHEDULER_COMPILED``), this file is also its own pure-Python twin. A big run is built
in the upload thread, and a compiled loop never lets the GIL go by itself: each loop lets the
event loop run every ``YIELD_EVERY`` tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from handoffd import resources
from handoffd.freeing import free
from handoffd.scheduler.run_books import YIELD_EVERY, let_go
from handoffd.spec import TaskSpec
from handoffd.validation import plain_meta

_new = object.__new__

# (Each loop reads ``YIELD_EVERY`` into a local ``every``, a C int when compiled: the module
# global made ``i % YIELD_EVERY`` a Python int and a Python remainder a task.)

# A frozen dataclass's field stored as its ``__init__`` stores it: ``object.__setattr__`` here,
# the C function itself in the compiled build (plain_graph.pxd cimports it by this name, which
# Cython refuses to see assigned: hence the store through ``globals()``, which ruff does not see
# either: its uses say ``noqa: F821``).
if TYPE_CHECKING:
    _store: Callable[[object, str, object], None]
    _make: Callable[[type], Any]
globals().setdefault("_store", object.__setattr__)
# A new instance as ``object.__new__`` makes it: this call here, compiled one C call to object's
# own ``tp_new`` (plain_graph.pxd), where the Python call through ``object.__new__`` was a
# quarter of a spec's build.
globals().setdefault("_make", _new)


def _concat(head: Any, tail: Any) -> bytes:
    return head + tail  # type: ignore[no-any-return]


# A payload joined from its code head and its tail: this function here, compiled one allocation
# and two copies when both are bytes (plain_graph.pxd), where ``+`` took each operand's buffer
# first; stored through ``globals()`` as ``_make`` is.
if TYPE_CHECKING:
    _joined: Callable[[Any, Any], bytes]
globals().setdefault("_joined", _concat)


_NO_DEPS: tuple[str, ...] = ()

#: The fields a plain function leaves at their defaults, which ``column_specs`` and ``wire_specs``
#: leave to ``TaskSpec``'s class attributes (the dataclass's defaults) rather than store per spec;
#: ``argument_inclusion`` and ``priority`` too where a spec's are the defaults ("variadic", 0).
PLAIN_DEFAULTS = ("node", "collocate_with", "inline", "max_retries", "timeout")

#: ``links``'s answer: each task's dependencies (distinct, in args order) and consumers by id, and
#: the consumers as task indices (the ranking kernel's input).
Links = tuple[dict[str, tuple[str, ...]], dict[str, list[str]], Sequence[Sequence[int]]]


def wire_specs(
    tasks: Sequence[Any], payloads: Sequence[Any]
) -> tuple[list[TaskSpec], dict[str, int]] | None:
    """The specs of submitted rows that are all plain and well formed (as ``validation.WireTasks``
    and ``wire_specs`` check and build them), and each id's index; None for anything else."""
    every = YIELD_EVERY
    specs: list[TaskSpec] = []
    index: dict[str, int] = {}
    shapes: dict[Any, dict[str, float]] = {}  # a cost's items -> the run's one dict of that shape
    last_raw: Any = None
    last_cost: Any = None
    i = 0
    for meta in tasks:
        fid = meta.id
        if type(fid) is not str or not fid or fid in index:
            return None
        deps = meta.deps
        if type(deps) is not tuple:
            return None
        for dep in deps:
            if type(dep) is not str:
                return None
        if not plain_meta(meta):
            return None
        raw = meta.cost
        if type(raw) is not dict:
            return None
        for qty in raw.values():
            if type(qty) is bool:  # (True == 1: ``parse`` refuses it, an equal map would not)
                return None
        if raw != last_raw:  # (most rows repeat the previous one's cost: one compare)
            key = tuple(raw.items())
            try:
                cost = shapes.get(key)
            except TypeError:  # an unhashable quantity: the general path says what is wrong
                return None
            if cost is None:
                try:
                    cost = resources.parse_cached(raw, what="cost")
                except resources.ResourceError:
                    return None
                shapes[key] = cost
            last_raw = raw
            last_cost = cost
        spec = _new(TaskSpec)
        # (the defaults left to the class, as ``column_specs`` leaves them)
        vars(spec).update(id=fid, deps=deps, cost=last_cost, payload=bytes(payloads[i]))
        kind = meta.argument_inclusion
        if kind != "variadic":
            vars(spec)["argument_inclusion"] = kind
        priority = meta.priority
        if type(priority) is not int or priority != 0:
            vars(spec)["priority"] = priority
        specs.append(spec)
        index[fid] = i
        i += 1
        if i % every == 0:
            let_go()
    return specs, index


def column_specs(
    ids: Sequence[str],
    deps: Sequence[tuple[str, ...]],
    costs: Sequence[dict[str, float]],
    cost_of: Sequence[int],
    kinds: Sequence[str],
    inclusion: Sequence[int],
    priorities: Sequence[int],
    payloads: Sequence[Any],
    heads: Sequence[bytes] = (),
    head_of: Sequence[int] | None = None,
) -> list[TaskSpec]:
    """The specs of a checked ``TaskColumns`` run (``intake_columns.column_graph``): function
    ``i`` with ``ids[i]``, ``deps[i]``, the parsed cost map ``costs[cost_of[i]]`` (one dict per
    cost shape, shared), the inclusion ``kinds[inclusion[i]]``, ``priorities[i]`` and
    ``payloads[i]`` as bytes (with ``head_of``, protocol 6: ``heads[head_of[i]] + payloads[i]``,
    one copy as ``bytes`` was, ``payloads[i]`` whole where it is -1). The fields a plain function
    leaves at their defaults (``PLAIN_DEFAULTS``, and an inclusion or priority at its default)
    are not stored: read, they are the class's defaults, so the spec equals, reads and copies as
    the one ``TaskSpec(...)`` builds (seven generic stores a W1 spec were a fifth of its build). The others are stored one by one,
    in field order, as the dataclass's ``__init__`` stores them (``_store``): in the instance's
    own value slots, its keys the class's shared ones, with no keyword dict built per spec and no
    ``__dict__`` made (a store into ``spec.__dict__`` made the dict first)."""
    every = YIELD_EVERY
    n = len(ids)
    specs: list[TaskSpec] = []
    # What no spec stores, found once a run rather than compared a task (W1's: every inclusion
    # the default, every priority 0): then neither is looked at per spec.
    some_kind = False
    for kind in kinds:
        if kind != "variadic":
            some_kind = True
    some_priority = True
    if type(priorities) is list and priorities.count(0) == n:  # (a "q" column's ints)
        some_priority = False
    for i in range(n):
        spec = _make(TaskSpec)  # noqa: F821
        _store(spec, "id", ids[i])  # noqa: F821
        _store(spec, "deps", deps[i])  # noqa: F821
        _store(spec, "cost", costs[cost_of[i]])  # noqa: F821
        if head_of is None:
            _store(spec, "payload", bytes(payloads[i]))  # noqa: F821
        else:
            at = head_of[i]
            payload = _joined(heads[at], payloads[i]) if at >= 0 else bytes(payloads[i])  # noqa: F821
            _store(spec, "payload", payload)  # noqa: F821
        if some_kind:
            kind = kinds[inclusion[i]]
            if kind != "variadic":
                _store(spec, "argument_inclusion", kind)  # noqa: F821
        if some_priority:
            priority = priorities[i]
            if type(priority) is not int or priority != 0:
                _store(spec, "priority", priority)  # noqa: F821
        specs.append(spec)
        if i % every == every - 1:
            let_go()
    return specs


def links(
    specs: Sequence[TaskSpec], index: dict[str, int] | None, check_cycle: bool
) -> Links | None:
    """The links of ``specs``, none of them inline or collocated (``graph._walk``'s effective
    dependencies and consumers for them); ``index``: each id's index, None to build it here.
    None: two specs share an id, a dependency is not among them or (``check_cycle``) they form
    a cycle."""
    every = YIELD_EVERY
    n = len(specs)
    ids: list[str] = []
    deps: list[tuple[str, ...]] = []
    for i in range(n):
        spec = specs[i]
        ids.append(spec.id)
        deps.append(spec.deps)
        if i % every == every - 1:
            let_go()
    if index is None and not any(deps):
        # None needs another (W1's): their ids checked distinct by the effective dependencies'
        # dict itself, which is the links (``free_links``: no index, row or list a task).
        effective = dict.fromkeys(ids, _NO_DEPS)
        found = free_links(ids, effective) if len(effective) == n else None
    else:
        found = column_links(ids, deps, index, check_cycle)
    free(ids, deps)
    return found


def column_links(
    ids: Sequence[str],
    deps: Sequence[tuple[str, ...]],
    index: dict[str, int] | None,
    check_cycle: bool,
) -> Links | None:
    """``links`` of the specs whose ids and dependencies are ``ids`` and ``deps`` (a columns
    submission's own: ``column_specs`` made its specs from them), read from those columns."""
    every = YIELD_EVERY
    n = len(ids)
    own: dict[str, int] = {}  # the index built here, let go of here
    if index is None:
        index = own
        for i in range(n):
            fid = ids[i]
            if fid in index:
                return None
            index[fid] = i
    effective: dict[str, tuple[str, ...]] = {}
    consumers: dict[str, list[str]] = {}
    rows: list[list[int]] = []
    needs = [0] * n  # per task: its distinct dependencies (Kahn's in-degree)
    linked = False  # some task needs another
    for i in range(n):
        consumers[ids[i]] = []
        rows.append([])
    for i in range(n):
        fid = ids[i]
        own_deps = deps[i]
        if not own_deps:
            effective[fid] = _NO_DEPS
            continue
        if len(own_deps) > 1:
            own_deps = tuple(dict.fromkeys(own_deps))
        effective[fid] = own_deps
        for dep in own_deps:
            at = index.get(dep)
            if at is None:
                return None
            consumers[dep].append(fid)
            rows[at].append(i)
        needs[i] = len(own_deps)
        linked = True
        if i % every == every - 1:
            let_go()
    acyclic = not check_cycle or not linked or _acyclic(rows, needs)
    free(needs, own)
    return (effective, consumers, rows) if acyclic else None


def free_links(ids: Sequence[str], effective: dict[str, tuple[str, ...]] | None = None) -> Links:
    """``column_links`` of tasks none of which needs another (W1's), their ids known distinct:
    no dependency to resolve and no walk for a cycle. Nothing is made a task: the effective
    dependencies are one dict made in one C call (``effective``: that dict, ``dict.fromkeys(ids,
    ())``, made already by the caller's distinct-ids check), and it is also the consumers (every
    task's consumers are none: the same shared empty tuple, as its dependencies; they are only
    read once built), and the ranking's consumer rows are one shared empty row (it only reads
    them). A consumer list a task and its dict entry were ~0.5k instructions a W1 task."""
    if effective is None:
        effective = dict.fromkeys(ids, _NO_DEPS)
    return effective, effective, [_NO_ROW] * len(ids)  # type: ignore[return-value]


_NO_ROW: tuple[int, ...] = ()


def _acyclic(rows: list[list[int]], needs: list[int]) -> bool:
    """Kahn's walk over the consumer rows: True when it reaches every task (``needs`` is used up)."""
    n = len(rows)
    queue = [i for i in range(n) if needs[i] == 0]
    reached = len(queue)
    while queue:
        for user in rows[queue.pop()]:
            left = needs[user] - 1
            needs[user] = left
            if left == 0:
                queue.append(user)
                reached += 1
    return reached == n


def sizes(specs: Sequence[TaskSpec]) -> list[float]:
    """Each spec's size (the sum of its cost, as ``graph._rank`` sums it), once per cost dict."""
    out: list[float] = []
    last: Any = None
    size: Any = 0.0  # (one float object per cost dict, not one per task)
    for spec in specs:
        cost = spec.cost
        if cost is not last:
            size = float(sum(cost.values()))
            last = cost
        out.append(size)
    return out


def places(
    ranked: Sequence[int], n: int, priorities: list[int], upward_rank: list[float]
) -> tuple[list[int], list[int]] | None:
    """(each task's position in ``ranked``, the task indices in that order) when ``ranked`` is a
    permutation of the ``n`` task indices that agrees with its own keys (priority, then upward
    rank, both descending: what ``graph._placement_order`` checks); None otherwise."""
    every = YIELD_EVERY
    if len(ranked) != n:
        return None
    if n and _tied_in_index_order(ranked, n, priorities, upward_rank):
        return list(range(n)), list(range(n))  # (what the walk below gives for them)
    position = [-1] * n
    ordered: list[int] = []
    at = 0
    last = -1
    for task in ranked:
        i = int(task)
        if not 0 <= i < n or position[i] >= 0:
            return None
        if last >= 0 and (
            priorities[i] > priorities[last]
            or (priorities[i] == priorities[last] and upward_rank[i] > upward_rank[last])
        ):
            return None
        position[i] = at
        ordered.append(i)
        at += 1
        last = i
        if at % every == 0:
            let_go()
    return position, ordered


def _tied_in_index_order(
    ranked: Sequence[int], n: int, priorities: list[int], upward_rank: list[float]
) -> bool:
    """Every task's keys tie (one priority, one upward rank: W1's independent tasks) and
    ``ranked`` is the index order, the order the ranking gives tied tasks: ``places`` then
    answers the index order twice, which its walk would find after comparing every task's keys
    with its predecessor's; here the ties are counted in C calls and the order read as C ints."""
    if priorities.count(priorities[0]) != n or upward_rank.count(upward_rank[0]) != n:
        return False
    for at in range(n):
        task = ranked[at]
        if task != at:
            return False
    return True
