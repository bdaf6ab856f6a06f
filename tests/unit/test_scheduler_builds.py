"""Both builds of the owner's compiled hot state give the same answers on random input.

``scheduler/run.py`` (task records, a run's moves), ``scheduler/ready.py`` (the ready queue) and
``scheduler/demand.py`` (outstanding demand, work, unanswered dispatches) are compiled with the
``.pxd`` beside each (as ``durations``, tests/unit/test_durations_builds.py); the same ``.py`` run as
plain Python is the reference. Each test drives one module of each build through the same random
steps and compares everything the owner reads back.
"""

from __future__ import annotations

import importlib
import random
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from core_strategies import choice, floats, ints, seeded, steps
from core_strategies import size as count
from hypothesis import given, settings
from hypothesis import strategies as st
from pure_build import pure

from handoffd.scheduler import COMPILED
from handoffd.scheduler.room_index import NodeState
from handoffd.spec import RunOptions, TaskSpec


def pure_build(name: str) -> ModuleType:
    """``handoffd.scheduler.<name>`` run from its .py source, whatever is compiled beside it."""
    return pure(importlib.import_module(f"handoffd.scheduler.{name}"), f"handoffd_{name}_pure")


built_run = importlib.import_module("handoffd.scheduler.run")
built_ready = importlib.import_module("handoffd.scheduler.ready")
built_demand = importlib.import_module("handoffd.scheduler.demand")
pure_run, pure_ready, pure_demand = (pure_build(n) for n in ("run", "ready", "demand"))


@pytest.mark.parametrize("name", COMPILED)
def test_every_hot_module_is_compiled_when_the_core_was_built(name: str) -> None:
    module = importlib.import_module(f"handoffd.scheduler.{name}")
    assert pure_build(name).__file__.endswith(".py")  # type: ignore[union-attr]
    try:
        import handoffd._core.sched as core
    except ImportError:  # a build without Cython: the .py is the only build
        assert module.__file__ is not None and module.__file__.endswith(".py")
        return
    # (one build step compiles the core and these; one without the other is a broken build)
    assert core.__file__ is not None and module.__file__ is not None
    assert module.__file__.endswith((".so", ".pyd")), module.__file__


# -- run.py: a run's task moves --------------------------------------------------------------------

NODES = ("n1", "n2", "n3")


def graph(rng: random.Random) -> tuple[list[TaskSpec], tuple[str, ...] | None]:
    n = count(rng, 1, 8)
    costs = [{}, {"cpu": 1.0}, {"cpu": 0.5, "memory": 10.0}]
    specs = []
    for i in range(n):
        deps = rng.sample(range(i), count(rng, 0, min(3, i)))
        cost = rng.choice(costs)
        priority = rng.randint(0, 2)
        specs.append(TaskSpec(f"t{i}", tuple(f"t{d}" for d in deps), cost, b"p", priority=priority))
    outputs = rng.choice([None, (f"t{n - 1}",)])
    return specs, outputs


# (the graphs and steps from one drawn seed each, core_strategies: a Hypothesis draw per field
# was most of these tests' time)
run_steps = steps(
    60,
    choice(["assign", "start", "succeed", "error", "lose", "recompute", "copies", "refs"]),
    ints(0, 7),
    choice(NODES),
    lambda rng: rng.choice((0, 1, 1 << 20, rng.randint(0, 1 << 20))),
)


def ops_on(module: ModuleType, specs: list[TaskSpec], outputs: Any) -> tuple[Any, list[Any]]:
    run = module.RunState("r", specs, RunOptions(max_retries=2, outputs=outputs), seq=3, term=1)
    moves: list[Any] = []
    told: list[Any] = []  # what the typed mover heard: the same moves, first

    class Mover(module.MoveListener):  # type: ignore[name-defined]
        def moved(self, _run: Any, rec: Any, old: str, new: str) -> None:
            assert _run is run
            told.append((rec.id, old, new, rec.delayed))

    def listener(_run: Any, rec: Any, old: str, new: str) -> None:
        assert told and told[-1] == (rec.id, old, new, rec.delayed)
        moves.append(told[-1])

    run.mover = Mover()
    run.listener = listener
    run.counters = {}
    run.wall_offset = 100.0
    return run, moves


