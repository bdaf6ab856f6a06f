"""A report message's successes fed as one ``TasksSucceeded`` (columns, what the daemon feeds since
``daemon/reports.py`` stopped building an event per task) move the scheduler exactly as the same
attempts fed as a ``TaskSucceeded`` each, in the same order: same instructions at every step, same
run status, counters and task histories. Random DAGs, nodes, windows and report batches."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scheduler_harness import CPU, Cluster, dispatches, spec

from handoffd.scheduler import events as ev


def drive(columns: bool, n: int, deps: list[list[int]], nodes: int, window: int, steps: Any) -> Any:
    c = Cluster({f"n{i}": {CPU: 2.0} for i in range(nodes)}, window=window)
    specs = [spec(f"t{i}", *(f"t{d}" for d in deps[i] if d < i)) for i in range(n)]
    trace: list[list[str]] = []
    waiting: list[ev.Dispatch] = []
    running: list[tuple[str, str, int]] = []

    def took(out: list[ev.Instruction]) -> None:
        trace.append([repr(i) for i in out])
        waiting.extend(dispatches(out))

    took(c.submit("r", specs, max_retries=1))
    for pick, together, late in steps:
        while waiting:
            d = waiting.pop(0)
            answer = c.reply(d)
            for task_id, attempt in answer[1].accepted:  # type: ignore[attr-defined]
                if ("r", task_id, attempt) in c.costs:  # (else queued on the node)
                    running.append((d.node, task_id, attempt))
            took(c.feed(*answer))
        for node in c.queue:
            running += [(node, t, a) for _, t, a in c.start_queued(node)]
        if not running:
            break
        node = running[pick % len(running)][0]
        mine = [r for r in running if r[0] == node][:together]
        for r in mine:
            running.remove(r)
        for _, t, a in mine:
            c.release(node, "r", t, a)
        done = [(t, a, 10 + i, b"v%d" % i, 0.001 * i) for i, (_, t, a) in enumerate(mine)]
        if late:  # a duplicate of the first report (exactly-once acceptance) inside the batch
            done.append(done[0])
        if columns:
            ids, attempts, sizes, values, durations = (list(x) for x in zip(*done, strict=True))
            report: list[Any] = [
                ev.TasksSucceeded("r", node, ids, attempts, sizes, values, durations)
            ]
        else:
            report = [ev.TaskSucceeded("r", t, a, node, *rest) for t, a, *rest in done]
        took(c.feed(c.update(node), *report))
    run = c.sched.run_state("r")
    histories = (
        {t: (r.state, r.attempt, r.node, r.value, r.size) for t, r in run.tasks.items()}
        if run is not None
        else {}
    )
    return trace, repr(c.sched.run_status("r")), dict(c.sched.counters), histories


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 16),
    deps=st.lists(st.lists(st.integers(0, 15), max_size=3), min_size=16, max_size=16),
    nodes=st.integers(1, 3),
    window=st.sampled_from([1, 4, 32]),
    steps=st.lists(
        st.tuples(st.integers(0, 100), st.integers(1, 5), st.sampled_from([False, False, True])),
        max_size=30,
    ),
)
def test_successes_as_columns_move_the_scheduler_as_one_event_each(
    n: int, deps: list[list[int]], nodes: int, window: int, steps: Any
) -> None:
    assert drive(True, n, deps, nodes, window, steps) == drive(False, n, deps, nodes, window, steps)


def test_a_column_of_successes_finishes_the_run() -> None:
    c = Cluster({"n0": 4.0}, window=4)
    out = c.submit("r", [spec("a"), spec("b"), spec("c", "a", "b")])
    out = c.accept_all(out)
    assert sorted(c.costs) == [("r", "a", 1), ("r", "b", 1)]
    out = c.succeed_many("n0", "r", [("a", 1, 3, b"A", 0.1), ("b", 1, 3, b"B", 0.1)])
    assert [item.task_id for d in dispatches(out) for item in d.items] == ["c"]
    c.accept_all(out)
    out = c.succeed_many("n0", "r", [("c", 1, 3, b"C", 0.1)])
    assert ev.RunFinished("r", "DONE") in out
    assert c.sched.result_location("r", "a") == (b"A", ("n0",))
