"""What makes the owner run a placement pass (both builds).

A dispatch's answer runs one only when it may let placement do something: W1's answers come from
a node that is full (the free it sends with the answer already holds what it accepted), and their
passes found the same room and placed nothing. An answer that leaves room on its node (its free is
older than the dispatch) and a refusal still run one.

A success table asks whether its ends made room once a node, at its end, not once an end: within
a table demand only leaves and the ready queue only grows, so the answer is the same; a table
whose ends bring its node's window below its low-water mark still runs the pass that tops it up."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from test_scheduler_twin import PURE

from handoffd.scheduler import cluster_view as built_cluster_view
from handoffd.scheduler import events as ev
from handoffd.scheduler import owner as built_owner
from handoffd.spec import RunOptions, TaskSpec

BUILDS = {"built": (built_owner, built_cluster_view)}
BUILDS["pure"] = (PURE["handoffd.scheduler.owner"], PURE["handoffd.scheduler.cluster_view"])


def _node(name: str, free: float, version: int, cpu: float = 1.0) -> ev.NodeUpdate:
    return ev.NodeUpdate(name, f"tcp://{name}", True, {"cpu": cpu}, {"cpu": free}, version)


def _specs(run: str, n: int) -> tuple[TaskSpec, ...]:
    return tuple(TaskSpec(f"{run}{i}", (), {"cpu": 1.0}, b"f") for i in range(n))


def _dispatched(out: list[Any]) -> dict[str, list[tuple[str, int]]]:
    sent: dict[str, list[tuple[str, int]]] = {}
    for ins in out:
        if type(ins).__name__ == "Dispatch":
            sent.setdefault(ins.node, []).extend((i.task_id, i.attempt) for i in ins.items)
    return sent


def _table(node: str, run: str, items: list[tuple[str, int]]) -> ev.TasksSucceeded:
    k = len(items)
    ids, tries = [t for t, _ in items], [a for _, a in items]
    return ev.TasksSucceeded(run, node, ids, tries, [0] * k, [None] * k, [0.001] * k)


def _scheduler(owner: ModuleType, **kw: Any) -> Any:
    sched = owner.OwnerScheduler("me", now=0.0, **kw)
    sched.handle_batch([_node("n0", 1.0, 1), _node("n1", 1.0, 1)], 0.0)
    return sched


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_a_full_nodes_answer_runs_no_pass(build: str) -> None:
    owner, _ = BUILDS[build]
    sched = _scheduler(owner)
    out = sched.handle_batch([ev.RunSubmitted("r", _specs("t", 400), RunOptions())], 1.0)
    sent = _dispatched(out)
    assert set(sent) == {"n0", "n1"}  # (a window's worth on each: many tasks stay ready)
    assert sched.run_status("r").counts["READY"] > 0
    version = 1
    for node, items in sent.items():
        version += 1
        # A report says the node is full (what it accepted claimed or queued); then its
        # answer comes with the same free.
        sched.handle_batch([_node(node, 0.0, version)], 2.0)
        passes = sched._view.passes
        answer = ev.DispatchAnswered(node, "r", tuple(items))
        out = sched.handle_batch([_node(node, 0.0, version + 1), answer], 2.0)
        assert _dispatched(out) == {}
        assert sched._view.passes == passes, "an answer that opened no room ran a pass"
        sched.validate()


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_an_answer_that_leaves_room_places_at_once(build: str) -> None:
    owner, _ = BUILDS[build]
    sched = _scheduler(owner)
    out = sched.handle_batch([ev.RunSubmitted("r", _specs("t", 400), RunOptions())], 1.0)
    items = _dispatched(out)["n0"]
    passes = sched._view.passes
    # No newer free with it: the view still holds n0's free of before the dispatch, so taking
    # the dispatch's cost off its pending leaves room there, as before this change.
    out = sched.handle_batch([ev.DispatchAnswered("n0", "r", tuple(items))], 2.0)
    assert sched._view.passes == passes + 1
    assert list(_dispatched(out)) == ["n0"]
    sched.validate()


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_a_refusal_runs_a_pass(build: str) -> None:
    owner, _ = BUILDS[build]
    sched = _scheduler(owner)
    out = sched.handle_batch([ev.RunSubmitted("r", _specs("t", 400), RunOptions())], 1.0)
    (first, *rest) = _dispatched(out)["n0"]
    passes = sched._view.passes
    answer = ev.DispatchAnswered("n0", "r", tuple(rest), ((first[0], first[1], "busy"),))
    sched.handle_batch([_node("n0", 0.0, 2), answer], 2.0)
    assert sched._view.passes == passes + 1
    sched.validate()


def _answered(sched: Any, out: list[Any], version: int) -> dict[str, list[tuple[str, int]]]:
    """Every dispatch in ``out`` answered, its node full: what each node holds now."""
    sent = _dispatched(out)
    for node, items in sent.items():
        sched.handle_batch(
            [_node(node, 0.0, version), ev.DispatchAnswered(node, "r", tuple(items))], 2.0
        )
    return sent


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_a_tables_ends_open_room_once_asked(build: str, monkeypatch: pytest.MonkeyPatch) -> None:
    owner, view_module = BUILDS[build]
    asked: list[str] = []
    if build == "pure":  # (the compiled method cannot be wrapped: its count is the pure one's)
        opened = view_module.ClusterView.room_opened

        def counted(self: Any, node: str, ready: Any) -> bool:
            asked.append(node)
            return bool(opened(self, node, ready))

        monkeypatch.setattr(view_module.ClusterView, "room_opened", counted)
    # (the window's depth alone: 64 tasks out on each node of 1 cpu, its low-water mark 32)
    sched = _scheduler(owner, queue_seconds=None)
    out = sched.handle_batch([ev.RunSubmitted("r", _specs("t", 400), RunOptions())], 1.0)
    held = _answered(sched, out, 2)["n0"]
    assert len(held) > 20
    passes = sched._view.passes
    asked.clear()
    # n0 ends 10 and stays full (it starts queued ones at once: the same free, newer): its
    # window is still above the mark, no room, no pass.
    version = 3
    out = sched.handle_batch([_node("n0", 0.0, version), _table("n0", "r", held[:10])], 3.0)
    assert _dispatched(out) == {}
    assert sched._view.passes == passes
    if build == "pure":
        assert asked == ["n0"], "a table's ends asked room_opened once an end"
    del held[:10]
    # More ends: n0's window falls below its low-water mark and that table's pass tops it up.
    while held:
        version += 1
        out = sched.handle_batch([_node("n0", 0.0, version), _table("n0", "r", held[:10])], 4.0)
        del held[:10]
        if _dispatched(out):
            break
    assert list(_dispatched(out)) == ["n0"]
    assert sched._view.passes == passes + 1
    sched.validate()
