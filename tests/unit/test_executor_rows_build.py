"""The way in's per-task loops (``executor_rows``: a plain table's intake from its columns, the
refill's chains, the fold of a slot's first job into its block and a claimed task's start) compiled do exactly what
their ``.py`` does as plain Python. Two executors of one ledger (one cpu, as W1's nodes, or two,
or a cpu and a gpu) take the same random events: tables of random shapes (a few tasks to a
hundred, costs shared or not, another inclusion, a timeout or a priority now and then, inputs
now and then, a table too big for the queue), received as columns or handed over by our own
node's owner; reads of the running jobs (values, errors, a worker killed mid-chain, cancels,
timeouts); cancels and withdraws of queued tasks inside a chained block, a new owner, a run
freed. One runs the compiled build, the other the ``.py``: after every step they must have given
the same instructions (the jobs slot for slot) and hold the same tasks, queue (its order and its
summed cost, to the bit), slots, ledger, store and counters."""

from __future__ import annotations

import random
import types
from collections.abc import Callable
from typing import Any

import pytest
from pure_build import check_builds, pure
from test_executor_rows import RUNS, Side, control, norm, outcome_of
from test_executor_state import OWNER, here

from handoffd.daemon import executor_intake, executor_rows, executor_state
from handoffd.daemon.executor_events import Dispatched
from handoffd.daemon.executor_state import ExecutorState
from handoffd.protocol import messages as m
from handoffd.protocol.columns import DispatchTable, dispatch_columns
from handoffd.store.store import ResultStore
from handoffd.worker._records import Outcome
from handoffd.worker.ledger import Ledger

pytestmark = pytest.mark.timeout(120)

PURE = pure(executor_rows, "handoffd_executor_rows_pure")
LEDGERS = ({"cpu": 1.0}, {"cpu": 2.0}, {"cpu": 1.0, "gpu": 1.0})


def test_the_compiled_build_is_the_one_imported_when_the_core_was_built() -> None:
    check_builds(executor_rows, PURE)


class BuildSide(Side):
    """A side whose intake and refill loops are ``module``'s (swapped in around each event)."""

    def __init__(self, module: Any, capacity: dict[str, float], rng: random.Random) -> None:
        super().__init__(rows=rng.random() < 0.5)
        self.module = module
        self.st = ExecutorState(
            address="me:1",
            ledger=Ledger(capacity),
            store=ResultStore(memory_limit=1 << 30),
            inline_result_bytes=8,
            queue_factor=rng.choice([2.0, 4.0, 40.0]),
        )

    def run(self, act: Callable[..., list[Any]], *args: Any) -> list[Any]:
        # (module globals, as the daemon reads them: set for this side's step, put back after)
        saved = executor_intake.accept_columns, executor_state.refill
        executor_intake.accept_columns = self.module.accept_columns
        executor_state.refill = self.module.refill
        # (a claimed task's start: the class's is the compiled build's; this side's ``module``'s)
        self.st._start = types.MethodType(self.module.start_task, self.st)  # type: ignore[method-assign]
        try:
            return act(self, *args)
        finally:
            executor_intake.accept_columns, executor_state.refill = saved


