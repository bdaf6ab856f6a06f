"""The free pass stops its walk once nothing positive is free, except for what may still go: a task
that costs nothing, and the riders of a collocation group whose leader the pass placed (its cost
holds theirs). ``ClusterView._place_free`` stops before stepping to the next task only when neither
can follow; these cases fail if it stopped whenever nothing was left."""

from __future__ import annotations

import pytest
from scheduler_harness import Cluster, placed, spec


@pytest.mark.parametrize("backend", ["cython", "python"])
def test_a_weightless_task_goes_in_the_pass_that_used_the_last_room(backend: str) -> None:
    c = Cluster({"a": 1.0}, backend=backend)
    out = c.submit("r", [spec("big", priority=2), spec("free", cost={}, priority=1)])
    assert placed(out) == {"big": ("a", 1), "free": ("a", 1)}


@pytest.mark.parametrize("backend", ["cython", "python"])
def test_a_group_rider_follows_its_leader_into_the_last_room(backend: str) -> None:
    c = Cluster({"a": 2.0}, backend=backend)
    out = c.submit("r", [spec("lead"), spec("rider", collocate_with="lead")])
    assert placed(out) == {"lead": ("a", 1), "rider": ("a", 1)}


@pytest.mark.parametrize("backend", ["cython", "python"])
def test_the_walk_stops_at_a_task_that_cannot_fit(backend: str) -> None:
    c = Cluster({"a": 1.0}, backend=backend)
    out = c.submit("r", [spec("one", priority=2), spec("two", priority=1)])
    assert placed(out) == {"one": ("a", 1)}
    assert c.sched.validate() is None
