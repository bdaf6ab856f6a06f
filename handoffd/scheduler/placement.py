# cython: annotation_typing=False
"""Placement adapter: node names in, node names out, through the placement core's entry point.

The scheduler thinks in node names and ``NodeView``/``TaskRequest`` records; the core
(``handoffd._core.api``) in node indices over resource dicts. This module maps one to the other
and nothing else: which backend, which algorithm, what fits and how nodes score are the core's.
Pure: no clock, no I/O, inputs never mutated.

``backend`` (here and in ``ClusterView``/``OwnerScheduler``) names a backend for tests that compare
the two; None, the default, is the one the core chose for the process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from handoffd._core import api as core
from handoffd.errors import ValidationError

__all__ = [
    "POLICIES",
    "NodeView",
    "TaskRequest",
    "fits_some_capacity",
    "largest_node",
    "order",
    "place",
    "place_batch",
]

POLICIES = core.POLICIES


@dataclass(frozen=True)
class NodeView:
    """A node as placement sees it: total capacity and currently free resources per kind."""

    name: str
    capacity: dict[str, float]
    free: dict[str, float]


@dataclass(frozen=True)
class TaskRequest:
    """One task to place: its demand, an optional required node, an optional preferred node;
    ``follow`` (collocation): the index of an earlier request whose node it takes, consuming
    nothing (the leader's demand holds the group's cost); -1: placed on its own."""

    demand: dict[str, float]
    pin: str | None = None
    prefer: str | None = None
    follow: int = -1


def place(
    requests: Sequence[TaskRequest],
    nodes: Sequence[NodeView],
    policy: str = "binpack",
    backend: str | None = None,
) -> list[str | None]:
    """Node name (or None) per request, in request order; earlier requests consume free first.
    A request pinned to a node that is not among ``nodes`` gets None, and so do its followers;
    an unknown preference is ignored."""
    index: dict[str, int] = {}
    for i, node in enumerate(nodes):
        if index.setdefault(node.name, i) != i:
            raise ValueError(
                f"node name {node.name!r} appears twice (nodes {index[node.name]} and {i})"
            )
    todo: list[int] = []
    pins: list[int] = []
    prefs: list[int] = []
    follow: list[int] | None = None
    at: dict[int, int] = {}  # request index -> its position in todo
    for i, request in enumerate(requests):
        if request.follow >= 0:
            lead = at.get(request.follow)
            if lead is None:
                continue  # its leader is not placeable here: neither is it
            if follow is None:
                follow = [-1] * len(todo)
            follow.append(lead)
            pins.append(-1)
            prefs.append(-1)
            at[i] = len(todo)
            todo.append(i)
            continue
        if request.pin is not None:
            pin = index.get(request.pin)
            if pin is None:
                continue  # pinned to a node that is not (or no longer) here: unplaceable now
            pins.append(pin)
            prefs.append(-1)
        else:
            pins.append(-1)
            prefs.append(index.get(request.prefer, -1) if request.prefer is not None else -1)
        if follow is not None:
            follow.append(-1)
        at[i] = len(todo)
        todo.append(i)
    chosen = core.kernels(backend).place(
        [requests[i].demand for i in todo],
        [n.free for n in nodes],
        [n.capacity for n in nodes],
        pins,
        prefs,
        policy,
        follow,
    )
    out: list[str | None] = [None] * len(requests)
    for i, n in zip(todo, chosen, strict=True):
        if n >= 0:
            out[i] = nodes[n].name
    return out


def place_batch(
    view: Any, free: dict[str, dict[str, float]], batch: list[tuple[Any, ...]]
) -> list[str | None]:
    """Node (or None) per entry of a free pass's batch (``ClusterView._place_free``: run, task
    record, demand, pin, preferred node, leader's entry or -1) over ``view`` (a
    ``ClusterView``): each policy's tasks through ``place`` over the candidates
    (``view._candidates``), earlier policies' placements consuming ``free`` first (its entries
    replaced, never changed in place). The reference the view's short path is held to, and the
    path of batches that mix policies or carry collocation riders."""
    chosen: list[str | None] = [None] * len(batch)
    policies = list(dict.fromkeys([entry[0].options.policy for entry in batch]))
    for policy in policies:
        picks = [i for i, entry in enumerate(batch) if entry[0].options.policy == policy]
        at = {i: j for j, i in enumerate(picks)}  # (a group's members share its policy)
        requests: list[TaskRequest] = []
        for i in picks:
            _, _, need, pin, pref, lead = batch[i]
            if lead >= 0:
                requests.append(TaskRequest({}, follow=at[lead]))
            else:
                requests.append(TaskRequest(need, pin, pref))
        names, frees = view._candidates(free, [r.demand for r in requests if r.follow < 0])
        if not names:
            continue
        views = [
            NodeView(name, view.nodes[name].capacity, f)
            for name, f in zip(names, frees, strict=True)
        ]
        answer = place(requests, views, policy, view.backend)
        for i, node in zip(picks, answer, strict=True):
            chosen[i] = node
            demand = batch[i][2]
            if node is not None and demand:
                # (resources.subtract inlined: a Python call per placed task)
                left = dict(free[node])
                for kind, qty in demand.items():
                    left[kind] = left.get(kind, 0.0) - qty
                free[node] = left
    return chosen


def order(
    priority: Sequence[int],
    consumers: Sequence[Sequence[int]],
    estimate: Sequence[float],
    size: Sequence[float],
    backend: str | None = None,
) -> tuple[list[int], list[float]]:
    """(task indices by priority, upward rank, size, index; upward rank per task); a cycle is a
    ValidationError("cycle")."""
    try:
        return core.kernels(backend).order(priority, consumers, estimate, size)
    except core.CycleError as exc:
        raise ValidationError("cycle", None, str(exc)) from exc


def fits_some_capacity(
    demand: dict[str, float], nodes: Sequence[NodeView], backend: str | None = None
) -> bool:
    """True if some node's *capacity* (idle) holds demand: used for Unschedulable."""
    fits = core.kernels(backend).fits
    return any(fits(demand, node.capacity) for node in nodes)


def largest_node(demand: dict[str, float], nodes: Sequence[NodeView]) -> NodeView | None:
    """The node whose capacity comes closest to holding ``demand`` (None when there are no nodes),
    for the ``Unschedulable`` message ("the largest node has ..."); see ``core.closest``."""
    i = core.closest(demand, [n.capacity for n in nodes])
    return nodes[i] if i >= 0 else None