def step(run: Any, op: str, i: int, node: str, size: int, now: float) -> Any:
    """One step on ``run``; what it returned (compared across the builds)."""
    ids = sorted(run.tasks)
    rec = run.tasks[ids[i % len(ids)]]
    if op == "assign" and rec.state == "READY":
        run.assign(rec, node, now)
        return run.input_refs(rec.id), run.input_bytes(rec.id, lambda n: n != "n3")
    if op == "start" and rec.state == "ASSIGNED":
        return run.move(rec, "RUNNING", now, "started")
    if op == "succeed" and rec.state in ("ASSIGNED", "RUNNING"):
        value = b"v" if size % 2 else None
        return run.succeeded(rec, rec.node, size, value, now), run.take_freed()
    if op == "error" and rec.state in ("ASSIGNED", "RUNNING"):
        rec.failures += 1
        return run.make_ready(rec, now, "error", delayed=size % 2 == 0)
    if op == "lose":
        cancels, gave_up = run.node_lost(node, now)
        return cancels, gave_up.id if gave_up is not None else None
    if op == "recompute":
        return run.recompute_lost((rec.id,), now), run.recompute_needed(now)
    if op == "copies":
        return run.add_copies([rec.id], node)
    if op == "refs":
        return run.inputs_ready(rec.id), run.pin_of(rec.id), run.group_cost(rec.id)
    return None


@settings(max_examples=200, deadline=None)
@given(graph=seeded(graph), ops=run_steps, end=st.sampled_from([None, "CANCELLED", "FAILED"]))
def test_both_builds_of_a_run_move_its_tasks_the_same(graph: Any, ops: Any, end: Any) -> None:
    specs, outputs = graph
    a, moves_a = ops_on(built_run, specs, outputs)
    b, moves_b = ops_on(pure_run, specs, outputs)
    now = 1.0
    a.start(now)
    b.start(now)
    for op, i, node, size in ops:
        now += 0.25
        assert step(a, op, i, node, size, now) == step(b, op, i, node, size, now), op
        a.validate()
        b.validate()
        assert a.snapshot() == b.snapshot()
        assert (a.remaining, a.unfinished, a.counts()) == (b.remaining, b.unfinished, b.counts())
    if end is not None:
        culprit = sorted(a.tasks)[0]
        assert a.end(end, None, now + 1, culprit) == b.end(end, None, now + 1, culprit)
    assert moves_a == moves_b and a.counters == b.counters
    assert a.snapshot() == b.snapshot() and a.placement() == b.placement()
    again = built_run.RunState.from_snapshot(a.snapshot())
    assert again.snapshot() == pure_run.RunState.from_snapshot(b.snapshot()).snapshot()


@pytest.mark.parametrize("module", [built_run, pure_run], ids=["compiled", "pure"])
def test_an_illegal_move_raises_in_both_builds(module: ModuleType) -> None:
    run = module.RunState("r", [TaskSpec("a", (), {}, b"p")], RunOptions())
    rec = run.tasks["a"]
    with pytest.raises(module.InvalidTransition) as err:
        run.move(rec, "DONE", 1.0, "skipped ahead")
    assert "illegal move PENDING -> DONE" in str(err.value)
    assert rec.state == "PENDING" and rec.history == []


# -- ready.py: the ready queue ---------------------------------------------------------------------

ready_steps = steps(
    80,
    choice(["push", "discard", "walk", "drop", "end"]),
    ints(0, 2),  # run
    ints(0, 9),  # task
    ints(0, 6),  # how many to take in a walk
)


def ready_runs(priorities: list[int]) -> list[Any]:
    """Three runs of ten tasks (compiled records: both queues take them)."""
    runs = []
    for r in range(3):
        specs = [
            TaskSpec(
                f"t{i}",
                (),
                {} if i % 4 == 0 else {"cpu": float(1 + i % 2)},
                b"p",
                priority=priorities[(r * 10 + i) % len(priorities)],
                node="n1" if i == 7 else None,
            )
            for i in range(10)
        ]
        runs.append(built_run.RunState(f"r{r}", specs, RunOptions(), seq=r))
    return runs


