"""A success report table applied in one compiled pass (``scheduler.successes``) moves the owner
exactly as the same rows fed record by record (a ``TaskSucceeded`` each: ``_succeeded`` ->
``RunState.succeeded`` -> ``RunState.move``, the reference): random DAGs with and without requested
outputs (values freed), attempts started or not, stale, duplicate, unknown and wrong-node rows, a
node killed and a run cancelled midway (the rows the pass leaves to the record-by-record path).
After every step the instructions are the same and at the end every task record, the run's books,
the owner's counters and its per-node books are; ``validate()`` runs after every event
(``Cluster.feed``). The pass's pure-Python build is held to the same reference."""

from __future__ import annotations

import random
from typing import Any

import pytest
import scheduler_harness
from scheduler_harness import CPU, Cluster, dispatches, spec
from test_scheduler_twin import PURE

from handoffd.scheduler import events as ev
from handoffd.scheduler import history, successes

_FIELDS = (
    "state",
    "attempt",
    "node",
    "failures",
    "losses",
    "completions",
    "size",
    "value",
    "locations",
    "delayed",
    "moves",
    "attempts",
    "order",
    "queued",
    "in_heap",
    "charge",
)


def digest(c: Cluster) -> Any:
    sched = c.sched
    run = sched.run_state("r")
    books: Any = None
    if run is not None:
        # (copies: a digest must not see the lists that later steps grow)
        tasks = {t: repr([getattr(r, f) for f in _FIELDS]) for t, r in sorted(run.tasks.items())}
        books = (
            tasks,
            run.state,
            run.remaining,
            sorted(run.tally.items()),
            sorted(run.holders),
            sorted(run.unfinished.items()),
            list(run.freed),
            sorted(run.placed.items()),
            run.finished,
            list(run.ready_heap),
            run.ready_line[run.ready_at :],
        )
    view = sched._view
    return (
        books,
        repr(sched.run_status("r")),
        list(sched.counters.items()),  # (in order: the pass writes its counts at its end)
        sorted(sched._lost.out_since().items()),
        sorted((n, sorted(view.unacked_of(n).items())) for n in view.unacked),
        sched._dirty,
        # (the node's demand and work in order, floats by repr: a table's books, written once
        # for its rows, must be bit for bit those of its rows one by one)
        repr([(n, list(load.items())) for n, load in view.outstanding.items()]),
        repr(list(view.work.items())),
        # (what the durations learned, in order, floats by repr: a table's blocks must be its
        # rows one by one)
        repr((list(view.durations.by_function.items()), list(view.durations.by_shape.items()))),
    )


def drive(columns: bool, seed: int, report: bool = False) -> Any:
    """``report``: each table carries its report's columns (pid, start, end, bytes in) and the
    scheduler writes them in the history (``columns``), or the shell's ``observe_done`` wrote
    them before the rows went one by one (the reference)."""
    rng = random.Random(seed)
    nodes = rng.randint(1, 3)
    c = Cluster({f"n{i}": {CPU: 2.0} for i in range(nodes)}, window=rng.choice([1, 4, 32]))
    n = rng.randint(1, 24)
    specs = [
        spec(f"t{i}", *{f"t{rng.randrange(i)}" for _ in range(rng.randint(0, 3)) if i})
        for i in range(n)
    ]
    outputs = None
    if rng.random() < 0.5:
        outputs = tuple(s.id for s in specs if rng.random() < 0.3) or (specs[-1].id,)
    trace: list[Any] = []
    waiting: list[ev.Dispatch] = []
    running: list[tuple[str, str, int]] = []

    def took(out: list[ev.Instruction]) -> None:
        trace.append([repr(i) for i in out])
        trace.append(digest(c))
        waiting.extend(dispatches(out))

    took(c.submit("r", specs, outputs=outputs, max_retries=1))
    for _ in range(80):
        while waiting:
            d = waiting.pop(0)
            if not c.alive[d.node]:
                continue
            answer = c.reply(d)
            for task_id, attempt in answer[1].accepted:  # type: ignore[attr-defined]
                if ("r", task_id, attempt) in c.costs:  # (else queued on the node)
                    running.append((d.node, task_id, attempt))
            took(c.feed(*answer))
        for node in c.queue:
            if c.alive[node]:
                running += [(node, t, a) for _, t, a in c.start_queued(node)]
        roll = rng.random()
        if roll < 0.02:
            took(c.feed(ev.CancelRequested("r")))
        elif roll < 0.04 and sum(c.alive.values()) > 1:
            victim = rng.choice([n for n, up in c.alive.items() if up])
            running = [r for r in running if r[0] != victim]
            took(c.kill(victim))
            continue
        if not running:
            break
        node = rng.choice(running)[0]
        mine = [r for r in running if r[0] == node][: rng.randint(1, 6)]
        rows: list[tuple[str, int, int, bytes | None, float]] = []
        for r in mine:
            running.remove(r)
            c.release(node, "r", r[1], r[2])
            if rng.random() < 0.2:  # its start reported first: RUNNING -> DONE
                took(c.feed(ev.TaskStarted("r", r[1], r[2], node)))
            ran = rng.choice([0.01, round(rng.uniform(0.0, 0.05), 6), -1.0])
            rows.append((r[1], r[2], rng.randint(0, 99), rng.choice([None, b"v"]), ran))
        for _ in range(rng.randint(0, 2)):  # stale, unknown, duplicate rows
            task_id, attempt = rng.choice([*((t, a) for t, a, *_ in rows), ("t0", 1), ("x", 1)])
            rows.insert(
                rng.randrange(len(rows) + 1), (task_id, attempt + rng.choice([0, 1]), 1, None, 0.0)
            )
        sender = node if rng.random() < 0.95 else rng.choice(sorted(c.alive))
        ids, attempts, sizes, values, durations = (list(x) for x in zip(*rows, strict=True))
        said: list[Any] = [None] * 4
        if report:  # (pids, starts, ends (0.0: not said), bytes in)
            said = [
                [rng.randint(1, 9) for _ in rows],
                [rng.choice([0.0, 1.5, 2.25]) for _ in rows],
                [rng.choice([0.0, 3.5, 4.75]) for _ in rows],
                [rng.choice([0, 64]) for _ in rows],
            ]
            if not columns and c.sched.run_state("r") is not None:
                history.observe_done(
                    c.sched.run_state("r").tasks, sender, ids, attempts, *said, sizes, []
                )
        if columns:
            out: list[Any] = [
                ev.TasksSucceeded("r", sender, ids, attempts, sizes, values, durations, *said)
            ]
        else:
            out = [ev.TaskSucceeded("r", t, a, sender, *rest) for t, a, *rest in rows]
        took(c.feed(*([c.update(sender)] if c.alive[sender] else []), *out))
    return trace


