"""The dispatch window's low-water mark: a node is topped up only once its outstanding demand fell
to half its window, then to the full window in one dispatch, and a task that fits free resources
still goes at once. (That no node idles while tasks are ready, however the nodes report, is
test_scheduler_machine.py's WindowMachine.)"""

from __future__ import annotations

from scheduler_harness import CPU, Cluster, placed, spec

from handoffd.scheduler import events as ev


def _report(c: Cluster, node: str, done: list[tuple[str, str, int]]) -> list[ev.Instruction]:
    """Like a node: the finished tasks release their claims, queued ones start in their place
    (before the report goes out, so it says nothing is free), then one batch of reports."""
    for run_id, task_id, attempt in done:
        c.release(node, run_id, task_id, attempt)
    c.start_queued(node)
    reports = [ev.TaskSucceeded(r, t, a, node, 10, None) for r, t, a in done]
    return c.feed(c.update(node), *reports)


def _running(c: Cluster, node: str) -> list[tuple[str, str, int]]:
    """(run, task, attempt) claimed on ``node``'s ledger (started, not queued); one node here."""
    queued = {(r, t, a) for r, t, a, _ in c.queue[node]}
    return [k for k in c.costs if k not in queued]


def test_a_node_is_topped_up_only_below_low_water_and_then_to_the_full_window() -> None:
    c = Cluster({"n1": 1}, window=8)
    out = c.submit("r", [spec(f"t{i}") for i in range(40)])
    assert len(placed(out)) == 8  # 1 running + 7 queued: the whole window at once
    c.accept_all(out)
    sizes = []
    for _ in range(32):
        before = c.sched.outstanding("n1").get(CPU, 0.0)
        out = _report(c, "n1", _running(c, "n1"))
        items = placed(out)
        if items:
            # topped up only once outstanding demand fell to half the window, then filled up
            assert before - 1 <= 4
            assert c.sched.outstanding("n1") == {CPU: 8.0}
            assert c.queue["n1"], "the node ran dry before it was topped up"
            sizes.append(len(items))
        c.accept_all(out)
    assert sizes and all(size == 4 for size in sizes)  # one message carries half a window
    assert len(sizes) < 32 // 2


def test_a_task_that_fits_free_resources_goes_in_the_same_call_above_low_water() -> None:
    c = Cluster({"n1": 4}, window=2)
    out = c.submit("a", [spec(f"t{i}") for i in range(7)])
    c.accept_all(out)
    assert c.sched.outstanding("n1") == {CPU: 7.0}  # 4 running + 3 queued: above low water (4 of 8)
    first = next(k for k in c.costs if k[0] == "a")
    c.release("n1", *first)  # it finished; the node has 1 cpu free and reports it
    out = c.feed(c.update("n1"), ev.TaskSucceeded(*first, "n1", 10, None))
    assert placed(out) == {}  # the run has nothing ready: nothing to send
    assert placed(c.submit("b", [spec("one")])) == {"one": ("n1", 1)}  # free: dispatched at once


def test_windows_wait_while_another_kind_is_free_then_fill_up_behind_a_placement() -> None:
    # The node reports free memory all along: a pass finds something free but no queued task
    # fitting it, so windows are left alone (as when several owners share the nodes, where a long
    # task queued behind a busy node unbalances them); the next task that fits free resources
    # brings the window back up to full in the same pass.
    c = Cluster({"n1": {CPU: 1.0, "memory": 1000.0}}, window=4)
    out = c.submit("r", [spec(f"t{i}") for i in range(12)])
    assert sorted(placed(out)) == ["t0", "t1", "t2", "t3"]
    c.accept_all(out)
    for task in ("t0", "t1", "t2"):  # the node starts the next queued task itself each time
        out = _report(c, "n1", [("r", task, 1)])
        assert placed(out) == {}, f"topped up after {task} with memory free and no cpu"
    assert c.sched.outstanding("n1") == {CPU: 1.0}
    out = _report(c, "n1", [("r", "t3", 1)])  # idle: its cpu is free again
    assert sorted(placed(out)) == ["t4", "t5", "t6", "t7"]