@settings(max_examples=200, deadline=None)
@given(ops=ready_steps, priorities=st.lists(st.integers(0, 3), min_size=1, max_size=6))
def test_both_builds_of_the_ready_queue_walk_the_same(ops: Any, priorities: list[int]) -> None:
    sides = [(built_ready.ReadyQueue(), ready_runs(priorities)) for _ in range(2)]
    sides[1] = (pure_ready.ReadyQueue(), sides[1][1])
    for op, r, t, take in ops:
        seen = []
        for queue, runs in sides:
            run = runs[r]
            rec = run.ordered[t]
            if op == "push":
                got: Any = queue.push(run, rec)
            elif op == "discard":
                got = queue.discard(rec)
            elif op == "drop":
                got = queue.drop_run(run)
            elif op == "end":
                run.state = "CANCELLED" if run.state == "RUNNING" else "RUNNING"
                got = None
            else:
                got = []
                for i, (wrun, wrec) in enumerate(queue.walk()):
                    got.append((wrun.run_id, wrec.id))
                    if i % 2 == 0:
                        queue.discard(wrec)  # "dispatched": taken out of the queue
                    if len(got) >= take:
                        break
                queue.restore()
            live = {run.run_id: run for run in runs}
            seen.append(
                (got, len(queue), queue.weightless, queue.shape_counts(), queue.validate(live))
            )
        assert seen[0] == seen[1], op


@settings(max_examples=100, deadline=None)
@given(
    pushed=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 9)), max_size=30),
    skip=st.integers(1, 4),
    priorities=st.lists(st.integers(0, 3), min_size=1, max_size=6),
)
@pytest.mark.parametrize("module", [built_ready, pure_ready], ids=["compiled", "pure"])
def test_a_walk_steps_through_the_queue_in_key_order(
    module: ModuleType, pushed: list[tuple[int, int]], skip: int, priorities: list[int]
) -> None:
    # The cursor (begin/step) the placement pass walks with: every queued task once, in the
    # key's order across runs, whether or not what was taken before is discarded meanwhile.
    queue = module.ReadyQueue()
    runs = ready_runs(priorities)
    for r, t in pushed:
        queue.push(runs[r], runs[r].ordered[t])
    queued = [(run, rec) for run in runs for rec in run.ordered if rec.queued]
    expected = [
        (run.run_id, rec.id) for run, rec in sorted(queued, key=lambda x: built_ready._key(*x))
    ]
    got = []
    queue.begin()
    item = queue.step()
    while item is not None:
        run, rec = item
        got.append((run.run_id, rec.id))
        if len(got) % skip == 0:
            queue.discard(rec)  # "dispatched"
        item = queue.step()
    assert got == expected
    assert queue.step() is None  # a finished walk stays finished
    queue.restore()
    left = [rec.id for _, rec in sorted(queued, key=lambda x: built_ready._key(*x)) if rec.queued]
    assert len(queue) == len(left)
    queue.validate({run.run_id: run for run in runs})


# -- demand.py: outstanding demand, work and unanswered dispatches -----------------------------------

demand_steps = steps(
    80,
    choice(["out", "back", "sent", "answered", "late", "forget", "forget_run"]),
    choice(NODES),
    ints(0, 5),  # task
    floats(0.0, 0.01),  # a duration observed
)


def demand_side(module: ModuleType, queue_seconds: float | None) -> tuple[Any, list[Any]]:
    books = module.Demand(queue_seconds)
    for name in NODES:
        books.nodes[name] = NodeState(
            name, name, name != "n3", {"cpu": 4.0, "memory": 100.0}, {"cpu": 2.0}, 1
        )
    specs = [
        TaskSpec(f"t{i}", (), [{}, {"cpu": 1.0}, {"cpu": 0.5, "memory": 7.5}][i % 3], b"p")
        for i in range(6)
    ]
    run = built_run.RunState("r", specs, RunOptions())
    return books, [run.tasks[s.id] for s in specs]


