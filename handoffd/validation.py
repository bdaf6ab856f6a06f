"""What makes a submission valid: one set of rules for run_local, the client and the owner.

``check_submission`` is the one entry point. It checks the run's options, then the functions through
a ``Functions`` view, then the requested outputs, and raises ``ValidationError(kind, function_id,
message)`` for the first problem found, with the same message on every path: run_local and the
client pass the user's ``DAG`` (which checks its Python objects first: code, extra_args, kwargs),
the owner passes ``WireTasks`` (the submitted ``TaskMeta`` rows; it never trusts a client). Both
views apply the same per-function rules (``check_id``, ``check_deps``, ``check_fields``) and the
same graph rules (``check_references``, ``check_collocation_pins``, ``cycle_error``), in this order:
every function on its own first, in submission order, then references, then collocation pins, then
cycles, so the first error reported does not depend on the path.

Placement rules are not here: a pin to a node that is not alive, or a cost no node can hold, is the
owner's scheduler's call (``unknown_node`` with the live nodes, ``Unschedulable``).
"""

from __future__ import annotations

import math
import operator
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from handoffd import resources
from handoffd.errors import ValidationError
from handoffd.freeing import PIECE, free
from handoffd.spec import TaskSpec, built_spec

if TYPE_CHECKING:
    from handoffd.config import Limits

ARGUMENT_INCLUSIONS = ("variadic", "as_list")
FUNCTION_TYPES = ("regular", "inline")
POLICIES = ("binpack", "spread", "first_fit")
_NO_COST: dict[str, float] = {}
_DEFAULT_COST = {"cpu": 1.0}

#: A function's links to others, all the graph rules look at: (dependency ids, collocate_with,
#: node pin, inline).
Links = tuple[Sequence[str], str | None, str | None, bool]


class Functions(Protocol):
    """The functions of a submission, as a DAG or as its wire rows."""

    def __len__(self) -> int: ...

    def __contains__(self, function_id: object) -> bool: ...

    def validated_order(self, nodes: set[str] | frozenset[str] | None = None) -> list[str]:
        """Check every function and the graph; the ids in topological order."""
        ...


def check_submission(
    functions: Functions,
    *,
    policy: str | None = None,
    max_retries: int | None = None,
    outputs: Iterable[str] | None = None,
    allow_empty: bool = True,
    nodes: set[str] | frozenset[str] | None = None,
) -> list[str]:
    """Check a whole submission; return the function ids in topological order.

    ``policy`` / ``max_retries`` None: not part of this submission (run_local has no policy).
    ``allow_empty``: run_local runs an empty DAG (nothing); a cluster refuses it."""
    if policy is not None and policy not in POLICIES:
        raise ValidationError(
            "invalid_policy", None, f"policy {policy!r} is not one of {', '.join(POLICIES)}"
        )
    if max_retries is not None and (
        isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0
    ):
        raise ValidationError(
            "invalid_option", None, f"max_retries must be an integer >= 0, got {max_retries!r}"
        )
    if not allow_empty and not len(functions):
        raise ValidationError(
            "empty_dag", None, "the DAG has no functions; add some with add_function"
        )
    order = functions.validated_order(nodes)
    if outputs is not None:
        if isinstance(outputs, str):
            raise ValidationError(
                "invalid_option", None, f"outputs must be a list of function ids, got {outputs!r}"
            )
        for output in outputs:
            if output not in functions:
                raise ValidationError(
                    "missing_dependency",
                    output if isinstance(output, str) else None,
                    "outputs= names a function that is not in the DAG",
                )
    return order


# -- per function -----------------------------------------------------------------------------------


def check_id(fid: object) -> None:
    if not isinstance(fid, str) or not fid:
        raise ValidationError(
            "invalid_id", None, f"function id must be a non-empty string, got {fid!r}"
        )


def duplicate_id(fid: str) -> ValidationError:
    return ValidationError(
        "duplicate_id",
        fid,
        f"a function with id {fid!r} is already in the DAG; give each function a unique id",
    )