@pytest.mark.parametrize("seed", range(60))
def test_a_report_table_moves_the_owner_as_its_rows_one_by_one(seed: int) -> None:
    assert drive(True, seed) == drive(False, seed)


@pytest.mark.parametrize("seed", range(0, 60, 3))
def test_the_pure_python_pass_moves_the_owner_as_the_reference(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The whole scheduler from source: a compiled owner cimports ``successes`` (owner.pxd), so
    # replacing the module attribute alone would leave the compiled pass in use.
    pure_owner = PURE["handoffd.scheduler.owner"]
    pure_successes = PURE["handoffd.scheduler.successes"]
    assert pure_owner.successes is pure_successes and pure_successes is not successes
    assert pure_successes.__file__.endswith(".py")
    monkeypatch.setattr(scheduler_harness, "OwnerScheduler", pure_owner.OwnerScheduler)
    assert drive(True, seed) == drive(False, seed)


@pytest.mark.parametrize("seed", range(60))
def test_a_table_with_its_report_columns_writes_the_history_the_shell_and_rows_wrote(
    seed: int,
) -> None:
    """A table carrying its report's columns (``TasksSucceeded.pids`` ...): each accepted row's
    attempt row built once with its close, the rows not taken (stale, unknown, duplicate, after
    the run's end, a dead node's, a cancelled run's) observed: every task record, attempt rows
    included, and every instruction as the shell's ``observe_done`` then the rows one by one."""
    assert drive(True, seed, report=True) == drive(False, seed, report=True)


@pytest.mark.parametrize("seed", range(0, 60, 3))
def test_the_pure_python_pass_writes_the_reported_history_as_the_reference(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    pure_owner = PURE["handoffd.scheduler.owner"]
    monkeypatch.setattr(scheduler_harness, "OwnerScheduler", pure_owner.OwnerScheduler)
    assert drive(True, seed, report=True) == drive(False, seed, report=True)


def test_the_pass_takes_a_table_and_skips_what_is_stale() -> None:
    c = Cluster({"n0": 4.0}, window=4)
    c.accept_all(c.submit("r", [spec("a"), spec("b"), spec("c", "a", "b")]))
    for task_id in ("a", "b"):
        c.release("n0", "r", task_id, 1)
    rows = [
        ("a", 2, 1, None, 0.1),
        ("a", 1, 3, b"A", 0.1),
        ("zz", 1, 1, None, 0.1),
        ("b", 1, 3, b"B", 0.1),
        ("a", 1, 4, b"X", 0.1),
    ]
    ids, attempts, sizes, values, durations = (list(x) for x in zip(*rows, strict=True))
    run = c.sched.run_state("r")
    cancels: list[Any] = []
    assert successes.apply(
        run, c.sched._view, "n0", ids, attempts, sizes, values, durations, 1.0, cancels
    ) == (5, False)
    assert cancels == []
    a, b = run.tasks["a"], run.tasks["b"]
    assert (a.state, a.value, a.size, a.completions) == (
        "DONE",
        b"A",
        3,
        1,
    )  # the duplicate skipped
    assert (b.state, b.value, run.tasks["c"].state) == ("DONE", b"B", "READY")
    assert run.tally["DONE"] == 2 and run.remaining == 1


def _listened(columns: bool) -> list[Any]:
    """What a run's listener sees of the run's tally and the owner's counters at each DONE move of
    a report table of six tasks (two of them started first, one chain) applied by the pass
    (``columns``) or row by row (``RunState.succeeded``)."""
    c = Cluster({"n0": 8.0}, window=8)
    specs = [spec("a"), spec("b"), spec("c"), spec("d", "a"), spec("e"), spec("f")]
    c.accept_all(c.submit("r", specs))
    run = c.sched.run_state("r")
    rows = [t for t in ("a", "b", "c", "e", "f") if run.tasks[t].state == "ASSIGNED"]
    assert len(rows) == 5
    for task_id in ("b", "e"):
        c.feed(ev.TaskStarted("r", task_id, 1, "n0"))
    seen: list[Any] = []

    def listener(r: Any, rec: Any, old: str, new: str) -> None:
        if new == "DONE":
            seen.append((rec.id, old, dict(r.tally), dict(c.sched.counters)))

    run.listener = listener
    if columns:
        n = len(rows)
        out = successes.apply(
            run, c.sched._view, "n0", rows, [1] * n, [1] * n, [None] * n, [0.1] * n, 2.0, []
        )
        assert out == (n, False)
    else:
        for task_id in rows:
            c.sched._succeeded("r", task_id, 1, "n0", 1, None, 0.1)
    seen.append(("end", dict(run.tally), list(c.sched.counters.items())))
    return seen


def test_a_listener_sees_the_tally_and_counters_of_each_row_as_the_reference_gives_them() -> None:
    """The pass writes the tally and counters of its DONE moves at its end unless the run has a
    listener: a listener reads them at each move as ``RunState.move`` leaves them."""
    by_rows = _listened(False)
    assert [s[0] for s in by_rows] == ["a", "b", "c", "e", "f", "end"]
    assert _listened(True) == by_rows


def _reported_before_answered(columns: bool) -> Any:
    """Three tasks dispatched to n0 whose reports come before the dispatch's answer (a lost or
    late reply): the report answers the dispatch."""
    c = Cluster({"n0": 4.0}, window=4)
    out = c.submit("r", [spec("a"), spec("b"), spec("c")])
    (d,) = dispatches(out)
    rows = [(item.task_id, item.attempt) for item in d.items]
    assert len(rows) == 3 and len(c.sched._view.unacked_of("n0")) == 3
    if columns:
        n = len(rows)
        ids, attempts = [t for t, _ in rows], [a for _, a in rows]
        report: list[Any] = [
            ev.TasksSucceeded("r", "n0", ids, attempts, [1] * n, [None] * n, [0.1] * n)
        ]
    else:
        report = [ev.TaskSucceeded("r", t, a, "n0", 1, None, 0.1) for t, a in rows]
    trace = [repr(c.feed(*report)), digest(c)]
    assert c.sched._view.unacked_of("n0") == {}
    return trace


def test_a_report_before_its_dispatch_is_answered_answers_it_as_the_rows_do() -> None:
    assert _reported_before_answered(True) == _reported_before_answered(False)


def _twice_in_a_table(columns: bool) -> Any:
    """A task twice in one table (its attempt and one it never had) whose attempt row is missing
    (out when the run was taken over): the rows are observed in report order before the close,
    as the shell's ``observe_done`` wrote them, so the trail's rows keep that order."""
    c = Cluster({"n0": 4.0}, window=4)
    c.accept_all(c.submit("r", [spec("a"), spec("b")]))
    run = c.sched.run_state("r")
    run.tasks["a"].attempts.clear()  # (dispatched by the previous owner)
    c.release("n0", "r", "a", 1)
    rows = [("a", 1), ("a", 2), ("b", 9)]
    ids, tries = [t for t, _ in rows], [a for _, a in rows]
    said = [[7, 8, 9], [1.5, 2.5, 3.5], [4.5, 5.5, 6.5], [0, 64, 0]]
    n = len(rows)
    if columns:
        report = ev.TasksSucceeded("r", "n0", ids, tries, [1] * n, [None] * n, [0.1] * n, *said)
    else:
        history.observe_done(run.tasks, "n0", ids, tries, *said, [1] * n, [])
        report = ev.TasksSucceeded("r", "n0", ids, tries, [1] * n, [None] * n, [0.1] * n)
    c.feed(report)
    return [list(run.tasks[t].attempts) for t in ("a", "b")]


@pytest.mark.parametrize("build", ["compiled", "pure"])
def test_a_task_twice_in_a_table_keeps_its_rows_in_report_order(
    build: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if build == "pure":
        pure_owner = PURE["handoffd.scheduler.owner"]
        monkeypatch.setattr(scheduler_harness, "OwnerScheduler", pure_owner.OwnerScheduler)
    got = _twice_in_a_table(True)
    assert [row[0] for row in got[0]] == [1, 2]
    assert got == _twice_in_a_table(False)