@settings(max_examples=200, deadline=None)
@given(ops=demand_steps, queue_seconds=st.sampled_from([None, 0.005]))
def test_both_builds_keep_the_same_books(ops: Any, queue_seconds: float | None) -> None:
    sides = [demand_side(built_demand, queue_seconds), demand_side(pure_demand, queue_seconds)]
    out: dict[int, str] = {}  # task -> node it is out on (the same on both sides)
    attempt = 0
    now = 0.0
    for op, node, t, seconds in ops:
        now += 0.5
        attempt += 1
        seen = []
        for books, recs in sides:
            rec = recs[t]
            books.durations.observe(rec.id, rec.cost_items, seconds)
            got: Any = None
            if op == "out" and t not in out:
                got = books.went_out(node, rec)
            elif op == "back" and t in out:
                got = books.came_back(out[t], rec)
            elif op == "sent":
                got = books.sent(node, "r", rec.id, attempt, rec.spec.cost, now)
            elif op == "answered":
                first = next(iter(books.unacked_of(node)), ("r", rec.id, 0))
                got = books.answered(node, first)
            elif op == "late":
                got = books.unanswered(node, now - 1.0), books.oldest_unacked(node)
            elif op == "forget":
                got = books.forget_unacked(node)
            elif op == "forget_run":
                got = books.forget_run("r")
            seen.append(
                (
                    got,
                    books.outstanding,
                    books.work,
                    {
                        n: [(b.run_id, b.at, b.entries()) for b in s]
                        for n, s in books.unacked.items()
                    },
                    list(books.unacked_of(node)),
                    books.pending,
                    books.effective_free(node),
                    books.budget(node) if queue_seconds is not None else None,
                    books.alive(node),
                    [r.charge for r in recs],
                )
            )
        if op == "out" and t not in out:
            out[t] = node
        elif op == "back" and t in out:
            del out[t]
        assert seen[0] == seen[1], op


@given(
    total=st.dictionaries(st.sampled_from("abc"), st.floats(-4, 4), max_size=3),
    cost=st.dictionaries(st.sampled_from("abc"), st.floats(0, 4), max_size=3),
    sign=st.sampled_from([1, -1]),
)
def test_both_builds_add_into_the_same(total: Any, cost: Any, sign: int) -> None:
    a, b = dict(total), dict(total)
    built_demand.add_into(a, cost, sign)
    pure_demand.add_into(b, cost, sign)
    assert a == b and list(a) == list(b)


# -- room_view.py: what a node's room is computed from; room_index.py refreshes over it -------------

built_room_view = importlib.import_module("handoffd.scheduler.room_view")
pure_room_view = pure_build("room_view")


def room_view_side(module: ModuleType, window: int, queue_seconds: float | None, rng: Any) -> Any:
    view = module.RoomView({}, queue_seconds, window)
    for i, name in enumerate(NODES):
        capacity = {"cpu": float(1 + i), "memory": 100.0} if i < 2 else {}
        free = {k: q * rng.choice([0.0, 0.5, 1.0]) for k, q in capacity.items()}
        view.nodes[name] = NodeState(name, name, True, capacity, free, 1)
        view.outstanding[name] = {"cpu": rng.choice([0.0, 0.5, 3.0, 64.0])}
        view.pending[name] = {"cpu": rng.choice([0.0, 1.0])}
        view.work[name] = rng.choice([0.0, 0.004, 0.01])
    return view


@given(
    seed=st.integers(0, 2**16),
    window=st.sampled_from([1, 2, 32]),
    queue_seconds=st.sampled_from([None, 0.005]),
)
def test_both_builds_compute_the_same_rooms(seed: int, window: int, queue_seconds: Any) -> None:
    import random

    seen = []
    for module in (built_room_view, pure_room_view):
        view = room_view_side(module, window, queue_seconds, random.Random(seed))
        seen.append(
            [
                (
                    view.effective_free(n.name),
                    view.budget(n.name) if queue_seconds is not None else None,
                    view.may_take_part(n),
                    view.room_of(n),
                )
                for n in view.nodes.values()
            ]
        )
    assert seen[0] == seen[1]


