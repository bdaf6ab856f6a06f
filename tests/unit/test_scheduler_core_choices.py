"""The owner's placement choices are the placement core's (issue 13 item 4): collocation riders,
locality and the rebalance choice go through ``handoffd._core`` kernels, counted per backend, and
both backends give the scheduler the same placements."""

from __future__ import annotations

from typing import Any

import pytest
from scheduler_harness import Cluster, dispatches, of_type, placed, spec

from handoffd._core import api
from handoffd.scheduler import events as ev

BACKENDS = ["cython", "python"]


def grown(before: dict[tuple[str, str], int], kernel: str, backend: str) -> int:
    return api.decisions().get((kernel, backend), 0) - before.get((kernel, backend), 0)


def locality_and_group(backend: str) -> tuple[list[dict[str, tuple[str, int]]], dict[str, int]]:
    """a runs on n2 and leaves 1 MB there; its consumer b (with rider r) goes to n2 although
    spread alone would pick the emptier n1; returns the placements and the decisions counted."""
    before = api.decisions()
    c = Cluster({"n1": 4, "n2": 4}, free={"n2": 3}, backend=backend)
    out = c.submit(
        "r",
        [spec("a", node="n2"), spec("b", "a"), spec("g", "a", collocate_with="b")],
        policy="spread",
    )
    steps = [placed(out)]
    c.accept_all(out)
    out = c.succeed("n2", "r", "a", 1, size=1_000_000)
    steps.append(placed(out))
    counted = {k: grown(before, k, backend) for k in api.KERNELS}
    return steps, counted


@pytest.mark.parametrize("backend", BACKENDS)
def test_locality_and_collocation_are_decided_by_the_core(backend: str) -> None:
    steps, counted = locality_and_group(backend)
    # g waits for its leader b; b waits for a: only a goes first, to its pin.
    assert steps[0] == {"a": ("n2", 1)}
    # b prefers n2 (a's megabyte is there) over spread's emptier n1; its rider g follows it.
    assert steps[1] == {"b": ("n2", 1), "g": ("n2", 1)}
    assert counted["prefer"] >= 1  # the preference was the core's choice
    assert counted["place"] >= 3  # a, b, and g (its rider decision too)


def test_both_backends_place_the_same() -> None:
    assert locality_and_group("cython")[0] == locality_and_group("python")[0]


def rebalance_asks(backend: str) -> tuple[list[tuple[str, str, tuple[Any, ...]]], int]:
    """Three busy nodes (another owner's work) each hold one of our tasks of unknown duration in
    their queues; a 2-cpu node frees up: which queued ones does the owner ask back?"""
    before = api.decisions()
    nodes = {"b1": 1.0, "b2": 1.0, "b3": 1.0, "idle": 2.0}
    c = Cluster(
        nodes, free=dict.fromkeys(nodes, 0.0), window=8, queue_seconds=0.005, backend=backend
    )
    out = c.submit("r", [spec(f"t{i}") for i in range(4)])
    c.accept_all(out)
    assert not of_type(c.log, ev.Withdraw)
    c.used["idle"] = {}
    out = c.feed(c.update("idle"))
    asks = [(w.node, w.run_id, tuple(w.items)) for w in of_type(out, ev.Withdraw)]
    return asks, grown(before, "take", backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_rebalance_choice_is_the_cores(backend: str) -> None:
    asks, took = rebalance_asks(backend)
    moved = [(node, item) for node, _, items in asks for item in items]
    # idle's 2 free cpus take two of the tasks queued elsewhere (oldest first), not its own
    assert len(moved) == 2 and all(node != "idle" for node, _ in moved), asks
    assert took >= 2  # each asked for because the core's ``take`` chose it


def test_both_backends_rebalance_the_same() -> None:
    assert rebalance_asks("cython")[0] == rebalance_asks("python")[0]


def test_a_real_pass_loads_no_python_path() -> None:
    """Every node chosen in a mixed scenario was chosen by the chosen backend's kernels: the
    other backend's counters do not move (the twin is only a reference)."""
    other = "python" if api.BACKEND == "cython" else "cython"
    before = api.decisions()
    c = Cluster({"n1": 2, "n2": 2}, window=4, queue_seconds=0.005)
    out = c.submit("r", [spec("a"), spec("b", "a"), spec("c", collocate_with="b"), spec("d")])
    c.accept_all(out)
    for d in dispatches(out):
        for item in d.items:
            c.succeed(d.node, d.run_id, item.task_id, item.attempt, size=100)
    assert all(grown(before, k, other) == 0 for k in api.KERNELS)
    assert sum(grown(before, k, api.BACKEND) for k in api.KERNELS) > 0