def check_deps(fid: str, deps: object) -> None:
    if not isinstance(deps, (list, tuple)) or not all(isinstance(a, str) for a in deps):
        raise ValidationError(
            "invalid_args",
            fid,
            f"args must be a list of function ids such as ['load'], got {deps!r:.80}",
        )


def check_fields(
    fid: str,
    argument_inclusion: object,
    kind: object,
    cost: object,
    node: object,
    collocate_with: object,
    max_retries: object,
    timeout: object,
    priority: object,
    nodes: set[str] | frozenset[str] | None = None,
) -> resources.Resources:
    """The rules one function's own fields must follow; its cost, parsed. ``kind``: its type
    ("regular" or "inline")."""
    if argument_inclusion not in ARGUMENT_INCLUSIONS:
        raise ValidationError(
            "invalid_argument_inclusion",
            fid,
            f"argument_inclusion is {argument_inclusion!r}; use 'variadic' (one positional "
            f"per dependency) or 'as_list' (one list of all dependency results)",
        )
    if kind not in FUNCTION_TYPES:
        raise ValidationError("invalid_type", fid, f"type is {kind!r}; use 'regular' or 'inline'")
    try:
        parsed = resources.parse_cached(cost, what="cost")  # type: ignore[arg-type]
    except resources.ResourceError as exc:
        raise ValidationError(
            "invalid_cost", fid, f"{exc} (memory is a number of MB, e.g. 2000, not '2GB')"
        ) from None
    if kind == "inline":
        problems = []
        if node is not None:
            problems.append(f"node={node!r}")
        if collocate_with is not None:
            problems.append(f"collocate_with={collocate_with!r}")
        # The default cost, or none: the wire form carries an inline function's cost as {}.
        if parsed != _DEFAULT_COST and parsed != _NO_COST:
            problems.append(f"cost={cost!r}")
        if problems:
            raise ValidationError(
                "invalid_inline",
                fid,
                f"inline functions are re-run inside each consumer's job and have no placement of "
                f"their own, but this one sets {', '.join(problems)}; drop them or make it regular",
            )
    if node is not None:
        if not isinstance(node, str) or not node:
            raise ValidationError(
                "invalid_option", fid, f"node must be a node name (str) or None, got {node!r}"
            )
        if nodes is not None and node not in nodes:
            known = ", ".join(sorted(nodes)[:10]) or "none"
            raise ValidationError(
                "unknown_node",
                fid,
                f"pinned to node {node!r}, which is not in the cluster (known: {known}); "
                f"fix the name or drop the pin",
            )
    if collocate_with is not None:
        if not isinstance(collocate_with, str):
            raise ValidationError(
                "invalid_option",
                fid,
                f"collocate_with must be a function id or None, got {collocate_with!r}",
            )
        if collocate_with == fid:
            raise ValidationError(
                "invalid_collocation", fid, "collocate_with names the function itself; drop it"
            )
    if max_retries is not None and (
        isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0
    ):
        raise ValidationError(
            "invalid_option",
            fid,
            f"max_retries must be an integer >= 0 or None, got {max_retries!r}",
        )
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or math.isnan(timeout)
        or timeout <= 0
    ):
        raise ValidationError(
            "invalid_option",
            fid,
            f"timeout must be a number of seconds > 0 or None, got {timeout!r}",
        )
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValidationError(
            "invalid_option", fid, f"priority must be an integer, got {priority!r}"
        )
    return parsed


# -- the graph ----------------------------------------------------------------------------------------


def check_references(links: Mapping[str, Links]) -> None:
    """Every dependency and collocate_with names a function of the submission; none an inline one
    for collocation."""
    for fid, (deps, other, _, _) in links.items():
        for dep in deps:
            if dep not in links:
                raise ValidationError(
                    "missing_dependency",
                    fid,
                    f"args names {dep!r}, which is not in the DAG; add a function with id {dep!r} "
                    f"or remove it from args",
                )
        if other is not None:
            if other not in links:
                raise ValidationError(
                    "missing_dependency",
                    fid,
                    f"collocate_with names {other!r}, which is not in the DAG; add it or drop collocate_with",
                )
            if links[other][3]:
                raise ValidationError(
                    "invalid_inline",
                    fid,
                    f"collocate_with names inline function {other!r}, which has no node of its own; "
                    f"collocate with a regular function instead",
                )


