"""A DAG as an engine's tasks: pure, shared by the Dask and Ray adapters.

Design note: each regular function becomes one ``Step``: a picklable ``Call`` that rebuilds the
handoffd call (dependency values variadic or as one list, then ``extra_args``, then ``kwargs``)
and re-runs the inline functions it reads through, exactly as a handoffd worker does
(``worker.invoke``); plus what the engine needs to place it: its regular dependencies (the engine's
futures, in the order the Call reads them), its cost, pin, collocation group, retries and priority.
Serialization hooks (``handoffd.Argument``) are expanded first (``DAG.submitted``), so they run on
an engine the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from handoffd import resources, validation
from handoffd.dag import DAG, Function
from handoffd.errors import ValidationError


class Call:
    """``Call(...)(*values)``: the function's result from its regular dependencies' values.

    ``inputs``: per argument, an int (an index into ``values``) or a nested ``Call`` (an inline
    function, re-run here)."""

    def __init__(
        self,
        code: Any,
        extra_args: list[Any],
        kwargs: dict[str, Any],
        inclusion: str,
        inputs: list[int | Call],
        function_id: str,
    ) -> None:
        self.code = code
        self.extra_args = extra_args
        self.kwargs = kwargs
        self.inclusion = inclusion
        self.inputs = inputs
        self.function_id = function_id
        self.__name__ = function_id  # engines show it in their dashboards

    def __call__(self, *values: Any) -> Any:
        args = [values[i] if isinstance(i, int) else i(*values) for i in self.inputs]
        if self.inclusion == "as_list":
            return self.code(args, *self.extra_args, **self.kwargs)
        return self.code(*args, *self.extra_args, **self.kwargs)


@dataclass
class Step:
    """One regular function as an engine task."""

    id: str
    call: Call
    deps: list[str]  # regular function ids whose values ``call`` takes, in order
    cost: dict[str, float]
    node: str | None
    group: str | None  # collocation group root (None: not collocated with anything)
    retries: int
    priority: int
    timeout: float | None


@dataclass
class Plan:
    steps: list[Step]  # topological order
    results: list[str]  # the ids whose values the caller gets back
    hook_consumers: dict[str, str] = field(default_factory=dict)  # serialize task -> consumer


def plan(dag: DAG, *, max_retries: int = 3, outputs: Iterable[str] | None = None) -> Plan:
    """Validate ``dag`` (the client's rules) and turn it into engine steps."""
    if not isinstance(dag, DAG):
        raise ValidationError(
            "invalid_dag", None, f"expected a handoffd.DAG, got {type(dag).__name__}"
        )
    listed = None if outputs is None or isinstance(outputs, str) else list(outputs)
    validation.check_submission(
        dag,
        max_retries=max_retries,
        outputs=outputs if isinstance(outputs, str) else listed,
        allow_empty=False,
    )
    submitted = dag.submitted()
    functions = submitted.functions
    order = submitted.topological_order()
    groups = _groups(functions)
    steps: list[Step] = []
    for fid in order:
        fn = functions[fid]
        if fn.type == "inline":
            continue
        deps: list[str] = []
        call = _call(fn, functions, deps, {})
        steps.append(
            Step(
                fid,
                call,
                deps,
                dict(resources.parse_cached(fn.cost)),
                fn.node,
                groups.get(fid),
                max_retries if fn.max_retries is None else fn.max_retries,
                fn.priority,
                fn.timeout,
            )
        )
    if listed is None:
        results = [fn.id for fn in dag if fn.type != "inline"]
    else:
        results = listed
    return Plan(steps, results, dict(dag.hook_consumers))


def _call(fn: Function, functions: Any, deps: list[str], index: dict[str, int]) -> Call:
    """``fn``'s Call; its regular dependencies (through inline ones too) appended to ``deps``."""
    inputs: list[int | Call] = []
    for dep in fn.args:
        producer = functions[dep]
        if producer.type == "inline":
            inputs.append(_call(producer, functions, deps, index))
            continue
        if dep not in index:
            index[dep] = len(deps)
            deps.append(dep)
        inputs.append(index[dep])
    return Call(fn.code, list(fn.extra_args), dict(fn.kwargs), fn.argument_inclusion, inputs, fn.id)


def _groups(functions: Any) -> dict[str, str]:
    """Function id -> its collocation group's first member (in order), for collocated ones."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    linked: set[str] = set()
    for fid, fn in functions.items():
        if fn.collocate_with is not None:
            linked.update((fid, fn.collocate_with))
            a, b = find(fid), find(fn.collocate_with)
            if a != b:
                parent[a] = b
    return {fid: find(fid) for fid in linked}


__all__ = ["Call", "Step", "Plan", "plan"]
