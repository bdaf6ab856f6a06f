"""Run a handoffd DAG on a Dask cluster: ``handoffd.engines.dask.execute(dag, client=None, ...)``.

Design note: every regular function is one ``client.submit`` of its ``plan.Call`` with its
dependencies' futures, in topological order, so Dask's scheduler sees the same graph. Costs become
Dask worker resources for the kinds the cluster's workers declare (a task asking for a resource no
worker has would wait forever, so ``cpu``/``memory`` undeclared are dropped and any other kind is
``Unschedulable``); a pin becomes ``workers=[name]`` without fallback; a collocation group runs
where its first member ran (the later members wait for it before they are submitted); retries
and priority map to Dask's own. Per-function ``timeout`` is not enforced: Dask cannot stop a
running task. Values stay in the cluster until gathered; the results are the same dict as
``Client.execute``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from handoffd.engines import plan as planning
from handoffd.engines._results import task_failed
from handoffd.errors import Timeout, Unschedulable, ValidationError

#: kinds Dask schedules by itself (threads, memory limits): dropped unless workers declare them
IMPLICIT_KINDS = ("cpu", "memory")


def execute(
    dag: Any,
    client: Any = None,
    *,
    max_retries: int = 3,
    outputs: Iterable[str] | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Run ``dag`` on Dask (``client``: a ``distributed.Client``; None: the current default
    client) and return {function id: value} like ``handoffd.Client.execute``."""
    import distributed

    steps = planning.plan(dag, max_retries=max_retries, outputs=outputs)
    if client is None:
        try:
            client = distributed.get_client()
        except ValueError:
            raise ValueError(
                "handoffd.engines.dask.execute needs a Dask cluster: pass client=, or create a "
                "distributed.Client(...) first"
            ) from None
    workers = client.scheduler_info()["workers"]
    declared: set[str] = set()
    by_name: dict[str, str] = {}
    for address, info in workers.items():
        declared.update(info.get("resources") or {})
        by_name[str(info.get("name", address))] = address
        by_name[address] = address
    token = uuid.uuid4().hex[:12]
    futures: dict[str, Any] = {}
    first_of_group: dict[str, Any] = {}
    for step in steps.steps:
        options: dict[str, Any] = {
            "key": f"{step.id}-{token}",
            "pure": False,
            "retries": step.retries,
            "priority": step.priority,
        }
        wanted = _resources(step, declared)
        if wanted:
            options["resources"] = wanted
        if step.node is not None:
            if step.node not in by_name:
                known = ", ".join(sorted(k for k in by_name if k not in workers)[:10])
                raise ValidationError(
                    "unknown_node",
                    step.id,
                    f"pinned to {step.node!r}, which is no Dask worker's name or address "
                    f"(worker names: {known}); fix the pin",
                )
            options["workers"] = [by_name[step.node]]
            options["allow_other_workers"] = False
        elif step.group is not None and step.group in first_of_group:
            first = first_of_group[step.group]
            distributed.wait([first], timeout=timeout)
            holders = client.who_has([first]).get(first.key) or ()
            if holders:
                options["workers"] = list(holders)
                options["allow_other_workers"] = False
        future = client.submit(step.call, *[futures[d] for d in step.deps], **options)
        futures[step.id] = future
        if step.group is not None:
            first_of_group.setdefault(step.group, future)
    try:
        distributed.wait(list(futures.values()), timeout=timeout)
    except distributed.TimeoutError:
        raise Timeout(f"the DAG did not finish on Dask within {timeout}s") from None
    for step in steps.steps:  # topological: the first failure is where it started
        future = futures[step.id]
        if future.status == "error":
            raise task_failed(step, future.exception(), future.traceback(), steps.hook_consumers)
        if future.status == "cancelled":
            raise Timeout(f"Dask cancelled {step.id!r} (a worker or the client went away)")
    values = client.gather([futures[fid] for fid in steps.results])
    return dict(zip(steps.results, values, strict=True))


def _resources(step: planning.Step, declared: set[str]) -> dict[str, float]:
    wanted: dict[str, float] = {}
    for kind, quantity in step.cost.items():
        if quantity <= 0:
            continue
        if kind in declared:
            wanted[kind] = quantity
        elif kind not in IMPLICIT_KINDS:
            raise Unschedulable(
                step.id,
                step.cost,
                None,
                f"function {step.id!r} needs {kind}={quantity:g}, which no Dask worker declares; "
                f"start workers with --resources '{kind}={quantity:g}' or lower the cost",
            )
    return wanted


__all__ = ["execute", "IMPLICIT_KINDS"]