def check_collocation_pins(links: Mapping[str, Links]) -> None:
    """Functions collocated together (transitively) must not be pinned to different nodes."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:  # path compression
            parent[x], x = root, parent[x]
        return root

    for fid, (_, other, _, _) in links.items():
        if other is not None:
            a, b = find(fid), find(other)
            if a != b:
                parent[a] = b
    pinned: dict[str, tuple[str, str]] = {}  # group root -> (node, function that pins it)
    for fid, (_, _, node, _) in links.items():
        if node is None:
            continue
        root = find(fid)
        seen = pinned.get(root)
        if seen is None:
            pinned[root] = (node, fid)
        elif seen[0] != node:
            raise ValidationError(
                "invalid_collocation",
                fid,
                f"pinned to node {node!r} but collocated (via collocate_with) with {seen[1]!r}, "
                f"which is pinned to {seen[0]!r}; pin them to the same node or drop one pin",
            )


def consumers_of(links: Mapping[str, Links]) -> dict[str, list[str]]:
    """Per function, the functions its result is passed to (a dependency named twice: one edge)."""
    consumers: dict[str, list[str]] = {fid: [] for fid in links}
    for fid, (deps, _, _, _) in links.items():
        for dep in dict.fromkeys(deps):
            if dep in consumers:
                consumers[dep].append(fid)
    return consumers


def topological(links: Mapping[str, Links]) -> list[str]:
    """Kahn's order (ties in submission order); shorter than ``links`` when there is a cycle."""
    consumers = consumers_of(links)
    # (a comprehension, not ``dict.fromkeys``: that is one C call holding the GIL for every task,
    # and the upload thread checks big runs while the loop waits for the GIL)
    indegree = {fid: 0 for fid in links}
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
    free(consumers, indegree)  # (one list per function: not freed at once on return)
    return order


def cycle_error(links: Mapping[str, Links], order: Sequence[str]) -> ValidationError:
    """The error for the cycle among the functions Kahn's ``order`` left out."""
    path = _find_cycle(links, set(links).difference(order))
    return ValidationError(
        "cycle",
        path[0],
        f"the functions form a cycle: {' -> '.join(path)} (each arrow: result passed to); "
        f"remove one of these dependencies",
    )


def _find_cycle(links: Mapping[str, Links], candidates: set[str]) -> list[str]:
    """One cycle as a path in data-flow order, first id repeated at the end (iterative DFS)."""
    consumers = consumers_of(links)
    state: dict[str, int] = {}  # 1: on the DFS stack, 2: finished
    for start in links:
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
                    return ids[ids.index(child) :] + [child]
                if child not in state:
                    state[child] = 1
                    stack.append((child, iter(consumers[child])))
                    break
            else:
                state[node] = 2
                stack.pop()
    raise AssertionError("Kahn's algorithm left functions but no cycle was found")


def check_graph(links: Mapping[str, Links], pins: bool = True) -> list[str]:
    """References, collocation pins (unless ``pins`` says none was seen), cycles; the
    topological order."""
    if len(links) == 1:  # a one-function run (every W3 call): nothing to refer to, no cycle
        ((fid, (deps, other, _, _)),) = links.items()
        if not deps and other is None:
            return [fid]
    check_references(links)
    if pins:
        check_collocation_pins(links)
    order = topological(links)
    if len(order) != len(links):
        raise cycle_error(links, order)
    return order


# -- the wire form (the owner) --------------------------------------------------------------------


