"""A run's task graph as the owner builds it at submission: checked, resolved and ranked.

Everything here is fixed for the run's life; the task states that change live in ``run.RunState``,
which builds its graph with ``build_graph``. Pure: specs in, a ``TaskGraph`` out (or a
``ValidationError`` naming the function at fault and what is wrong with it).

Inline functions are not tasks: a regular task depends on the regular tasks reachable through its
inline dependencies (``effective_deps``). Collocation groups are the connected components of
``collocate_with`` links (two members or more). Ranking: ``order`` (``placement.order``) returns the
placement order and each task's upward rank (critical path first among equal priorities).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from handoffd.errors import ValidationError
from handoffd.freeing import free
from handoffd.scheduler import plain_graph
from handoffd.spec import TaskSpec
from handoffd.validation import POLICIES

#: The run ranking: (priorities, consumer indices, time estimates, sizes) -> (the task indices in
#: placement order, each task's upward rank); ``placement.order`` with the scheduler's backend.
Order = Callable[..., tuple[list[int], list[float]]]


@dataclass(eq=False, slots=True)
class TaskGraph:
    inline: dict[str, TaskSpec]  # inline functions by id
    regular: list[TaskSpec]  # the tasks, in submission order
    effective_deps: dict[str, tuple[str, ...]]  # task -> regular tasks it needs, in args order
    consumers: dict[str, list[str]]  # task -> regular tasks that need it
    group_members: dict[str, list[str]]  # collocation group id -> members (two or more)
    group_of: dict[str, str]  # member -> its group id
    group_pin: dict[str, str | None]  # group id -> the node one of its members is pinned to
    wanted: AbstractSet[str]  # the regular tasks whose values the client wants
    position: list[int]  # per task (index in ``regular``): its place in the ranking
    upward_rank: list[float]  # per task: its upward rank
    placement_order: list[int]  # the task indices sorted by (priority, upward rank, position)


def build_graph(
    specs: Sequence[TaskSpec],
    outputs: Sequence[str] | None,
    order: Order | None = None,
    *,
    acyclic: bool = False,
) -> TaskGraph:
    """Check ``specs`` (ids, dependencies, inline and collocation rules, cycles) and rank them.
    ``acyclic``: the caller has checked the functions form no cycle (``validation.wire_specs``
    checks the submission's graph, cycles included): the walk for one is left out when no
    function is inline (then the order it gives is not needed either)."""
    if len(specs) == 1:
        spec = specs[0]
        if not spec.deps and not spec.inline and spec.collocate_with is None:
            return _single(spec, outputs, order)
    for spec in specs:
        if spec.inline or spec.collocate_with is not None:
            return _walk(specs, outputs, order, acyclic)
    found = plain_graph.links(specs, None, False)
    if found is None or not (acyclic or _acyclic(found[0], found[1])):
        # (a duplicate, an unknown dependency, a cycle: the walk names it)
        return _walk(specs, outputs, order, acyclic)
    # (``free_links``' answer, none needing another, is one dict for both: ``_plain`` may rank
    # them without the core when they tie)
    return _plain(specs, found, outputs, order, unlinked=found[0] is found[1])


def run_fields_plain(msg: Any, n: int, frames: Sequence[Any]) -> bool:
    """A submission of ``n`` functions whose run-level fields the one-pass builders take (two
    functions or more, a frame each plus its packages, a known policy, retries a non-negative int,
    outputs a tuple or None); anything else goes the general path, which says what is wrong."""
    max_retries = msg.max_retries
    outputs = msg.outputs
    return not (
        n < 2
        or not n <= len(frames) <= n + len(msg.packages)
        or msg.policy not in POLICIES
        or type(max_retries) is not int
        or max_retries < 0
        or (outputs is not None and type(outputs) is not tuple)
    )


def wire_graph(
    msg: Any, frames: Sequence[Any], order: Order | None
) -> tuple[tuple[TaskSpec, ...], TaskGraph] | None:
    """``validation.wire_specs`` and ``build_graph(acyclic=True)`` of a submission of two
    functions or more that are all plain (no pin, collocation, inline type, retries or timeout)
    and pass every check, in one pass over its rows (``plain_graph``); None for anything else,
    a refusal included: the general path checks it from the start and says what is wrong."""
    tasks = msg.tasks
    if not run_fields_plain(msg, len(tasks), frames):
        return None
    outputs = msg.outputs
    built = plain_graph.wire_specs(tasks, frames)
    if built is None:
        return None
    specs, index = built
    if outputs is not None:
        for output in outputs:
            if type(output) is not str or output not in index:
                return None
    found = plain_graph.links(specs, index, True)
    if found is None:
        return None
    return tuple(specs), _plain(specs, found, outputs, order)


def _plain(
    specs: Sequence[TaskSpec],
    found: plain_graph.Links,
    outputs: Sequence[str] | None,
    order: Order | None,
    priorities: list[int] | None = None,
    sizes: list[float] | None = None,
    unlinked: bool = False,
) -> TaskGraph:
    """The graph of ``specs`` (none inline or collocated, so no group) from their ``links``:
    what ``_walk`` builds for them, ranked by the same ``order`` from the same inputs.
    ``priorities`` and ``sizes``: the specs' own (a list of this call's, freed here), read from
    the columns they were made from (``intake_columns``), not from each spec. ``unlinked``: no
    task needs another (``plain_graph.free_links``' links)."""
    effective_deps, consumers, rows = found
    regular = list(specs)
    n = len(regular)
    wanted: AbstractSet[str]
    if outputs is None:
        # Every task: the ids' own set-like view, not a set of its own built a task.
        wanted = effective_deps.keys()
    else:
        wanted_ids = set(outputs)
        wanted = {s.id for s in regular if s.id in wanted_ids}
    if order is None:
        from handoffd.scheduler import placement

        order = placement.order
    ints = priorities is not None  # (a columns run's: read from an int64 array)
    if priorities is None:
        priorities = [s.priority for s in regular]
    if sizes is None:
        sizes = plain_graph.sizes(regular)
    if unlinked and _tied(priorities, sizes, n, ints):
        # The core's ranking of tasks that need none and tie on every key (W1's): each one's
        # upward rank its estimate (1.0), the order the index order (its last key), as
        # ``places`` reads it back (``_tied_in_index_order``); the kernel's argument checks,
        # buffers and sort of every task were ~1.3k instructions a W1 task (``_single`` skips
        # it for a lone task alike).
        position, ordered, upward_rank = list(range(n)), list(range(n)), [1.0] * n
        free(priorities, rows)
    else:
        ranked, ranks = order(priorities, rows, [1.0] * n, sizes)
        upward_rank = [*map(float, ranks[:n]), *([0.0] * (n - len(ranks)))]
        placed = plain_graph.places(ranked, n, priorities, upward_rank)
        if placed is None:  # (a ranking that disagrees with its keys: the general rule decides)
            at = {task_index: pos for pos, task_index in enumerate(ranked)}
            position = [at.get(i, i) for i in range(n)]
            ordered = _placement_order(regular, position, upward_rank)
        else:
            position, ordered = placed
        free(priorities, rows, ranked, ranks)
    return TaskGraph(
        {}, regular, effective_deps, consumers, {}, {}, {}, wanted, position, upward_rank, ordered
    )


def _walk(
    specs: Sequence[TaskSpec],
    outputs: Sequence[str] | None,
    order: Order | None,
    acyclic: bool = False,
) -> TaskGraph:
    by_id = _check(specs)
    inline = {s.id: s for s in specs if s.inline}
    regular = [s for s in specs if not s.inline]
    topo = topological(specs) if inline else []
    # Regular tasks reachable through inline dependencies, in first-seen order.
    reach: dict[str, tuple[str, ...]] = {}
    if not inline:  # (the common case: the dependencies themselves, once each)
        reach = {s.id: tuple(dict.fromkeys(s.deps)) if s.deps else () for s in regular}
    for tid in topo if inline else ():
        found: dict[str, None] = {}
        for dep in by_id[tid].deps:
            if dep in inline:
                found.update(dict.fromkeys(reach[dep]))
            else:
                found[dep] = None
        reach[tid] = tuple(found)
    effective_deps = {s.id: reach[s.id] for s in regular}
    consumers: dict[str, list[str]] = {s.id: [] for s in regular}
    for s in regular:
        for dep in effective_deps[s.id]:
            consumers[dep].append(s.id)
    if not inline and not acyclic and not _acyclic(effective_deps, consumers):
        topological(specs)  # (raises the cycle's ValidationError, its path named)
    group_members, group_of, group_pin = _groups(regular, by_id)
    wanted_ids = set(outputs) if outputs is not None else None
    wanted = {s.id for s in regular if wanted_ids is None or s.id in wanted_ids}
    position, upward_rank = _rank(regular, consumers, order)
    graph = TaskGraph(
        inline,
        regular,
        effective_deps,
        consumers,
        group_members,
        group_of,
        group_pin,
        wanted,
        position,
        upward_rank,
        _placement_order(regular, position, upward_rank),
    )
    free(by_id, topo, reach)  # (what only this function held: not at once on return)
    return graph


def _acyclic(effective_deps: dict[str, tuple[str, ...]], consumers: dict[str, list[str]]) -> bool:
    """Kahn's walk over the regular tasks' own dependencies (no inline function among them: then
    they are the functions' ``deps``, each once) and the consumers built from them: True when it
    reaches every task. ``topological`` walks the specs again, with a set of each one's deps and
    its own users lists, to name a cycle's path; only a graph that has one needs that."""
    missing = {tid: len(deps) for tid, deps in effective_deps.items() if deps}
    if not missing:  # (no task needs another: nothing to walk)
        return True
    queue = [tid for tid, deps in effective_deps.items() if not deps]
    reached = len(queue)
    while queue:
        for user in consumers[queue.pop()]:
            left = missing[user] - 1
            missing[user] = left
            if left == 0:
                queue.append(user)
                reached += 1
    return reached == len(effective_deps)


def _single(spec: TaskSpec, outputs: Sequence[str] | None, order: Order | None) -> TaskGraph:
    """The graph of a run of one regular function that needs and joins nothing (every one-task
    ``execute``): what the general walk builds for it (nothing to check, no group, no cycle),
    without the walk, which was most of a one-task run's graph."""
    consumers: dict[str, list[str]] = {spec.id: []}
    if _plain_rank(spec):
        # The core's ranking of one task with no consumer: first, its rank its estimate (1.0).
        # The kernel's work (argument checks, buffers, a sort of one) was most of this graph.
        position, upward_rank, ordered = [0], [1.0], [0]
    else:  # (the core refuses it, or says how: let it)
        position, upward_rank = _rank([spec], consumers, order)
        ordered = _placement_order([spec], position, upward_rank)
    return TaskGraph(
        {},
        [spec],
        {spec.id: ()},
        consumers,
        {},
        {},
        {},
        {spec.id} if outputs is None or spec.id in outputs else set(),
        position,
        upward_rank,
        ordered,
    )


_INT64 = 1 << 63


def _tied(priorities: list[Any], sizes: list[float], n: int, ints: bool) -> bool:
    """Every task has one priority and one size, both of which the core's ``order`` takes
    without a word (an int, not a bool, within 64 bits; a finite float): its ranking of them
    when none needs another is the index order (``_plain``). ``ints``: the priorities are known
    ints (a columns run's), else each one's type is looked at too (a bool or a float equal to
    the first is no int to the core). ``sizes``: floats (``plain_graph.sizes``' or the
    columns')."""
    if n == 0:
        return False
    priority = priorities[0]
    size = sizes[0]
    return (
        type(priority) is int
        and -_INT64 <= priority < _INT64
        and type(size) is float
        and math.isfinite(size)
        and priorities.count(priority) == n
        and sizes.count(size) == n
        and (ints or all(map(operator.is_, map(type, priorities), repeat(int))))
    )


def _plain_rank(spec: TaskSpec) -> bool:
    """The core's ``order`` would take this lone task's priority and size without a word: an
    int (not a bool) within 64 bits, a finite sum of plain numbers."""
    priority = spec.priority
    if type(priority) is not int or not -_INT64 <= priority < _INT64:
        return False
    size: float = 0
    for qty in spec.cost.values():
        if type(qty) is not float and type(qty) is not int:
            return False
        size += qty
    try:
        return math.isfinite(size)
    except OverflowError:  # (an int past a float: ``_rank`` raises it as before)
        return False


def _check(specs: Sequence[TaskSpec]) -> dict[str, TaskSpec]:
    by_id: dict[str, TaskSpec] = {}
    for spec in specs:
        if spec.id in by_id:
            raise ValidationError("duplicate_id", spec.id, "two functions share this id")
        by_id[spec.id] = spec
    for spec in specs:
        for dep in spec.deps:
            if dep not in by_id:
                raise ValidationError("missing_dependency", spec.id, f"depends on unknown {dep!r}")
        target = spec.collocate_with
        if target is not None and target not in by_id:
            raise ValidationError(
                "missing_dependency", spec.id, f"collocated with unknown {target!r}"
            )
        if spec.inline and (spec.node is not None or target is not None):
            raise ValidationError("invalid_inline", spec.id, "an inline function cannot be pinned")
        if target is not None and by_id[target].inline:
            raise ValidationError("invalid_inline", spec.id, f"collocated with inline {target!r}")
    return by_id


def _groups(
    regular: list[TaskSpec], by_id: dict[str, TaskSpec]
) -> tuple[dict[str, list[str]], dict[str, str], dict[str, str | None]]:
    """Collocation groups: connected components of collocate_with links (union-find)."""
    linked = [s for s in regular if s.collocate_with is not None]
    parent = {s.id: s.id for s in regular} if linked else {}

    def root(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    members_of: dict[str, list[str]] = {}
    for s in linked:
        parent[root(s.id)] = root(s.collocate_with)  # type: ignore[arg-type]
    for s in regular if linked else ():
        members_of.setdefault(root(s.id), []).append(s.id)
    group_of: dict[str, str] = {}
    group_pin: dict[str, str | None] = {}
    for gid, members in list(members_of.items()):
        if len(members) < 2:
            del members_of[gid]
            continue
        pins = {by_id[m].node for m in members} - {None}
        if len(pins) > 1:
            raise ValidationError(
                "invalid_collocation",
                members[0],
                f"collocated functions are pinned to {sorted(str(p) for p in pins)}",
            )
        for m in members:
            group_of[m] = gid
        group_pin[gid] = next(iter(pins)) if pins else None
    return members_of, group_of, group_pin


def _rank(
    regular: list[TaskSpec], consumers: dict[str, list[str]], order: Order | None
) -> tuple[list[int], list[float]]:
    """Each task's place in the ranking and its upward rank."""
    index = {s.id: i for i, s in enumerate(regular)}
    sizes = [float(sum(s.cost.values())) for s in regular]
    if order is None:
        from handoffd.scheduler import placement

        order = placement.order
    priorities = [s.priority for s in regular]
    # (a task nobody consumes gets its empty row without a comprehension's call: most tasks of
    # a wide run, every task of W1)
    consumer_indices = [
        [index[c] for c in cs] if cs else [] for cs in map(consumers.__getitem__, index)
    ]
    estimates = [1.0] * len(regular)
    ranked, ranks = order(priorities, consumer_indices, estimates, sizes)
    at = {task_index: pos for pos, task_index in enumerate(ranked)}
    n = len(regular)
    position = [at.get(i, i) for i in range(n)]
    upward_rank = [*map(float, ranks[:n]), *([0.0] * (n - len(ranks)))]
    free(index, priorities, consumer_indices, estimates, sizes, at, ranked, ranks)
    return position, upward_rank


def _placement_order(
    regular: list[TaskSpec], position: list[int], upward_rank: list[float]
) -> list[int]:
    """The task indices in placement order: priority, upward rank, position. The owner's ready
    queue keeps a heap of places in it, so comparing two tasks is comparing ints."""

    # ``position`` is a permutation from the ranking: inverted in a loop, not sorted with a C key
    # (that sort held the GIL ~0.15 s for 1,000,000 tasks in the upload thread, the loop waiting).
    n = len(regular)
    ordered = [-1] * n
    for i, at in enumerate(position):
        if not 0 <= at < n or ordered[at] >= 0:
            ordered = sorted(range(n), key=position.__getitem__)
            break
        ordered[at] = i
    # Each task's key (priority, upward rank, position; the first two negated) in that order, built
    # and compared pairwise by C iterators, not a Python key call per task.
    keys = list(
        zip(
            map(operator.neg, map(_PRIORITY, map(regular.__getitem__, ordered))),
            map(operator.neg, map(upward_rank.__getitem__, ordered)),
            map(position.__getitem__, ordered),
            strict=True,
        )
    )
    if any(map(operator.gt, keys, keys[1:])):  # a ranking that disagrees with its own ranks
        ordered.sort(key=keys_of(regular, position, upward_rank))
    return ordered


_PRIORITY = operator.attrgetter("priority")


def keys_of(
    regular: list[TaskSpec], position: list[int], upward_rank: list[float]
) -> Callable[[int], tuple[int, float, int]]:
    """The placement order's sort key of a task index: priority, upward rank, position."""

    def key(i: int) -> tuple[int, float, int]:
        return (-regular[i].priority, -upward_rank[i], position[i])

    return key


def topological(specs: Sequence[TaskSpec]) -> list[str]:
    """Kahn's order over all functions; raise ValidationError(cycle) naming the cycle's path."""
    deps = {s.id: s.deps for s in specs}
    users: dict[str, list[str]] = {s.id: [] for s in specs}
    missing = {s.id: len(set(s.deps)) for s in specs}
    for s in specs:
        for d in set(s.deps):
            users[d].append(s.id)
    queue = [s.id for s in specs if missing[s.id] == 0]
    out: list[str] = []
    while queue:
        tid = queue.pop()
        out.append(tid)
        for u in users[tid]:
            missing[u] -= 1
            if missing[u] == 0:
                queue.append(u)
    if len(out) == len(specs):
        free(deps, users, missing, queue)
        return out
    # Walk dependencies among the unfinished until a function repeats: that is a cycle.
    left = {tid for tid, n in missing.items() if n > 0}
    path = [next(iter(sorted(left)))]
    while True:
        nxt = next(d for d in deps[path[-1]] if d in left)
        if nxt in path:
            cycle = path[path.index(nxt) :] + [nxt]
            raise ValidationError("cycle", nxt, " -> ".join(cycle))
        path.append(nxt)
