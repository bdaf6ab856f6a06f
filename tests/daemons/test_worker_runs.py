"""A chain's jobs without inputs or env go to their worker as one RUN message (``_pipe``: one
head, the payloads' sizes as a column, the titles joined): each job still runs once, in order,
under its own title, with its own value; runs are cut where a job of another kind, another
argument inclusion or a job that failed to pickle comes; a cancel of a job sent in a run drops
only it, and a crash mid-run fails only the job running (the jobs after it run once, later).
Against real worker processes; the messages the pool writes are recorded in this process."""

from __future__ import annotations

import asyncio
import os
import pathlib
import random
from typing import Any

import pytest
from pool_harness import Collector, job, run_pool, until

from handoffd import values
from handoffd.worker import _feeds
from handoffd.worker.pool import WorkerPool

pytestmark = pytest.mark.timeout(120)


# -- functions run in the workers -----------------------------------------------------------------
def titled(*args: Any) -> tuple:
    """The process's title (the pool's worker titles it by the job) and the arguments."""
    with open("/proc/self/cmdline", "rb") as f:
        title = f.read().split(b"\0")[0].decode("utf-8", "surrogateescape").strip()
    return title, args


def mark(path: str, crash: bool, *args: Any) -> Any:
    """Append a line to ``path`` (each run of the job leaves one) and die when ``crash``."""
    with open(path, "a") as f:
        f.write("ran\n")
    if crash:
        os.kill(os.getpid(), 9)
    return args


class _Unpicklable:
    def __reduce__(self) -> Any:
        raise TypeError("not this one")


# -- the messages the pool writes -----------------------------------------------------------------
@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many jobs each RUN the pools of this test built held (a pipe write joins every message
    of one feed: its first byte does not tell whether a RUN is in it)."""
    built: list[int] = []
    real = _feeds.run_message

    def run_message(token: int, as_list: bool, titles: list[str], payloads: list[bytes]) -> Any:
        data = real(token, as_list, titles, payloads)
        if data is not None:
            built.append(len(titles))
        return data

    monkeypatch.setattr(_feeds, "run_message", run_message)
    return built


def _titles_supported() -> bool:
    try:
        import setproctitle  # noqa: F401 - optional: titles need it
    except ImportError:
        return False
    return os.path.exists("/proc/self/cmdline")


# -- tests ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_a_chain_s_jobs_go_in_runs_and_each_keeps_its_title_value_and_place(
    runs: list[int], seed: int
) -> None:
    rng = random.Random(seed)
    jobs = []
    expected: dict[str, Any] = {}
    unpicklable: set[str] = set()
    for n in range(60):
        key = f"j{n}"
        title = f"run r{seed} task t{n}" + rng.choice(("", " \u00fc", " \u4e2d\u6587", "-x"))
        arg = rng.randint(0, 1 << 20)
        kind = rng.random()
        if kind < 0.1:  # inputs: a pickled job between runs
            inputs = [("value", values.dumps(arg))]
            jobs.append(job(key, titled, inputs=inputs, title=title))
            expected[key] = (title, (arg,))
        elif kind < 0.15:  # fails to pickle: its token is taken, the run is cut there
            jobs.append(job(key, titled, inputs=[("value", _Unpicklable())], title=title))
            unpicklable.add(key)
        elif kind < 0.3:  # another argument inclusion
            jobs.append(job(key, titled, title=title, argument_inclusion="as_list"))
            expected[key] = (title, ([],))
        else:
            jobs.append(job(key, titled, arg, title=title))
            expected[key] = (title, (arg,))

    async def body(pool: WorkerPool, got: Collector) -> list:
        pool.submit_all(jobs, chain="c")
        return await got.wait(len(jobs))

    outcomes = run_pool(1, body)
    assert runs and min(runs) >= 2, "no jobs went in a run"
    assert sorted(o.key for o in outcomes) == sorted(j.key for j in jobs)
    ran = [o for o in outcomes if o.key not in unpicklable]
    # in the chain's order (the unpicklable ones are reported apart, as they fail)
    assert [o.key for o in ran] == [k for k in (j.key for j in jobs) if k not in unpicklable]
    titles = _titles_supported()
    for outcome in outcomes:
        if outcome.key in unpicklable:
            assert not outcome.ok and "could not be pickled" in outcome.message, outcome
            continue
        assert outcome.ok, outcome
        title, args = values.loads(outcome.value)
        want_title, want_args = expected[outcome.key]
        assert args == want_args, outcome.key
        if titles:
            assert title.endswith(": " + want_title), (outcome.key, title)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_cancels_and_crashes_in_runs_leave_one_outcome_and_one_run_a_job(
    runs: list[int], tmp_path: pathlib.Path, seed: int
) -> None:
    """Jobs sent in runs, some cancelled while sent ahead, some killing their worker: one
    Outcome a job; a job answered ok ran once; a cancelled job reported before it ran never
    runs; a crash fails its own job only, and the jobs behind it run once each later."""
    rng = random.Random(seed)
    specs = {f"j{n}": rng.random() < 0.08 for n in range(60)}  # key -> crashes
    files = {key: str(tmp_path / key) for key in specs}

    async def body(pool: WorkerPool, got: Collector) -> list:
        keys = list(specs)
        pool.submit_all([job(k, mark, files[k], specs[k], n) for n, k in enumerate(keys)], "c")
        victims = [k for k in keys if rng.random() < 0.2]
        for victim in victims:
            await asyncio.sleep(rng.random() * 0.01)
            pool.cancel(victim)
        await got.wait(len(keys))
        await asyncio.sleep(0.2)  # a late duplicate would come now
        return got.outcomes

    outcomes = run_pool(1, body)
    assert runs and min(runs) >= 2, "no jobs went in a run"
    assert sorted(o.key for o in outcomes) == sorted(specs), "exactly one Outcome a job"
    for outcome in outcomes:
        runs = pathlib.Path(files[outcome.key])
        times = len(runs.read_text().splitlines()) if runs.exists() else 0
        if outcome.kind == "cancelled":
            assert times <= 1, outcome.key  # (killed as it ran, or dropped before it ran)
        elif specs[outcome.key]:
            assert outcome.kind == "crash" and times == 1, (outcome, times)
        else:
            assert outcome.ok and times == 1, (outcome, times)
            assert values.loads(outcome.value) == (list(specs).index(outcome.key),)


def test_a_run_and_a_cancel_in_one_message_drop_only_the_cancelled_job(
    runs: list[int], tmp_path: pathlib.Path
) -> None:
    """A job sent in a run behind a running one and cancelled there is dropped by the worker
    (SKIPPED), the others of its run run, in order."""
    gate = str(tmp_path / "gate")
    started = str(tmp_path / "started")
    from pool_harness import blocked, touch

    async def body(pool: WorkerPool, got: Collector) -> list:
        pool.submit_all(
            [job("head", blocked, started, gate)]
            + [job(f"r{n}", mark, str(tmp_path / f"r{n}"), False, n) for n in range(8)],
            "c",
        )
        await until(lambda: os.path.exists(started))
        assert pool.cancel("r3") and pool.cancel("r6")
        touch(gate)
        return await got.wait(9)

    outcomes = run_pool(1, body)
    assert runs
    by_key = {o.key: o for o in outcomes}
    assert by_key["r3"].kind == by_key["r6"].kind == "cancelled"
    assert not (tmp_path / "r3").exists() and not (tmp_path / "r6").exists()
    ran = [o.key for o in outcomes if o.ok]
    assert ran == ["head"] + [f"r{n}" for n in range(8) if n not in (3, 6)]