class WireTasks:
    """A submission's ``TaskMeta`` rows as ``check_submission`` checks them."""

    def __init__(self, tasks: Sequence[Any]) -> None:
        self.tasks = tasks
        self.ids: dict[str, None] = {}
        self.costs: list[resources.Resources] = []  # per row, parsed (once validated)

    def __len__(self) -> int:
        return len(self.tasks)

    def __contains__(self, function_id: object) -> bool:
        return function_id in self.ids

    def validated_order(self, nodes: set[str] | frozenset[str] | None = None) -> list[str]:
        ids = self.ids
        costs = self.costs
        links: dict[str, Links] = {}
        pins = False  # a node pin or a collocate_with was seen
        for meta in self.tasks:
            fid = meta.id
            if type(fid) is not str or not fid:
                check_id(fid)
            if fid in ids:
                raise duplicate_id(fid)
            ids[fid] = None
            deps = meta.deps
            if deps and (type(deps) is not tuple or not all(type(d) is str for d in deps)):
                check_deps(fid, deps)
            if plain_meta(
                meta
            ):  # the common function: only its cost can be wrong (one cached parse)
                try:
                    costs.append(resources.parse_cached(meta.cost, what="cost"))
                except resources.ResourceError:
                    pass
                else:
                    links[fid] = (deps, None, None, False)
                    continue
            kind = "inline" if meta.inline else "regular"
            costs.append(
                check_fields(
                    fid,
                    meta.argument_inclusion,
                    kind,
                    meta.cost,
                    meta.node,
                    meta.collocate_with,
                    meta.max_retries,
                    meta.timeout,
                    meta.priority,
                    nodes,
                )
            )
            links[fid] = (deps, meta.collocate_with, meta.node, meta.inline)
            pins = pins or meta.node is not None or meta.collocate_with is not None
        order = check_graph(links, pins=pins)
        if len(links) > PIECE:  # (a tuple per function: not freed at once on return)
            free(links)
        return order


def plain_meta(meta: Any) -> bool:
    """A function's wire metadata that sets nothing but its cost, argument inclusion and priority
    (no pin, collocation, inline, retries or timeout): checked in full without ``check_fields``."""
    return (
        meta.node is None
        and meta.collocate_with is None
        and meta.inline is False
        and meta.max_retries is None
        and meta.timeout is None
        and type(meta.priority) is int
        and meta.argument_inclusion in ARGUMENT_INCLUSIONS
    )


def wire_specs(msg: Any, frames: Sequence[bytes]) -> list[TaskSpec]:
    """A ``SubmitRun`` / ``SubmitAndWait`` checked (``check_submission``) and turned into the
    scheduler's TaskSpecs, one code frame each; raises ValidationError. A columns submission's
    frames that came as code heads' tails (protocol 6) are read whole (``TaskColumns.whole``)."""
    whole = getattr(msg.tasks, "whole", None)
    if whole is not None:
        frames = whole(frames)
    if len(msg.tasks) == 1:
        lone = _lone_spec(msg, frames)
        if lone is not None:
            return [lone]
    if not len(msg.tasks) <= len(frames) <= len(msg.tasks) + len(msg.packages):
        packages = f" and {len(msg.packages)} code packages" if msg.packages else ""
        raise ValidationError(
            "malformed",
            None,
            f"{len(msg.tasks)} functions{packages} but {len(frames)} code frames",
        )
    view = WireTasks(msg.tasks)
    check_submission(
        view,
        policy=msg.policy,
        max_retries=msg.max_retries,
        outputs=msg.outputs,
        allow_empty=False,
    )
    specs = [
        built_spec(
            meta.id,
            tuple(meta.deps),
            cost,
            bytes(payload),
            meta.argument_inclusion,
            meta.node,
            meta.collocate_with,
            meta.inline,
            meta.max_retries,
            meta.timeout,
            meta.priority,
        )
        for meta, cost, payload in zip(msg.tasks, view.costs, frames[: len(msg.tasks)], strict=True)
    ]
    if len(specs) > PIECE:  # (small ones go at once on return, as ``free`` would let them)
        free(view.ids, view.costs)
    return specs


# The plain one-function submissions taken before (``lone_submission``), by what they ask that
# is the same every call of a W3 client: the function's fields (its id included), the message's
# policy, retries, outputs and packages, the cost's items. Each one's value: the limits it was
# checked against, the types of all those fields and quantities (an equal key of other types,
# True for 1 or 0 for False, is no hit), their longest run id, the frames it takes at most, the
# spec's fields but its payload (no payload kept) and its cost as parsed.
_lone_seen: dict[tuple[Any, ...], tuple[Any, ...]] = {}
_LONE_SEEN_MAX = 256
_lone_meta = operator.attrgetter(
    "id",
    "deps",
    "argument_inclusion",
    "node",
    "collocate_with",
    "inline",
    "max_retries",
    "timeout",
    "priority",
)
_lone_run = operator.attrgetter("policy", "max_retries", "outputs", "packages")


