"""Run a handoffd DAG on Ray: ``handoffd.engines.ray.execute(dag, **options)``.

Design note: every regular function is one Ray task (``ray.remote(plan.Call)``) called with its
dependencies' ObjectRefs, in topological order. Costs map to ``num_cpus``, ``num_gpus``,
``memory`` (handoffd's MB as bytes) and custom ``resources``; a pin to a node (its Ray node id,
node name or IP) becomes a hard ``NodeAffinitySchedulingStrategy``; a collocation group runs on
the node where its first member's result lives (the later members wait for it before they are
submitted); retries are ``max_retries`` with ``retry_exceptions=True`` (a handoffd retry covers
the function's own errors too). Ray has no task priority and cannot stop a running task at a
timeout: ``priority`` and per-function ``timeout`` are not used. Ray must be initialised by the
caller (``ray.init(...)``): starting a Ray cluster is not this function's business.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from handoffd.engines import plan as planning
from handoffd.engines._results import task_failed
from handoffd.errors import Timeout, ValidationError

_MB = 1024 * 1024


def execute(
    dag: Any,
    *,
    max_retries: int = 3,
    outputs: Iterable[str] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run ``dag`` on the Ray cluster this process is connected to and return {function id:
    value} like ``handoffd.Client.execute``."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    steps = planning.plan(dag, max_retries=max_retries, outputs=outputs)
    if not ray.is_initialized():
        raise ValueError(
            "handoffd.engines.ray.execute needs a Ray cluster: call ray.init(...) first"
        )
    nodes = _node_ids(ray.nodes())
    refs: dict[str, Any] = {}
    first_of_group: dict[str, Any] = {}
    remote = ray.remote(_run_call)
    for step in steps.steps:
        options = ray_options(step)
        node_id = None
        if step.node is not None:
            node_id = nodes.get(step.node)
            if node_id is None:
                raise ValidationError(
                    "unknown_node",
                    step.id,
                    f"pinned to {step.node!r}, which is no Ray node's id, name or address "
                    f"(known: {', '.join(sorted(nodes)[:10])}); fix the pin",
                )
        elif step.group is not None and step.group in first_of_group:
            first = first_of_group[step.group]
            ray.wait([first], timeout=timeout, fetch_local=False)
            where = ray.experimental.get_object_locations([first]).get(first, {})
            holders = where.get("node_ids") or []
            node_id = holders[0] if holders else None
        if node_id is not None:
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=False)
        ref = remote.options(**options).remote(step.call, *[refs[d] for d in step.deps])
        refs[step.id] = ref
        if step.group is not None:
            first_of_group.setdefault(step.group, ref)
    ready, pending = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout)
    if pending:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise Timeout(f"the DAG did not finish on Ray within {timeout}s")
    for step in steps.steps:  # topological: the first failure is where it started
        try:
            ray.get(refs[step.id])
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            raise task_failed(step, cause, cause.__traceback__, steps.hook_consumers) from None
    values = ray.get([refs[fid] for fid in steps.results])
    return dict(zip(steps.results, values, strict=True))


def _run_call(call: planning.Call, *values: Any) -> Any:
    """The Ray task: ``ray.remote`` takes functions, not callable objects."""
    return call(*values)


def ray_options(step: planning.Step) -> dict[str, Any]:
    """The Ray task options for a step's cost and retries (pure: tested without Ray)."""
    cost = dict(step.cost)
    options: dict[str, Any] = {
        "num_cpus": cost.pop("cpu", 0.0),
        "num_gpus": cost.pop("gpu", 0.0),
        "max_retries": step.retries,
        "retry_exceptions": True,
        "name": step.id,
    }
    memory = cost.pop("memory", 0.0)
    if memory > 0:
        options["memory"] = int(memory * _MB)
    custom = {kind: quantity for kind, quantity in cost.items() if quantity > 0}
    if custom:
        options["resources"] = custom
    return options


def _node_ids(nodes: list[dict[str, Any]]) -> dict[str, str]:
    """Every name a pin may use for a live Ray node -> its node id."""
    out: dict[str, str] = {}
    for node in nodes:
        if not node.get("Alive", True):
            continue
        node_id = node["NodeID"]
        out[node_id] = node_id
        for key in ("NodeName", "NodeManagerAddress", "NodeManagerHostname"):
            if node.get(key):
                out[str(node[key])] = node_id
    return out


__all__ = ["execute", "ray_options"]
