"""The worker process's loop compiled (``_process``, setup.py EXECUTOR_COMPILED) against its .py,
run as plain Python (``pure_build.pure``), the reference: real worker processes of a real
WorkerPool, one pool of each build, fed the same random jobs (HEADED runs of one-int calls, plain
runs, jobs with inputs; values of every packed kind, large ones, unpicklable ones; errors, a
``SystemExit``, printed output) must end every job alike: ok, kind, value, error type and message,
the whole user's traceback (the compiled loop's own frame trimmed as the .py's is), the output
and the process title the job saw."""

from __future__ import annotations

import os
import random
import threading
from typing import Any

import pytest
from pool_harness import Collector, run_pool
from pure_build import check_builds, pure

from handoffd import values
from handoffd.worker import _process
from handoffd.worker._records import Job, Outcome
from handoffd.worker.pool import WorkerPool

pytestmark = pytest.mark.timeout(150)

_PURE = "handoffd_pure_worker_process"


def pure_main(*args: Any) -> None:
    """A worker's main run from ``_process``' .py as plain Python (in the spawned worker)."""
    pure(_process, _PURE).main(*args)


# -- functions run in the workers -----------------------------------------------------------------
def title() -> str:
    with open("/proc/self/cmdline", "rb") as f:
        return f.read().split(b"\0")[0].decode("utf-8", "surrogateescape").strip()


def literal(*args: Any) -> Any:
    """One int in; prints, raises, exits or returns a value of some kind, by the int."""
    i = args[-1]
    kind = abs(i) % 13
    if kind == 1:
        print(f"printed {i}")
    if kind == 2:
        raise ValueError(f"raised {i}")
    if kind == 3:
        raise SystemExit(i)
    if kind == 4:
        return None
    if kind == 5:
        return i / 7
    if kind == 6:
        return "x" * (i % 20000)  # (often over INLINE_VALUE: its bytes follow the reply)
    if kind == 7:
        return threading.Lock()  # (no pickle takes it: the user's error)
    if kind == 8:
        return title(), args
    if kind == 9:
        return i % 65536
    return i


def summed(*parts: Any) -> Any:
    if parts and parts[-1] == 0:
        raise ZeroDivisionError("no parts")
    print("summed", len(parts))
    return sum(parts)


def _jobs(seed: int) -> list[Job]:
    rng = random.Random(seed)
    code = values.dumps_code(literal)
    summing = (values.dumps_code((summed, [], {})), values.dumps_code((summed, [0], {})))
    values.dumps_call(code, [0], {})  # (its head kept: the next calls are one-int calls)
    jobs = []
    for n in range(120):
        key = (f"r{seed}", f"t{n}", 1)
        name = f"run r{seed} task t{n}" + rng.choice(("", " \u00fc", " \u4e2d"))
        inclusion = "as_list" if rng.random() < 0.1 else "variadic"
        if rng.random() < 0.15:  # a task with inputs (no run of short jobs)
            ins = [("value", values.dumps(rng.randint(-5, 5))) for _ in range(rng.randint(1, 3))]
            payload = rng.choice(summing)  # (one with a 0 last: it raises)
            jobs.append(Job(key, payload, ins, argument_inclusion="variadic", title=name))
            continue
        i = rng.choice((rng.randint(-(2**31), 2**31 - 1), rng.randint(0, 300)))
        payload = values.dumps_call(code, [i], {})
        jobs.append(Job(key, payload, [], argument_inclusion=inclusion, title=name))
    return jobs


def _run(jobs: list[Job], build: Any, monkeypatch: pytest.MonkeyPatch) -> list[Outcome]:
    monkeypatch.setattr(_process, "main", build)

    async def body(pool: WorkerPool, got: Collector) -> list:
        pool.submit_all(jobs, chain="c")
        return await got.wait(len(jobs))

    try:
        return run_pool(1, body)  # type: ignore[no-any-return]
    finally:
        monkeypatch.undo()


def _view(outcome: Outcome) -> tuple:
    value = values.loads(outcome.value) if outcome.ok and outcome.value is not None else None
    return (
        outcome.key,
        outcome.ok,
        outcome.kind,
        outcome.exc_type,
        outcome.message,
        outcome.traceback,
        outcome.output,
        value,
    )


@pytest.mark.parametrize("seed", [1, 2])
def test_the_compiled_loop_ends_each_job_as_its_py(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    check_builds(_process, pure(_process, _PURE))
    jobs = _jobs(seed)
    compiled = _run(jobs, _process.main, monkeypatch)
    reference = _run(jobs, pure_main, monkeypatch)
    assert [o.key for o in compiled] == [o.key for o in reference] == [j.key for j in jobs]
    assert [_view(o) for o in compiled] == [_view(o) for o in reference]
    # the cases the stream was drawn for are there, each build ran the jobs itself
    kinds = {(o.ok, o.exc_type) for o in reference}
    assert {(True, ""), (False, "ValueError"), (False, "SystemExit")} <= kinds
    assert any("cannot be pickled" in o.message for o in reference)
    assert any(o.output for o in reference)
    assert len({o.pid for o in compiled} | {o.pid for o in reference}) == 2
    assert os.getpid() not in {o.pid for o in compiled}
    # the user's traceback starts at the user's code in both builds
    raised = [o.traceback for o in compiled if o.exc_type == "ValueError"]
    assert raised and all(
        t.splitlines()[1].lstrip().startswith('File "' + __file__) for t in raised
    )
