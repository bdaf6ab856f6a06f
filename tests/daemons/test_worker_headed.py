"""A chain's one-int calls of one function go to their worker as one HEADED run (``_pipe``: the
payloads' common start once, their ints as a column; the worker calls the function it decoded
once a run on each int, ``invoke.call_literal``). Against real worker processes, each case run
twice, once with HEADED runs and once with every run a plain RUN (``_pipe._headed`` answering
None: the payloads whole, as before), the outcomes compared job for job: values, errors and
their messages, captured output, titles; and, with crashes and cancels, each job runs once."""

from __future__ import annotations

import asyncio
import os
import pathlib
import random
from typing import Any

import pytest
from pool_harness import Collector, run_pool

from handoffd import values
from handoffd.worker import _pipe
from handoffd.worker._records import Job, Outcome
from handoffd.worker.pool import WorkerPool

pytestmark = pytest.mark.timeout(120)


# -- functions run in the workers -----------------------------------------------------------------
def literal(*args: Any) -> tuple:
    """The process's title and the arguments; prints on some ints, raises on others."""
    i = args[-1]
    if i % 7 == 0:
        print(f"seven {i}")
    if i % 11 == 0:
        raise ValueError(f"eleven {i}")
    try:
        with open("/proc/self/cmdline", "rb") as f:
            title = f.read().split(b"\0")[0].decode("utf-8", "surrogateescape").strip()
    except OSError:
        title = ""
    return title, args


def litera2(*args: Any) -> tuple:
    """Another function whose name (and so whose code part's size, likely) matches ``literal``'s."""
    return "other", args


def marked(i: int) -> int:
    """Leave a line in HEADED_DIR/i (each run of the job leaves one); a negative int dies."""
    with open(os.path.join(os.environ["HEADED_DIR"], str(abs(i))), "a") as f:
        f.write("ran\n")
    if i < 0:
        os.kill(os.getpid(), 9)
    return i


def _call(code: bytes, i: int, key: str, title: str, inclusion: str = "variadic") -> Job:
    return Job(key, values.dumps_call(code, [i], {}), [], argument_inclusion=inclusion, title=title)


def _heads() -> tuple[bytes, bytes, bytes]:
    codes = (values.dumps_code(literal), values.dumps_code(litera2), values.dumps_code(marked))
    for code in codes:
        values.dumps_call(code, [0], {})  # (its head kept: the next calls are one-int calls)
    return codes


def _run(jobs: list[Job], headed: bool, monkeypatch: pytest.MonkeyPatch) -> list[Outcome]:
    built: list[bool] = []
    real = _pipe._headed

    def spied(payloads: list[bytes]) -> Any:
        got = real(payloads) if headed else None
        built.append(got is not None)
        return got

    monkeypatch.setattr(_pipe, "_headed", spied)

    async def body(pool: WorkerPool, got: Collector) -> list:
        pool.submit_all(jobs, chain="c")
        return await got.wait(len(jobs))

    outcomes = run_pool(1, body)
    assert any(built) == headed, built
    return outcomes


def _view(outcome: Outcome) -> tuple:
    value = values.loads(outcome.value) if outcome.ok and outcome.value is not None else None
    # (a traceback names the frames it went through: the user's own are compared)
    frames = [line for line in outcome.traceback.splitlines() if "literal" in line]
    return (
        outcome.ok,
        outcome.kind,
        outcome.exc_type,
        outcome.message,
        outcome.output,
        value,
        frames,
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_headed_runs_end_each_job_as_its_whole_payload_would(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    rng = random.Random(seed)
    one, other, _ = _heads()
    jobs = []
    for n in range(80):
        i = rng.choice((rng.randint(-(2**31), 2**31 - 1), rng.randint(0, 100)))
        code = other if rng.random() < 0.1 else one
        inclusion = "as_list" if rng.random() < 0.15 else "variadic"
        title = f"run r{seed} task t{n}" + rng.choice(("", " \u00fc", " \u4e2d"))
        jobs.append(_call(code, i, f"j{n}", title, inclusion))
    headed = _run(jobs, True, monkeypatch)
    plain = _run(jobs, False, monkeypatch)
    order = [j.key for j in jobs]
    assert [o.key for o in headed] == [o.key for o in plain] == order
    assert [_view(o) for o in headed] == [_view(o) for o in plain]
    assert any(o.output for o in headed) and any(not o.ok for o in headed)


@pytest.mark.parametrize("seed", [1, 2])
def test_cancels_and_crashes_in_headed_runs_leave_one_outcome_and_one_run_a_job(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path, seed: int
) -> None:
    """Jobs sent in HEADED runs, some cancelled while sent ahead, some killing their worker: one
    Outcome a job; a job answered ok ran once; a crash fails its own job only."""
    rng = random.Random(seed)
    _, _, code = _heads()
    monkeypatch.setenv("HEADED_DIR", str(tmp_path))
    ints = [-(n + 1) if rng.random() < 0.08 else n + 1 for n in range(60)]
    jobs = [_call(code, i, f"j{n}", f"run r task t{n}") for n, i in enumerate(ints)]
    built: list[bool] = []
    real = _pipe._headed

    def spied(payloads: list[bytes]) -> Any:
        got = real(payloads)
        built.append(got is not None)
        return got

    monkeypatch.setattr(_pipe, "_headed", spied)

    async def body(pool: WorkerPool, got: Collector) -> list:
        pool.submit_all(jobs, chain="c")
        for n in rng.sample(range(60), 12):
            await asyncio.sleep(rng.random() * 0.01)
            pool.cancel(f"j{n}")
        await got.wait(len(jobs))
        await asyncio.sleep(0.2)  # a late duplicate would come now
        return got.outcomes

    outcomes = run_pool(1, body)
    assert any(built)
    assert sorted(o.key for o in outcomes) == sorted(j.key for j in jobs), "one Outcome a job"
    for outcome in outcomes:
        i = ints[int(outcome.key[1:])]
        ran = tmp_path / str(abs(i))
        times = len(ran.read_text().splitlines()) if ran.exists() else 0
        if outcome.kind == "cancelled":
            assert times <= 1, outcome.key
        elif i < 0:
            assert outcome.kind == "crash" and times == 1, (outcome, times)
        else:
            assert outcome.ok and times == 1 and values.loads(outcome.value) == i, (outcome, times)
