"""The short placement path (``ClusterView._place_short``: a batch of one policy without
collocation riders calls the core's ``place`` directly) places exactly as the adapter path
(``_place_batch`` through ``placement.place``), in both builds.

Two owner schedulers of one build get the same random event stream (``test_room_index``'s
driver: heterogeneous nodes, other owners' work, nodes dying and coming back, refusals, pins to
live and lost nodes, collocation, weightless and gpu-only tasks, input locality, priorities, the
three policies, with and without a window); one has ``ClusterView.short`` False. Every
instruction either emits must be equal, step by step, and so must the core's decision counts.
"""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from test_room_index import TwinDriver
from test_scheduler_twin import PURE

from handoffd._core import api as core
from handoffd.scheduler import events as ev
from handoffd.spec import RunOptions, TaskSpec


def _owner_class(pure: bool) -> Any:
    module = (
        PURE["handoffd.scheduler.owner"]
        if pure
        else importlib.import_module("handoffd.scheduler.owner")
    )
    return module.OwnerScheduler


def _driver(seed: int, window: int, queue_seconds: float | None, pure: bool) -> TwinDriver:
    driver = TwinDriver(seed, window, queue_seconds)
    owner = _owner_class(pure)
    kw: dict[str, Any] = {"window": window, "queue_seconds": queue_seconds}
    driver.indexed = owner("owner", now=0.0, **kw)  # the short path (the default)
    driver.full = owner("owner", now=0.0, **kw)
    driver.full._view.short = False
    return driver


@pytest.mark.parametrize("pure", [False, True], ids=["compiled", "pure"])
@pytest.mark.parametrize("window,queue_seconds", [(1, None), (4, None), (32, 0.005)])
@pytest.mark.parametrize("seed", range(5))
def test_the_short_path_places_like_the_adapter(
    seed: int, window: int, queue_seconds: float | None, pure: bool
) -> None:
    driver = _driver(seed, window, queue_seconds, pure)
    before = core.decisions()
    driver.feed()
    for _ in range(250):
        driver.step()
    assert driver.decisions > 20, "too few placements to compare"
    assert driver.indexed._view.short and not driver.full._view.short
    placed = core.decisions().get(("place", core.BACKEND), 0) - before.get(
        ("place", core.BACKEND), 0
    )
    assert placed > 0, "the core placed nothing"


def _one_task(short: bool, pure: bool, spec: TaskSpec, policy: str) -> list[tuple[str, str]]:
    owner = _owner_class(pure)("owner", now=0.0, window=1)
    owner._view.short = short
    caps = {"a": {"cpu": 16.0}, "b": {"cpu": 4.0, "gpu": 4.0}, "c": {"cpu": 2.0, "gpu": 4.0}}
    free = {"a": {}, "b": {"cpu": 4.0, "gpu": 1.0}, "c": {"cpu": 1.0, "gpu": 3.0}}
    owner.handle_batch([ev.NodeUpdate(n, n, True, caps[n], free[n], 1) for n in caps], 0.0)
    out = owner.handle_batch([ev.RunSubmitted("r", [spec], RunOptions(policy=policy))], 0.1)
    return [(i.task_id, d.node) for d in out if isinstance(d, ev.Dispatch) for i in d.items]


@pytest.mark.parametrize("pure", [False, True], ids=["compiled", "pure"])
@pytest.mark.parametrize("policy", ["binpack", "spread", "first_fit"])
@pytest.mark.parametrize(
    "spec",
    [
        TaskSpec("g", (), {"gpu": 1.0}, b"p"),
        TaskSpec("c", (), {"cpu": 1.0}, b"p"),
        TaskSpec("w", (), {}, b"p"),  # weightless: every live node is a candidate
        TaskSpec("p", (), {"cpu": 1.0}, b"p", node="c"),
        TaskSpec("q", (), {"cpu": 1.0}, b"p", node="a"),  # pinned to a full node: waits
    ],
    ids=lambda s: s.id,
)
def test_a_lone_task_goes_where_the_adapter_sends_it(
    spec: TaskSpec, policy: str, pure: bool
) -> None:
    short = _one_task(True, pure, spec, policy)
    assert short == _one_task(False, pure, spec, policy)
    assert (short == []) == (spec.id == "q")
