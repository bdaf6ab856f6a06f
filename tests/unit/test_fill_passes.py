"""The fill passes (``scheduler/fill_passes.py``) check their node sets unordered before building
the ordered node lists (``room_index``'s ``_Ordered``, rebuilt after each change of a set): a pass
that fills nothing leaves the order unbuilt and dispatches nothing; the wave check is the same in
both builds."""

from __future__ import annotations

import random
from types import ModuleType
from typing import Any

import pytest
from pure_build import pure
from scheduler_harness import Cluster, spec

from handoffd.scheduler import fill_passes
from handoffd.scheduler.room_index import NodeState


def _pure() -> ModuleType:
    """``fill_passes`` run from its .py source, whatever is compiled beside it."""
    return pure(fill_passes, "handoffd_fill_passes_pure")


def _full_cluster(backend: str, queue_seconds: float | None) -> Cluster:
    """Two nodes of one cpu our tasks fill (their windows of 4; with a time budget, one task of
    unknown duration each), with more queued."""
    c = Cluster({"a": 1.0, "b": 1.0}, window=4, queue_seconds=queue_seconds, backend=backend)
    c.submit("r", [spec(f"t{i}") for i in range(40)])
    assert c.sched._ready  # more queued than the nodes take
    out = 4.0 if queue_seconds is None else 1.0
    assert c.sched._view.outstanding == {"a": {"cpu": out}, "b": {"cpu": out}}
    return c


@pytest.mark.parametrize("backend", ["cython", "python"])
@pytest.mark.parametrize("low_water", [True, False])
def test_a_window_fill_that_opens_nothing_builds_no_ordered_list(
    backend: str, low_water: bool
) -> None:
    c = _full_cluster(backend, None)
    view, ready = c.sched._view, c.sched._ready
    rooms = view._rooms
    rooms.refresh(view)
    # (a node in the set whose window is full: as after the free pass's dispatches closed it)
    rooms._fillable.put("a", True)
    assert rooms._fillable.order is None
    sent: list[Any] = []
    view._fill_windows(rooms.alive(view.nodes), ready, lambda *a: sent.append(a), low_water)
    assert sent == []
    assert rooms._fillable.order is None  # was ["a"], built and read for nothing


@pytest.mark.parametrize("backend", ["cython", "python"])
def test_a_wave_fill_that_finds_no_wave_room_builds_no_ordered_list(backend: str) -> None:
    c = _full_cluster(backend, 1.0)
    view, ready = c.sched._view, c.sched._ready
    rooms = view._rooms
    rooms.refresh(view)
    rooms._with_wave.put("b", True)  # (our demand fills its capacity: no wave room)
    assert rooms._with_wave.order is None
    sent: list[Any] = []
    view._fill_waves(rooms.alive(view.nodes), ready, lambda *a: sent.append(a))
    assert sent == []
    assert rooms._with_wave.order is None


@pytest.mark.parametrize("backend", ["cython", "python"])
def test_a_wave_fill_with_wave_room_still_queues(backend: str) -> None:
    c = Cluster({"a": 2.0}, window=4, queue_seconds=1.0, backend=backend)
    view = c.sched._view
    c.submit("r", [spec(f"t{i}") for i in range(4)])
    # two placed on the free room, nothing else goes to a window of unknown durations; then our
    # demand there drops (as when a report says one ended), and the wave pass queues one more
    assert view.outstanding == {"a": {"cpu": 2.0}}
    view.outstanding["a"] = {"cpu": 1.0}
    view._rooms.refresh(view)
    view._rooms._with_wave.put("a", True)
    view._rooms._with_wave.order = None
    sent: list[Any] = []
    view._fill_waves(view._rooms.alive(view.nodes), c.sched._ready, lambda *a: sent.append(a))
    assert [(s[1].id, s[2], s[3]) for s in sent] == [("t2", "a", True)]


def test_the_wave_check_is_the_same_in_both_builds() -> None:
    pure = _pure()
    rng = random.Random(25)
    kinds = ["cpu", "mem", "gpu"]
    for _ in range(2000):
        capacity = {k: rng.choice([0.0, 1e-9, 0.5, 1.0, 2.0]) for k in rng.sample(kinds, 2)}
        n = NodeState("n", "n", True, capacity, dict(capacity), 1)
        outstanding: dict[str, dict[str, float]] = {}
        if rng.random() < 0.8:
            outstanding["n"] = {
                k: rng.choice([0.0, 0.5, 1.0, 2.0 - 1e-10, 2.0]) for k in rng.sample(kinds, 2)
            }
        assert fill_passes._wave_open(n, outstanding) == pure._wave_open(n, outstanding)
    assert fill_passes._wave_open(None, {}) is False
    assert pure._wave_open(None, {}) is False