def lone_submission(msg: Any, frames: Sequence[Any], limits: Limits) -> TaskSpec | None:
    """The spec of a submission of one plain function that needs nothing (``_lone_spec``'s) whose
    bounds pass (``intake.check_submission``'s: the run id and the function id within
    ``max_id_chars``, printable, so without a control character); None for anything else (the
    general path checks it from the start and says what is wrong). A submission asking what one
    taken before asked, with the same types, is told by one look-up: only its run id and its
    frames are checked again, its payload and the cost as parsed (one dict, shared: only read)
    put in its spec."""
    tasks = msg.tasks
    if type(tasks) is not tuple or len(tasks) != 1:
        return None
    meta = tasks[0]
    raw = meta.cost
    if type(raw) is not dict:
        return None
    fields = _lone_meta(meta)
    run = _lone_run(msg)
    key = (fields, run, tuple(raw.items()))
    try:
        seen = _lone_seen.get(key)
    except TypeError:  # (an unhashable field: the general path says what is wrong)
        return None
    run_id = msg.run_id
    if (
        seen is None
        or seen[0] is not limits
        or tuple(map(type, (*fields, *run, *raw.values()))) != seen[1]
        or not 1 <= len(frames) <= seen[2]
        or type(run_id) is not str
        or not 0 < len(run_id) <= seen[3]
        or not run_id.isprintable()
    ):
        return _lone_first(msg, frames, limits, key)
    spec = _new_spec(TaskSpec)
    stored = vars(spec)
    stored.update(seen[4])
    stored["payload"] = bytes(frames[0])
    return spec


def _lone_first(msg: Any, frames: Sequence[Any], limits: Limits, key: Any) -> TaskSpec | None:
    """``lone_submission`` of what was not taken before: checked in full, kept when taken."""
    meta = msg.tasks[0]
    fid = meta.id
    run_id = msg.run_id
    longest = limits.max_id_chars
    if not (
        type(fid) is str
        and type(run_id) is str
        and 0 < len(fid) <= longest
        and 0 < len(run_id) <= longest
        and limits.max_tasks_per_run >= 1
        and fid.isprintable()
        and run_id.isprintable()
    ):
        return None
    spec = _lone_spec(msg, frames)
    if spec is not None:
        if len(_lone_seen) >= _LONE_SEEN_MAX:
            _lone_seen.clear()
        fields, run, _ = key
        types = tuple(map(type, (*fields, *run, *meta.cost.values())))
        kept = dict(vars(spec))
        kept["payload"] = b""  # (its place kept: each spec's own is put there)
        _lone_seen[key] = (limits, types, 1 + len(msg.packages), longest, kept)
    return spec


_new_spec = object.__new__


def _lone_spec(msg: Any, frames: Sequence[bytes]) -> TaskSpec | None:
    """The spec of a submission of one function that needs nothing and sets nothing but its cost,
    argument inclusion and priority (every one-task ``execute``), checked as ``wire_specs``'s
    general path checks it, without its views, order and per-row lists; None for anything else,
    a refusal included (the general path says what is wrong)."""
    meta = msg.tasks[0]
    fid = meta.id
    deps = meta.deps
    outputs = msg.outputs
    max_retries = msg.max_retries
    if not (
        type(fid) is str
        and fid
        and type(deps) is tuple
        and not deps
        and plain_meta(meta)
        and msg.policy in POLICIES
        and type(max_retries) is int
        and max_retries >= 0
        and (outputs is None or outputs == () or outputs == (fid,))
        and 1 <= len(frames) <= 1 + len(msg.packages)
    ):
        return None
    try:
        cost = resources.parse_cached(meta.cost, what="cost")
    except resources.ResourceError:
        return None
    return built_spec(
        fid,
        (),
        cost,
        bytes(frames[0]),
        meta.argument_inclusion,
        None,
        None,
        False,
        None,
        None,
        meta.priority,
    )