def test_the_compiled_room_index_refreshes_over_a_typed_view() -> None:
    """The index reads the view's books through C (``RoomView``, the base of the cluster view):
    the compiled refresh refuses any other object, the pure one takes what quacks alike."""
    from handoffd.scheduler.cluster_view import ClusterView
    from handoffd.scheduler.room_index import RoomIndex

    view = ClusterView()
    assert isinstance(view, built_room_view.RoomView)
    view.nodes["n1"] = NodeState("n1", "n1", True, {"cpu": 2.0}, {"cpu": 2.0}, 1)
    view._rooms.refresh(view)
    assert view._rooms.room == {"n1": {"cpu": 2.0}}
    if not (built_room_view.__file__ or "").endswith((".so", ".pyd")):
        pytest.skip("a build without Cython: the view is not typed")
    duck = SimpleNamespace(**{k: getattr(view, k) for k in ("nodes", "window", "queue_seconds")})
    with pytest.raises(TypeError):
        RoomIndex().refresh(duck)


# -- history.py: task attempts ---------------------------------------------------------------------

built_history = importlib.import_module("handoffd.scheduler.history")
pure_history = pure_build("history")

history_steps = steps(
    50,
    choice(["opened", "moved", "observe", "settled"]),
    ints(1, 20),  # attempt
    choice(["n1", "n2", None]),
    choice(["PENDING", "READY", "ASSIGNED", "RUNNING", "DONE", "FAILED"]),
    choice(["RUNNING", "READY", "DONE", "FAILED", "CANCELLED", "PENDING"]),
    lambda rng: ints(0, 3)(rng) if rng.random() < 0.5 else floats(0.0, 9.0)(rng),  # int stays int
)


@settings(max_examples=200, deadline=None)
@given(ops=history_steps)
def test_both_builds_keep_the_same_attempts(ops: Any) -> None:
    lists: list[list[Any]] = [[], []]
    for op, attempt, node, old, new, wall in ops:
        for module, attempts in zip((built_history, pure_history), lists, strict=True):
            if op == "opened" and node is not None:
                module.opened(attempts, attempt, node, wall)
            elif op == "moved":
                module.moved(attempts, attempt, node, old, new, wall, f"{old}->{new}")
            elif op == "observe" and node is not None:
                module.observe(
                    attempts,
                    attempt,
                    node,
                    state=new if new == "DONE" else "error",
                    pid=attempt,
                    started=wall,
                    ended=wall,
                    bytes_in=7,
                    bytes_out=9,
                    error=("E", "m", "tb") if new != "DONE" else ("", "", ""),
                )
            elif op == "settled":
                module.settled(attempts, new, attempt, node)
        a, b = (
            module.rows(attempts)
            for module, attempts in zip((built_history, pure_history), lists, strict=True)
        )
        assert a == b and [list(map(type, r)) for r in a] == [list(map(type, r)) for r in b]
    frozen = [
        module.freeze("t", "DONE", None, attempts, [(1, "A", "B", "c")], 0.5, ("d",))
        for module, attempts in zip((built_history, pure_history), lists, strict=True)
    ]
    assert frozen[0] == frozen[1]
    for since, brief in ((0.0, False), (0.0, True), (1.4, False), (1.6, False)):
        records = [  # (a record of a released run: what ``freeze_all`` reads of it)
            {
                "t": SimpleNamespace(
                    state="DONE", node=None, attempts=a, moves=[1, "A", "B", "c", None, None]
                )
            }
            for a in lists
        ]
        alls = [
            module.freeze_all(recs, {"t": ("d",)}, 0.5, since, brief)
            for module, recs in zip((built_history, pure_history), records, strict=True)
        ]
        assert (
            alls[0]
            == alls[1]
            == (
                (frozen[0] if not brief else frozen[0][:4] + ((),) + frozen[0][5:],)
                if since < 1.5
                else ()
            )
        )
    again = [
        built_history.restore(built_history.rows(lists[0])),
        pure_history.restore(pure_history.rows(lists[1])),
    ]
    assert built_history.rows(again[0]) == pure_history.rows(again[1])


