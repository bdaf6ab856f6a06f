"""DAG and Function: the user's description of a run, its validation, order and critical path.

Design note: a DAG is an insertion-ordered dict of id -> Function. Every graph algorithm here is
iterative (Kahn's algorithm for the order, an explicit-stack DFS for cycle paths), so a 10,000-function
chain validates in milliseconds and never meets Python's recursion limit. ``validate`` checks each
function on its own first (in insertion order, so the first error reported is stable), then the
references between functions, then cycles (one pass over the functions does the common checks and
Kahn's in-degrees; the other passes run only when it saw something they could report).
``wire_tasks`` turns the DAG into what a submission sends: per function a row of plain metadata
(``messages.TaskMeta``'s fields) plus one cloudpickled payload, which only worker processes
unpickle; ``to_specs`` gives the same as TaskSpecs (local runs).
Edges run from a dependency to its consumer ("a -> b": a's result is passed to b).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from handoffd import resources, values
from handoffd.errors import ValidationError
from handoffd.spec import TaskSpec

ARGUMENT_INCLUSIONS = ("variadic", "as_list")
FUNCTION_TYPES = ("regular", "inline")

Estimate = Callable[["Function"], float] | Mapping[str, float] | None
#: one function as a submission sends it: the fields of ``messages.TaskMeta``, in order
TaskRow = tuple[
    str, tuple[str, ...], dict[str, float], str, str | None, str | None, bool, int | None,
    float | None, int,
]  # fmt: skip


def _default_cost() -> dict[str, Any]:
    return {"cpu": 1}


@dataclass
class Function:
    """One node of a DAG: a callable, where its inputs come from, and how it may be run."""

    id: str
    code: Callable[..., Any]
    args: list[str] = field(default_factory=list)  # dependency ids, results passed in this order
    extra_args: list[Any] = field(default_factory=list)  # literal positionals after the results
    kwargs: dict[str, Any] = field(default_factory=dict)
    cost: dict[str, Any] = field(default_factory=_default_cost)  # memory in MB; custom kinds ok
    argument_inclusion: str = "variadic"  # or "as_list": dependency results arrive as one list
    node: str | None = None  # pin to a node name
    collocate_with: str | None = None  # run on the same node as this function
    type: str = "regular"  # or "inline": not scheduled, re-run inside each consumer's job
    max_retries: int | None = None  # None: the run-level value
    timeout: float | None = None  # seconds per attempt
    priority: int = 0  # higher first among ready functions

    @property
    def inline(self) -> bool:
        return self.type == "inline"


class DAG:
    """An ordered set of Functions keyed by id; ``add_function`` chains."""

    def __init__(self) -> None:
        self._functions: dict[str, Function] = {}

    # -- building ---------------------------------------------------------------------------
    def add_function(self, function: Function) -> DAG:
        """Add a function; a duplicate id raises ValidationError('duplicate_id') at once."""
        if not isinstance(function, Function):
            raise TypeError(
                f"add_function expects a handoffd.Function, got {type(function).__name__}"
            )
        fid = function.id
        if not isinstance(fid, str) or not fid:
            raise ValidationError(
                "invalid_id", None, f"function id must be a non-empty string, got {fid!r}"
            )
        if fid in self._functions:
            raise ValidationError(
                "duplicate_id",
                fid,
                f"a function with id {fid!r} is already in the DAG; give each function a unique id",
            )
        self._functions[fid] = function
        return self

    # -- container protocol -----------------------------------------------------------------
    @property
    def functions(self) -> Mapping[str, Function]:
        """Read-only view of id -> Function, in insertion order."""
        return MappingProxyType(self._functions)

    def __len__(self) -> int:
        return len(self._functions)

    def __iter__(self) -> Iterator[Function]:
        return iter(self._functions.values())

    def __contains__(self, function_id: object) -> bool:
        return function_id in self._functions

    def __getitem__(self, function_id: str) -> Function:
        return self._functions[function_id]

    def __repr__(self) -> str:
        inline = sum(1 for f in self._functions.values() if f.type == "inline")
        edges = sum(len(f.args) for f in self._functions.values() if isinstance(f.args, list))
        ids = list(self._functions)
        shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
        return f"<DAG {len(ids)} functions ({inline} inline), {edges} edges: [{shown}]>"

    # -- validation -------------------------------------------------------------------------
    def validate(self, nodes: set[str] | frozenset[str] | None = None) -> None:
        """Raise ValidationError(kind, function_id, message) for the first problem found.

        ``nodes``: the cluster's node names; when given, a pin to any other name is ``unknown_node``.
        ``collocate_with`` naming a missing function is reported as ``missing_dependency``.
        """
        self._validated_order(nodes)

    def _validated_order(self, nodes: set[str] | frozenset[str] | None = None) -> list[str]:
        """``validate``, and the topological order (as ``_kahn``) built in the same pass.

        One loop checks each function (the full ``_check_function`` only for functions that set
        anything beyond ids, args and plain literals) and builds Kahn's in-degrees; the reference,
        collocation and cycle checks run only when that loop saw something for them to find, so
        the first error reported is the one the separate passes would report."""
        functions = self._functions
        consumers: dict[str, list[str]] = {}
        indegree: dict[str, int] = {}
        order: list[str] = []  # the roots first (insertion order), then Kahn's queue
        references = False  # a dependency not in the DAG, or a collocate_with, was seen
        pins = False  # a node pin or a collocate_with was seen
        for key, fn in functions.items():
            fid = fn.id
            if fid != key:
                # The id was changed after add_function; the DAG's index no longer matches.
                kind = "duplicate_id" if fid in functions else "invalid_id"
                raise ValidationError(
                    kind,
                    fid if isinstance(fid, str) else key,
                    f"function added as {key!r} now has id {fid!r}; do not change ids after add_function",
                )
            args = fn.args
            if not (
                type(args) is list
                and type(fn.extra_args) is list
                and type(fn.kwargs) is dict
                and not fn.kwargs
                and fn.node is None
                and fn.collocate_with is None
                and fn.max_retries is None
                and fn.timeout is None
                and type(fn.priority) is int
                and fn.type == "regular"
                and (fn.argument_inclusion == "variadic" or fn.argument_inclusion == "as_list")
                and _default_cost_given(fn.cost)
                and callable(fn.code)
            ):
                _check_function(fn, nodes)
                if fn.node is not None:
                    pins = True
                if fn.collocate_with is not None:
                    pins = references = True
            if not args:
                order.append(key)
                continue
            # A dependency named twice counts twice here and in its consumer list, so the count
            # reaches 0 in the same step as with the edge counted once (``_consumers``).
            indegree[key] = len(args)
            for dep in args:
                if type(dep) is not str:
                    _check_function(fn, nodes)  # invalid_args, or this function's earlier error
                outs = consumers.get(dep)
                if outs is None:
                    if dep not in functions:
                        references = True
                    consumers[dep] = [key]
                else:
                    outs.append(key)
        if references:
            self._check_references()
        if pins:
            self._check_collocation_pins()
        for fid in order:  # grows while it is read: the queue of Kahn's algorithm
            outs = consumers.get(fid)
            if outs is not None:
                for out in outs:
                    left = indegree[out] - 1
                    indegree[out] = left
                    if left == 0:
                        order.append(out)
        if len(order) != len(functions):
            self._check_cycles()
        return order

    def _check_references(self) -> None:
        functions = self._functions
        for fn in functions.values():
            for dep in fn.args:
                if dep not in functions:
                    raise ValidationError(
                        "missing_dependency",
                        fn.id,
                        f"args names {dep!r}, which is not in the DAG; add a function with id {dep!r} "
                        f"or remove it from args",
                    )
            other = fn.collocate_with
            if other is not None:
                if other not in functions:
                    raise ValidationError(
                        "missing_dependency",
                        fn.id,
                        f"collocate_with names {other!r}, which is not in the DAG; add it or drop collocate_with",
                    )
                if functions[other].type == "inline":
                    raise ValidationError(
                        "invalid_inline",
                        fn.id,
                        f"collocate_with names inline function {other!r}, which has no node of its own; "
                        f"collocate with a regular function instead",
                    )

    def _check_collocation_pins(self) -> None:
        """Functions collocated together (transitively) must not be pinned to different nodes."""
        parent: dict[str, str] = {}

        def find(x: str) -> str:
            root = x
            while parent.get(root, root) != root:
                root = parent[root]
            while parent.get(x, x) != root:  # path compression
                parent[x], x = root, parent[x]
            return root

        for fn in self._functions.values():
            if fn.collocate_with is not None:
                a, b = find(fn.id), find(fn.collocate_with)
                if a != b:
                    parent[a] = b
        pinned: dict[str, tuple[str, str]] = {}  # group root -> (node, function that pins it)
        for fn in self._functions.values():
            if fn.node is None:
                continue
            root = find(fn.id)
            seen = pinned.get(root)
            if seen is None:
                pinned[root] = (fn.node, fn.id)
            elif seen[0] != fn.node:
                raise ValidationError(
                    "invalid_collocation",
                    fn.id,
                    f"pinned to node {fn.node!r} but collocated (via collocate_with) with {seen[1]!r}, "
                    f"which is pinned to {seen[0]!r}; pin them to the same node or drop one pin",
                )

    def _check_cycles(self) -> None:
        order = self._kahn()
        if len(order) == len(self._functions):
            return
        path = self._find_cycle(set(self._functions).difference(order))
        raise ValidationError(
            "cycle",
            path[0],
            f"the functions form a cycle: {' -> '.join(path)} (each arrow: result passed to); "
            f"remove one of these dependencies",
        )

    def _find_cycle(self, candidates: set[str]) -> list[str]:
        """Return one cycle as a path in data-flow order, first id repeated at the end."""
        consumers = self._consumers()
        state: dict[str, int] = {}  # 1: on the DFS stack, 2: finished
        for start in self._functions:
            if start not in candidates or start in state:
                continue
            stack: list[tuple[str, Iterator[str]]] = [(start, iter(consumers[start]))]
            state[start] = 1
            while stack:
                node, children = stack[-1]
                for child in children:
                    if child not in candidates:
                        continue
                    if state.get(child) == 1:
                        ids = [n for n, _ in stack]
                        cycle = ids[ids.index(child) :]
                        return cycle + [child]
                    if child not in state:
                        state[child] = 1
                        stack.append((child, iter(consumers[child])))
                        break
                else:
                    state[node] = 2
                    stack.pop()
        raise AssertionError("Kahn's algorithm left functions but no cycle was found")

    # -- order and critical path --------------------------------------------------------------
    def _consumers(self) -> dict[str, list[str]]:
        consumers: dict[str, list[str]] = {fid: [] for fid in self._functions}
        for fn in self._functions.values():
            for dep in dict.fromkeys(fn.args):  # a dependency passed twice is still one edge
                if dep in consumers:
                    consumers[dep].append(fn.id)
        return consumers

    def _kahn(self) -> list[str]:
        consumers = self._consumers()
        indegree = {fid: 0 for fid in self._functions}
        for outs in consumers.values():
            for out in outs:
                indegree[out] += 1
        ready = deque(fid for fid, d in indegree.items() if d == 0)
        order: list[str] = []
        while ready:
            fid = ready.popleft()
            order.append(fid)
            for out in consumers[fid]:
                indegree[out] -= 1
                if indegree[out] == 0:
                    ready.append(out)
        return order

    def topological_order(self) -> list[str]:
        """Function ids, every dependency before its consumers (ties in insertion order)."""
        return self._validated_order()

    def upward_ranks(self, estimate: Estimate = None) -> dict[str, float]:
        """Per function: its estimate plus the longest chain of consumers after it (HEFT rank)."""
        order = self.topological_order()
        consumers = self._consumers()
        cost = _estimator(estimate)
        rank: dict[str, float] = {}
        for fid in reversed(order):
            after = max((rank[c] for c in consumers[fid]), default=0.0)
            rank[fid] = cost(self._functions[fid]) + after
        return rank

    def critical_path_length(self, estimate: Estimate = None) -> float:
        """Length of the longest dependency chain, with a per-function estimate (default 1)."""
        return max(self.upward_ranks(estimate).values(), default=0.0)

    # -- wire view ----------------------------------------------------------------------------
    def to_specs(self) -> list[TaskSpec]:
        """Validate, then give one TaskSpec per function in topological order."""
        rows, payloads = self.wire_tasks()
        return [
            TaskSpec(r[0], r[1], dict(r[2]), p, r[3], r[4], r[5], r[6], r[7], r[8], r[9])
            for r, p in zip(rows, payloads, strict=True)
        ]

    def wire_tasks(self) -> tuple[list[TaskRow], list[bytes]]:
        """Validate, then one row per function in topological order, and its payload.

        A row holds the fields of ``messages.TaskMeta`` in their order (what a submission sends;
        ``codec.Rows`` packs the rows as they are), so a submission builds no TaskSpec or TaskMeta
        objects. Rows may share their ``cost`` dict: copy it before changing it."""
        order = self._validated_order()
        functions = self._functions
        rows: list[TaskRow] = []
        payloads: list[bytes] = []
        # Many functions share one callable: cloudpickle it once per DAG and wrap it with each
        # function's literals (values.dumps_call; workers decode the callable once per process).
        # Functions with no literals share one payload outright (the workers' payload cache).
        codes: dict[int, bytes] = {}
        shared: dict[int, bytes] = {}
        default_cost = {"cpu": 1.0}
        no_cost: dict[str, float] = {}
        for fid in order:
            fn = functions[fid]
            code_key = id(fn.code)
            try:
                bare = not fn.extra_args and not fn.kwargs
                payload = shared.get(code_key) if bare else None
                if payload is None:
                    code = codes.get(code_key)
                    if code is None:
                        code = codes[code_key] = values.dumps_code(fn.code)
                    payload = values.dumps_call(code, list(fn.extra_args), dict(fn.kwargs))
                    if bare:
                        shared[code_key] = payload
            except Exception as exc:
                raise ValidationError(
                    "unpicklable",
                    fid,
                    f"its code, extra_args or kwargs cannot be shipped to workers "
                    f"({type(exc).__name__}: {exc}); pass plain data and functions, "
                    f"not open files, locks, sockets or generators",
                ) from exc
            payloads.append(payload)
            inline = fn.type == "inline"
            if inline:
                cost = no_cost
            elif _default_cost_given(fn.cost):
                cost = default_cost
            else:
                cost = resources.parse_cached(fn.cost)
            timeout = fn.timeout
            rows.append(
                (
                    fid,
                    tuple(fn.args),
                    cost,
                    fn.argument_inclusion,
                    fn.node,
                    fn.collocate_with,
                    inline,
                    fn.max_retries,
                    None if timeout is None else float(timeout),
                    fn.priority,
                )
            )
        return rows, payloads


def new() -> DAG:
    """An empty DAG (same as ``DAG()``)."""
    return DAG()


def _default_cost_given(cost: Any) -> bool:
    """``cost`` is ``{"cpu": 1}`` (or ``1.0``), the default: parsed without a look-up."""
    if type(cost) is not dict or len(cost) != 1:
        return False
    cpu = cost.get("cpu")
    return (type(cpu) is int or type(cpu) is float) and cpu == 1


def _estimator(estimate: Estimate) -> Callable[[Function], float]:
    if estimate is None:
        return lambda fn: 1.0
    if isinstance(estimate, Mapping):
        table = estimate
        return lambda fn: float(table.get(fn.id, 1.0))
    return lambda fn: float(estimate(fn))


def _check_function(fn: Function, nodes: set[str] | frozenset[str] | None) -> None:
    """Checks that need only this function (no references to others)."""
    fid = fn.id
    if not callable(fn.code):
        raise ValidationError(
            "invalid_code",
            fid,
            f"code must be a callable (a function, lambda or object with __call__), "
            f"got {type(fn.code).__name__} {fn.code!r:.60}",
        )
    if not isinstance(fn.args, (list, tuple)) or not all(isinstance(a, str) for a in fn.args):
        raise ValidationError(
            "invalid_args",
            fid,
            f"args must be a list of function ids such as ['load'], got {fn.args!r:.80}",
        )
    if not isinstance(fn.extra_args, (list, tuple)):
        raise ValidationError(
            "invalid_args",
            fid,
            f"extra_args must be a list of literal values, got {type(fn.extra_args).__name__}",
        )
    if not isinstance(fn.kwargs, Mapping) or not all(isinstance(k, str) for k in fn.kwargs):
        raise ValidationError(
            "invalid_args", fid, f"kwargs must be a dict with string keys, got {fn.kwargs!r:.80}"
        )
    if fn.argument_inclusion not in ARGUMENT_INCLUSIONS:
        raise ValidationError(
            "invalid_argument_inclusion",
            fid,
            f"argument_inclusion is {fn.argument_inclusion!r}; use 'variadic' (one positional "
            f"per dependency) or 'as_list' (one list of all dependency results)",
        )
    if fn.type not in FUNCTION_TYPES:
        raise ValidationError(
            "invalid_type", fid, f"type is {fn.type!r}; use 'regular' or 'inline'"
        )
    try:
        cost = resources.parse_cached(fn.cost, what="cost")
    except resources.ResourceError as exc:
        raise ValidationError(
            "invalid_cost", fid, f"{exc} (memory is a number of MB, e.g. 2000, not '2GB')"
        ) from None
    if fn.type == "inline":
        problems = []
        if fn.node is not None:
            problems.append(f"node={fn.node!r}")
        if fn.collocate_with is not None:
            problems.append(f"collocate_with={fn.collocate_with!r}")
        if cost != {"cpu": 1.0}:
            problems.append(f"cost={fn.cost!r}")
        if problems:
            raise ValidationError(
                "invalid_inline",
                fid,
                f"inline functions are re-run inside each consumer's job and have no placement of "
                f"their own, but this one sets {', '.join(problems)}; drop them or make it regular",
            )
    if fn.node is not None:
        if not isinstance(fn.node, str) or not fn.node:
            raise ValidationError(
                "invalid_option", fid, f"node must be a node name (str) or None, got {fn.node!r}"
            )
        if nodes is not None and fn.node not in nodes:
            known = ", ".join(sorted(nodes)[:10]) or "none"
            raise ValidationError(
                "unknown_node",
                fid,
                f"pinned to node {fn.node!r}, which is not in the cluster (known: {known}); "
                f"fix the name or drop the pin",
            )
    if fn.collocate_with is not None:
        if not isinstance(fn.collocate_with, str):
            raise ValidationError(
                "invalid_option",
                fid,
                f"collocate_with must be a function id or None, got {fn.collocate_with!r}",
            )
        if fn.collocate_with == fid:
            raise ValidationError(
                "invalid_collocation", fid, "collocate_with names the function itself; drop it"
            )
    if fn.max_retries is not None and (
        isinstance(fn.max_retries, bool)
        or not isinstance(fn.max_retries, int)
        or fn.max_retries < 0
    ):
        raise ValidationError(
            "invalid_option",
            fid,
            f"max_retries must be an integer >= 0 or None, got {fn.max_retries!r}",
        )
    if fn.timeout is not None and (
        isinstance(fn.timeout, bool)
        or not isinstance(fn.timeout, (int, float))
        or math.isnan(fn.timeout)
        or fn.timeout <= 0
    ):
        raise ValidationError(
            "invalid_option",
            fid,
            f"timeout must be a number of seconds > 0 or None, got {fn.timeout!r}",
        )
    if isinstance(fn.priority, bool) or not isinstance(fn.priority, int):
        raise ValidationError(
            "invalid_option", fid, f"priority must be an integer, got {fn.priority!r}"
        )


__all__ = ["DAG", "Function", "new", "ARGUMENT_INCLUSIONS", "FUNCTION_TYPES"]