def table(
    rng: random.Random, count: int, terms: dict[str, int], w1: bool = False
) -> tuple[Dispatched, int]:
    """A random table (its shape drawn: mostly W1's, one cost, no inputs, one inclusion);
    ``w1``: a hundred tasks of one cpu each."""
    run = rng.choice(RUNS)
    shared = rng.choice([{"cpu": 1.0}, {"cpu": 0.5}, {"cpu": 1.0, "gpu": 1.0}])
    mixed = rng.random() < 0.3  # costs of two shapes in one table
    if w1:
        shared, mixed = {"cpu": 1.0}, False
    items = []
    for _ in range(100 if w1 else rng.choice([1, 3, 10, 40, 100])):
        cost = rng.choice([shared, {"cpu": 1.0}, {"cpu": 0.5}]) if mixed else shared
        inclusion = "variadic" if rng.random() < 0.9 else "positional"
        timeout = None if rng.random() < 0.9 else rng.choice([1.0, 2.5])
        inputs: tuple[Any, ...] = ()
        if count and rng.random() < 0.05:  # a value of an earlier task: it is fetched first
            dep = f"t{rng.randrange(count)}"
            inputs = (m.InputRef("value", dep, ("peer:1",), -1, "variadic", -1),)
        priority = 0 if rng.random() < 0.9 else rng.randint(-1, 2)
        items.append(
            m.DispatchItem(
                f"t{count}", 1, cost, inclusion, timeout, 0, inputs, priority, rng.random()
            )
        )
        count += 1
    msg = m.DispatchTasks(run, rng.choice(["me:1", OWNER]), tuple(items))
    if rng.random() < 0.5:
        return Dispatched(DispatchTable(dispatch_columns(msg)), [b"payload"], terms[run]), count
    t, frames = here(msg, [b"payload"])
    return Dispatched(t, frames, terms[run]), count


@pytest.mark.parametrize("seed", range(16))
def test_the_compiled_loops_do_what_their_py_does(seed: int) -> None:
    rng = random.Random(seed)
    capacity = rng.choice(LEDGERS)
    sides = [BuildSide(executor_rows, capacity, random.Random(seed)) for _ in range(2)]
    sides[1].module = PURE
    compiled, plain = sides
    terms = dict.fromkeys(RUNS, 1)
    count = 0
    chained = 0  # steps that chained a block (a W1 refill)
    for step in range(80):
        roll = rng.random()
        if not step or roll < 0.3 or not compiled.running:  # (W1's table first)
            event, count = table(rng, count, terms, w1=not step)
            outs = [s.run(handle, event) for s in sides]
        elif roll < 0.85:
            n = rng.randint(1, min(len(compiled.running), 40))
            kinds = ["kept"] * 12 + ["printed", "none", "error", "cancelled", "crash", "timeout"]
            ends = [
                (key, rng.choice(kinds), rng.choice([1e-6, 1e-5, 1e-3, 0.02]))
                for key in compiled.running[:n]
            ]
            flush_idle = rng.random() < 0.5
            outs = [s.run(read, ends, flush_idle) for s in sides]
        else:
            event = control(rng, compiled.st.tasks, terms)
            outs = [s.run(handle, event) for s in sides]
        assert norm(outs[0]) == norm(outs[1])
        assert compiled.running == plain.running
        assert compiled.state() == plain.state()
        assert compiled.st._local_cost == plain.st._local_cost  # (to the bit: same sums)
        assert list(compiled.st.tasks.values()) == list(plain.st.tasks.values())
        chained += any(type(j).__name__ == "JobBlock" for e in outs[0] for j in jobs_of(e))
    assert chained  # (a block was chained: lone jobs only would prove little)


def handle(side: BuildSide, event: Any) -> list[Any]:
    return side.step(side.st.handle(event, 1.0))


def jobs_of(ins: Any) -> list[Any]:
    return list(getattr(ins, "jobs", ()))


def read(side: BuildSide, ends: list[tuple[Any, str, float]], flush_idle: bool) -> list[Any]:
    """``Side.read``, with a worker killed ("crash") or a job timed out among the ends."""
    outcomes: list[Any] = []
    for key, kind, duration in ends:
        if kind in ("crash", "timeout"):
            message = "the worker died" if kind == "crash" else "timed out"
            outcomes.append(m_outcome(key, kind, message))
        elif kind == "kept" and side.rows:
            outcomes.append((key, b"v-" + key[1].encode(), duration, 41))
        else:
            outcomes.append(outcome_of(key, kind, duration))
    gone = {e[0] for e in ends}
    side.running = [k for k in side.running if k not in gone]
    return side.step(side.st.tasks_ended(outcomes, 1.0, flush_idle))


def m_outcome(key: Any, kind: str, message: str) -> Any:
    return Outcome(key, False, None, "WorkerLost", message, kind=kind)