@settings(max_examples=200, deadline=None)
@given(
    opened=st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.integers(1, 4), st.floats(0.0, 5.0)),
        max_size=8,
    ),
    reports=st.lists(
        st.tuples(
            st.sampled_from(["a", "b", "c", "unknown"]),
            st.integers(1, 4),  # attempt
            st.one_of(st.just(0.0), st.floats(0.0, 9.0)),  # started (0: not reported)
            st.one_of(st.just(0.0), st.floats(0.0, 9.0)),  # ended
        ),
        max_size=10,
    ),
)
def test_observe_done_is_observe_of_each_done_report(opened: Any, reports: Any) -> None:
    """A node's all-DONE report message in one loop (``observe_done``, what the owner's shell
    calls) records in each build exactly what ``observe`` per report does (the per-row path of
    ``daemon.reports.observe_table``), the dispatch-to-start latencies too, in order."""
    results = []
    for module in (built_history, pure_history):
        for one_loop in (True, False):
            tasks = {t: SimpleNamespace(attempts=[]) for t in ("a", "b", "c")}
            for task, attempt, wall in opened:
                module.opened(tasks[task].attempts, attempt, "n1", wall)
            latency: list[float] = []
            ids = [r[0] for r in reports]
            attempts = [r[1] for r in reports]
            started = [r[2] for r in reports]
            ended = [r[3] for r in reports]
            pids = [100 + i for i in range(len(reports))]
            bytes_in = [7 * i for i in range(len(reports))]
            sizes = [9 * i for i in range(len(reports))]
            if one_loop:
                module.observe_done(
                    tasks,
                    "n2",
                    tuple(ids),
                    attempts,
                    pids,
                    started,
                    ended,
                    bytes_in,
                    sizes,
                    latency,
                )
            else:
                for i, task_id in enumerate(ids):
                    rec = tasks.get(task_id)
                    if rec is None:
                        continue
                    trail = rec.attempts
                    if started[i] and trail and trail[-1][0] == attempts[i]:
                        if trail[-1][3]:
                            latency.append(max(0.0, started[i] - trail[-1][3]))
                    module.observe(
                        trail,
                        attempts[i],
                        "n2",
                        state="DONE",
                        pid=pids[i],
                        started=started[i],
                        ended=ended[i],
                        bytes_in=bytes_in[i],
                        bytes_out=sizes[i],
                    )
            results.append(({t: module.rows(r.attempts) for t, r in tasks.items()}, latency))
    assert results[0] == results[1] == results[2] == results[3]


def test_setup_compiles_exactly_the_listed_scheduler_modules() -> None:
    # setup.py runs before the package can be imported, so it keeps its own copy of the list.
    import ast

    tree = ast.parse((Path(__file__).resolve().parents[2] / "setup.py").read_text())
    listed = next(
        ast.literal_eval(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "SCHEDULER_COMPILED" for t in node.targets)
    )
    assert tuple(listed) == COMPILED


# -- owner.py: the runs it owns tell it of their moves through the typed mover ---------------------


def test_an_owned_run_tells_its_owner_through_the_mover_until_released() -> None:
    from handoffd.scheduler import events as ev
    from handoffd.scheduler.owner import OwnerScheduler

    sched = OwnerScheduler("n0", now=0.0)
    update = ev.NodeUpdate("n0", "n0", True, {"cpu": 2.0}, {"cpu": 2.0}, 1)
    specs = [TaskSpec("a", (), {"cpu": 1.0}, b"p"), TaskSpec("b", ("a",), {"cpu": 1.0}, b"p")]
    out = sched.handle_batch([update, ev.RunSubmitted("r", specs, RunOptions())], 0.0)
    run = sched.run_state("r")
    assert run is not None and run.mover is sched and run.listener is None
    (sent,) = [i for i in out if isinstance(i, ev.Dispatch)]
    assert [item.task_id for item in sent.items] == ["a"]
    # (the books the mover keeps: the task went out to n0, and came back when it succeeded)
    assert sched._view.outstanding["n0"] == {"cpu": 1.0}
    sched.handle_batch([ev.TaskSucceeded("r", "a", sent.items[0].attempt, "n0", 1, b"v")], 0.1)
    assert run.tasks["b"].state == "ASSIGNED"
    sched.validate()
    sched.handle_batch([ev.TaskSucceeded("r", "b", run.tasks["b"].attempt, "n0", 1, b"v")], 0.3)
    assert run.state == "DONE" and not any(sched._view.outstanding.get("n0", {}).values())
    sched.handle_batch([ev.ResultsReleased("r")], 0.4)
    assert run.mover is None
