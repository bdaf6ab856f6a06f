"""DAG and Function: the user's description of a run, its validation, order and critical path.

Design note: a DAG is an insertion-ordered dict of id -> Function. Every graph algorithm here is
iterative (Kahn's algorithm for the order, an explicit-stack DFS for cycle paths), so a 10,000-function
chain validates in milliseconds and never meets Python's recursion limit. The rules are
``handoffd.validation``'s, shared with the owner's check of the wire form; the DAG is the view of a
submission that run_local and the client hand to ``validation.check_submission``. It checks each
function on its own first (in insertion order, so the first error reported is stable), then the
references between functions, then cycles (one pass over the functions does the common checks and
Kahn's in-degrees; the other passes run only when it saw something they could report).
``wire_tasks`` turns the DAG into what a submission sends: per function a row of plain metadata
(``messages.TaskMeta``'s fields) plus one cloudpickled payload, which only worker processes
unpickle; ``to_specs`` gives the same as TaskSpecs (local runs).
Edges run from a dependency to its consumer ("a -> b": a's result is passed to b).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from handoffd import resources, validation, values
from handoffd.arguments import (
    DESERIALIZE_SUFFIX,
    SERIALIZE_SUFFIX,
    Argument,
    DeserializeHook,
    SerializeHook,
    dep_id,
)
from handoffd.errors import ValidationError
from handoffd.spec import TaskSpec
from handoffd.validation import ARGUMENT_INCLUSIONS, FUNCTION_TYPES

Estimate = Callable[["Function"], float] | Mapping[str, float] | None
#: one function as a submission sends it: the fields of ``messages.TaskMeta``, in order
TaskRow = tuple[
    str, tuple[str, ...], dict[str, float], str, str | None, str | None, bool, int | None,
    float | None, int,
]  # fmt: skip


#: the DAGs of the enclosing ``with DAG()`` blocks, innermost last (per thread and task)
_BUILDING: ContextVar[tuple[DAG, ...]] = ContextVar("handoffd_building", default=())


def active_dag() -> DAG | None:
    """The DAG of the innermost ``with DAG()`` block, or None outside every block."""
    building = _BUILDING.get()
    return building[-1] if building else None


def _default_cost() -> dict[str, Any]:
    return {"cpu": 1}


@dataclass
class Function:
    """One node of a DAG: a callable, where its inputs come from, and how it may be run."""

    id: str
    code: Callable[..., Any] = None  # type: ignore[assignment]  # None only for type="input"
    # dependency ids (or handoffd.Argument with serialization hooks), results passed in this order
    args: list[Any] = field(default_factory=list)
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
    # Streaming pipelines only (client.stream; a run ignores them): replicas of the stage, its
    # micro-batches (the function then takes a list), and a per-replica init whose result is
    # passed first to each call.
    parallelism: int = 1
    batch_size: int | None = None
    batch_timeout: float | None = None
    init: Callable[[], Any] | None = None

    @property
    def inline(self) -> bool:
        return self.type == "inline"


class DAG:
    """An ordered set of Functions keyed by id; ``add_function`` chains."""

    # the dag.py's directory ``handoffctl submit`` read it from (its modules are shipped too)
    _source_dir: str | None = None

    def __init__(self) -> None:
        self._functions: dict[str, Function] = {}
        # Set by decorated calls (handoffd.decorator): the user's line per function id, named in
        # validation errors, and the next generated id per function name.
        self.call_sites: dict[str, str] = {}
        self.id_counters: dict[str, Iterator[int]] = {}
        self._arguments = False  # the last validation met a handoffd.Argument in some args
        # serialize task id -> its consumer, for the last expansion (errors name the consumer)
        self.hook_consumers: dict[str, str] = {}

    # -- the decorator API's block ----------------------------------------------------------------
    def __enter__(self) -> DAG:
        """Decorated functions (``@handoffd.function``) called in this block add to this DAG."""
        _BUILDING.set((*_BUILDING.get(), self))
        return self

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        building = _BUILDING.get()
        if building and building[-1] is self:
            _BUILDING.set(building[:-1])
        if kind is None:
            self.validate()  # a mistake surfaces at the block, naming the call's line

    # -- building ---------------------------------------------------------------------------
    def add_function(self, function: Function) -> DAG:
        """Add a function; a duplicate id raises ValidationError('duplicate_id') at once."""
        if not isinstance(function, Function):
            raise TypeError(
                f"add_function expects a handoffd.Function, got {type(function).__name__}"
            )
        fid = function.id
        if type(fid) is not str or not fid:  # (the usual id passes without a call a function)
            validation.check_id(fid)
        if fid in self._functions:
            raise validation.duplicate_id(fid)
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
        self.validated_order(nodes)

    def validated_order(self, nodes: set[str] | frozenset[str] | None = None) -> list[str]:
        """``validate``, and the topological order (as ``_kahn``) built in the same pass.

        One loop checks each function (the full ``_check_function`` only for functions that set
        anything beyond ids, args and plain literals) and builds Kahn's in-degrees; the reference,
        collocation and cycle checks run only when that loop saw something for them to find, so
        the first error reported is the one the separate passes would report."""
        if not self.call_sites:
            return self._validated_order(nodes)
        try:
            return self._validated_order(nodes)
        except ValidationError as exc:
            raise self._at_call_site(exc) from None

    def _at_call_site(self, exc: ValidationError) -> ValidationError:
        """``exc`` naming the line of the decorated call that added its function, if any."""
        site = self.call_sites.get(exc.function_id or "")
        if site is None or site in exc.message:
            return exc
        return ValidationError(exc.kind, exc.function_id, f"{exc.message} (call at {site})")

    def _validated_order(self, nodes: set[str] | frozenset[str] | None = None) -> list[str]:
        functions = self._functions
        self._arguments = False
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
            if not plain(fn):
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
                    if isinstance(dep, Argument):
                        _check_function(fn, nodes)  # its other fields, in the usual order
                        dep.check(fid)
                        self._arguments = True
                        dep = dep.id
                    else:
                        _check_function(fn, nodes)  # invalid_args, or its earlier error
                outs = consumers.get(dep)
                if outs is None:
                    if dep not in functions:
                        references = True
                    consumers[dep] = [key]
                else:
                    outs.append(key)
        if references:
            validation.check_references(self._links())
        if pins:
            validation.check_collocation_pins(self._links())
        for fid in order:  # grows while it is read: the queue of Kahn's algorithm
            outs = consumers.get(fid)
            if outs is not None:
                for out in outs:
                    left = indegree[out] - 1
                    indegree[out] = left
                    if left == 0:
                        order.append(out)
        if len(order) != len(functions):
            links = self._links()
            raise validation.cycle_error(links, validation.topological(links))
        return order

    def _links(self) -> dict[str, validation.Links]:
        return {
            fid: (_dep_ids(fn.args), fn.collocate_with, fn.node, fn.type == "inline")
            for fid, fn in self._functions.items()
        }

    # -- order and critical path --------------------------------------------------------------
    def _consumers(self) -> dict[str, list[str]]:
        consumers: dict[str, list[str]] = {fid: [] for fid in self._functions}
        for fn in self._functions.values():
            for dep in dict.fromkeys(_dep_ids(fn.args)):  # a dependency passed twice: one edge
                if dep in consumers:
                    consumers[dep].append(fn.id)
        return consumers

    def _kahn(self) -> list[str]:
        return validation.topological(self._links())

    def topological_order(self) -> list[str]:
        """Function ids, every dependency before its consumers (ties in insertion order)."""
        return self.validated_order()

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
    def to_specs(self, **submission: Any) -> list[TaskSpec]:
        """Validate, then give one TaskSpec per function in topological order (``submission``:
        the run's options, as ``wire_tasks`` takes them)."""
        rows, payloads = self.wire_tasks(**submission)
        return [
            TaskSpec(r[0], r[1], dict(r[2]), p, r[3], r[4], r[5], r[6], r[7], r[8], r[9])
            for r, p in zip(rows, payloads, strict=True)
        ]

    def wire_tasks(
        self,
        *,
        policy: str | None = None,
        max_retries: int | None = None,
        outputs: Iterable[str] | None = None,
        allow_empty: bool = True,
        packages: tuple[str, ...] = (),
    ) -> tuple[list[TaskRow], list[bytes]]:
        """Validate the submission (``validation.check_submission`` with these run options), then
        one row per function in topological order, and its payload. ``packages``: the sha256
        of the code packages the run ships (each callable is wrapped to put them on the path).

        A row holds the fields of ``messages.TaskMeta`` in their order (what a submission sends;
        ``codec.Rows`` packs the rows as they are), so a submission builds no TaskSpec or TaskMeta
        objects. Rows may share their ``cost`` dict: copy it before changing it."""
        order = validation.check_submission(
            self,
            policy=policy,
            max_retries=max_retries,
            outputs=outputs,
            allow_empty=allow_empty,
        )
        if self._arguments:  # serialization hooks: submit the expanded DAG (handoffd.arguments)
            return self._expanded().wire_tasks(
                policy=policy, max_retries=max_retries, outputs=outputs, allow_empty=allow_empty
            )
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
                        code = codes[code_key] = values.dumps_code(fn.code, packages)
                    payload = values.dumps_call(code, list(fn.extra_args), dict(fn.kwargs))
                    if bare:
                        shared[code_key] = payload
            except Exception as exc:
                raise self._at_call_site(
                    ValidationError(
                        "unpicklable",
                        fid,
                        f"its code, extra_args or kwargs cannot be shipped to workers "
                        f"({type(exc).__name__}: {exc}); pass plain data and functions, "
                        f"not open files, locks, sockets or generators",
                    )
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

    # -- serialization hooks -------------------------------------------------------------------
    def submitted(self) -> DAG:
        """The DAG a submission runs: this one, or, when some args hold a ``handoffd.Argument``
        with hooks, a copy with its serialize and deserialize functions added."""
        for fn in self._functions.values():
            if isinstance(fn.args, list) and any(type(dep) is not str for dep in fn.args):
                self.validate()
                return self._expanded()
        return self

    def _expanded(self) -> DAG:
        functions = self._functions
        groups = _collocation_groups(self._links())
        out = DAG()
        out.call_sites = dict(self.call_sites)
        for fid, fn in functions.items():
            if fid in out._functions:  # a hidden hook function took a user's id
                raise validation.duplicate_id(fid)
            if not any(isinstance(dep, Argument) for dep in fn.args):
                out._functions[fid] = fn
                continue
            args: list[str] = []
            for index, dep in enumerate(fn.args):
                if not isinstance(dep, Argument):
                    args.append(dep)
                    continue
                producer = functions[dep.id]
                if not dep.hooked or (not dep.always and _same_node(producer, fn, groups)):
                    args.append(dep.id)
                    continue
                args.append(out._add_hooks(fn, dep, producer, index))
            out._functions[fid] = _replace_args(fn, args)
        self.hook_consumers = out.hook_consumers
        return out

    def _add_hooks(self, consumer: Function, arg: Argument, producer: Function, index: int) -> str:
        """Add the serialize task and the inline deserialize function of one hooked argument;
        the id of the latter (the consumer's new dependency)."""
        base = f"{consumer.id}:{arg.id}"
        if base + SERIALIZE_SUFFIX in self._functions or base + SERIALIZE_SUFFIX == consumer.id:
            base = f"{base}#{index}"
        for suffix in (SERIALIZE_SUFFIX, DESERIALIZE_SUFFIX):
            if base + suffix in self._functions:
                raise validation.duplicate_id(base + suffix)
        # Both inline: the consumer's node decides at run time whether the value leaves the
        # producer's node, and if so a holder runs serialize (daemon.executor_hooks).
        serialize = Function(
            id=base + SERIALIZE_SUFFIX,
            code=SerializeHook(arg.serialize, arg.id, consumer.id),  # type: ignore[arg-type]
            args=[arg.id],
            cost={},
            type="inline",
        )
        hook = DeserializeHook(
            arg.deserialize,  # type: ignore[arg-type]
            arg.id,
            consumer.id,
            serialize.code if arg.always else None,  # type: ignore[arg-type]
        )
        deserialize = Function(
            id=base + DESERIALIZE_SUFFIX,
            code=hook,
            args=[serialize.id],
            cost={},
            type="inline",  # re-run in the consumer's own job, just before its call
        )
        self.hook_consumers[serialize.id] = consumer.id
        site = self.call_sites.get(consumer.id)
        for hidden in (serialize, deserialize):
            if hidden.id in self._functions:
                raise validation.duplicate_id(hidden.id)
            self._functions[hidden.id] = hidden
            if site is not None:
                self.call_sites[hidden.id] = site
        return deserialize.id


def _dep_ids(args: Any) -> Any:
    """``args`` with each ``handoffd.Argument`` replaced by its id (``args`` itself if none)."""
    if type(args) is list and all(type(dep) is str for dep in args):
        return args
    if not isinstance(args, (list, tuple)):
        return args
    return [dep_id(dep) for dep in args]


def _replace_args(fn: Function, args: list[str]) -> Function:
    from dataclasses import replace

    return replace(fn, args=args)


def _collocation_groups(links: Mapping[str, validation.Links]) -> dict[str, str]:
    """Function id -> the root of its collocation group (functions linked by collocate_with)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for fid, (_, other, _, _) in links.items():
        if other is not None:
            a, b = find(fid), find(other)
            if a != b:
                parent[a] = b
    return {fid: find(fid) for fid in links}


def _same_node(producer: Function, consumer: Function, groups: Mapping[str, str]) -> bool:
    """The consumer is known, before placement, to run where the producer's value is: the
    producer is inline (re-run in the consumer's job), both are pinned to one node, or both are
    in one collocation group."""
    if producer.type == "inline":
        return True
    if consumer.type == "inline":
        return False  # it runs inside each of its consumers' jobs, wherever they are
    if producer.node is not None and producer.node == consumer.node:
        return True
    return groups[producer.id] == groups[consumer.id]


def new() -> DAG:
    """An empty DAG (same as ``DAG()``)."""
    return DAG()


def plain(fn: Function) -> bool:
    """``fn`` sets nothing but its id, code, literal args, ``priority`` and
    ``argument_inclusion`` (the default cost, no pin, retries, timeout or kwargs): it passes every
    rule ``_check_function`` would check, so ``_validated_order`` skips it (and ``client_one``
    sends such a one-function DAG in one go)."""
    return (
        type(fn.args) is list
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
        and type(cost := fn.cost) is dict
        and len(cost) == 1
        and (type(cpu := cost.get("cpu")) is int or type(cpu) is float)
        and cpu == 1  # the default cost, {"cpu": 1} (or 1.0), parsed without a look-up
        and callable(fn.code)
    )


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
    """Checks that need only this function (no references to others): its Python objects here,
    the rules every submission follows in ``validation``."""
    fid = fn.id
    if not callable(fn.code):
        raise ValidationError(
            "invalid_code",
            fid,
            f"code must be a callable (a function, lambda or object with __call__), "
            f"got {type(fn.code).__name__} {fn.code!r:.60}",
        )
    validation.check_deps(fid, _dep_ids(fn.args))
    if fn.type == "inline" and str(fid).endswith(SERIALIZE_SUFFIX):
        if not isinstance(fn.code, SerializeHook):  # the executors would treat it as one
            raise ValidationError(
                "invalid_id",
                fid,
                f"an inline function's id may not end with {SERIALIZE_SUFFIX!r}: that is reserved "
                f"for the serialize hooks of handoffd.Argument; rename it",
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
    validation.check_fields(
        fid,
        fn.argument_inclusion,
        fn.type,
        fn.cost,
        fn.node,
        fn.collocate_with,
        fn.max_retries,
        fn.timeout,
        fn.priority,
        nodes,
    )


__all__ = ["DAG", "Function", "new", "active_dag", "ARGUMENT_INCLUSIONS", "FUNCTION_TYPES"]
