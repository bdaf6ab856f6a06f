"""WorkerPool: results, errors, crashes, timeouts, cancellation, env, reuse, concurrency, cleanup.

Coordination between the test and worker processes goes through files in tmp_path (the jobs run in
other processes); a "gate" file releases a blocked job, a barrier is N marker files.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import time

import pytest
from pool_harness import Collector, blocked, die_hard, job, pid_gone, run_pool, touch, until

from handoffd import values
from handoffd.worker._pipe import LARGE
from handoffd.worker._process import INLINE_VALUE
from handoffd.worker._records import Job
from handoffd.worker.pool import WorkerPool

pytestmark = pytest.mark.timeout(90)


# -- functions run in the workers -----------------------------------------------------------------
def barrier(directory: str, name: str, parties: int) -> int:
    touch(os.path.join(directory, name))
    deadline = time.monotonic() + 60
    while len([n for n in os.listdir(directory) if not n.endswith(".partial")]) < parties:
        if time.monotonic() > deadline:
            raise TimeoutError("not all parties arrived: the jobs did not run concurrently")
        time.sleep(0.005)
    return os.getpid()


def boom(x: int) -> None:
    raise KeyError(f"no such thing: {x}")


def exit_now(code: int) -> None:
    os._exit(code)


def getenv(name: str) -> str | None:
    return os.environ.get(name)


def sized(n: int) -> bytes | None:
    return b"v" * n if n >= 0 else None


# -- tests ----------------------------------------------------------------------------------------
def test_results_round_trip_with_inputs_and_inline():
    async def body(pool: WorkerPool, got: Collector) -> None:
        inline = (
            "inline",
            values.dumps_code((lambda a: a * 10, [], {})),
            "variadic",
            [("value", values.dumps(4))],
        )
        pool.submit(
            job("sum", lambda *xs, k=0: (sum(xs), xs), inputs=[("value", values.dumps(1)), inline])
        )
        pool.submit(job("big", lambda: 2**100 + 1))
        await got.wait(2)
        out = got.by_key()
        assert out["sum"].ok and out["sum"].kind == ""
        assert values.loads(out["sum"].value) == (41, (1, 40))
        assert values.loads(out["big"].value) == 2**100 + 1
        assert pool.busy == 0 and pool.queued == 0

    run_pool(2, body)


@pytest.mark.parametrize("chained", [False, True])
def test_values_in_their_reply_framed_behind_it_or_apart_round_trip(chained):
    """Values under INLINE_VALUE ride in their reply, those up to LARGE are framed behind it in
    one write, larger ones follow it apart: every size reads back whole, in order, as bytes."""
    sizes = [-1, 0, 10, INLINE_VALUE - 64, INLINE_VALUE, INLINE_VALUE + 64, LARGE + 64, 5, -1]

    async def body(pool: WorkerPool, got: Collector) -> None:
        jobs = [job(i, sized, n) for i, n in enumerate(sizes)]
        if chained:
            pool.submit_all(jobs, chain="c")
        else:
            for one in jobs:
                pool.submit(one)
        await got.wait(len(sizes))
        out = got.by_key()
        assert all(o.ok for o in out.values()), out
        for i, n in enumerate(sizes):
            assert isinstance(out[i].value, (bytes, bytearray))
            assert values.loads(out[i].value) == sized(n)

    run_pool(1, body)


def test_user_exception_is_an_error_with_type_message_and_traceback():
    async def body(pool: WorkerPool, got: Collector) -> None:
        pool.submit(job("k", boom, 7))
        (outcome,) = await got.wait(1)
        assert not outcome.ok and outcome.kind == "error" and outcome.value is None
        assert outcome.exc_type == "KeyError"
        assert "no such thing: 7" in outcome.message
        assert "in boom" in outcome.traceback and "KeyError" in outcome.traceback
        assert "_process.py" not in outcome.traceback.splitlines()[1]

    run_pool(1, body)


def test_unpicklable_result_is_an_error_and_the_worker_survives():
    async def body(pool: WorkerPool, got: Collector) -> None:
        pool.submit(job("gen", lambda: (i for i in range(3))))
        await got.wait(1)
        pool.submit(job("after", os.getpid))
        first, second = await got.wait(2)
        assert first.kind == "error" and "cannot be pickled" in first.message
        assert second.ok

    run_pool(1, body)


def test_processes_are_reused_across_jobs():
    async def body(pool: WorkerPool, got: Collector) -> None:
        for i in range(5):
            pool.submit(job(i, os.getpid))
        outcomes = await got.wait(5)
        assert all(o.ok for o in outcomes)
        assert len({values.loads(o.value) for o in outcomes}) == 1
        assert values.loads(outcomes[0].value) != os.getpid()

    run_pool(1, body)


def test_jobs_run_concurrently_on_distinct_workers(tmp_path):
    directory = str(tmp_path / "barrier")
    os.mkdir(directory)

    async def body(pool: WorkerPool, got: Collector) -> None:
        for name in ("a", "b"):
            pool.submit(job(name, barrier, directory, name, 2))
        outcomes = await got.wait(2)
        assert all(o.ok for o in outcomes), outcomes
        assert len({values.loads(o.value) for o in outcomes}) == 2

    run_pool(2, body)


def test_crash_by_sigkill_is_reported_and_the_worker_replaced(tmp_path):
    marker = str(tmp_path / "ran")

    async def body(pool: WorkerPool, got: Collector) -> None:
        pool.submit(job("dies", die_hard, marker))
        (crash,) = await got.wait(1)
        assert crash.kind == "crash" and not crash.ok
        assert crash.exc_type == "WorkerCrashed" and "SIGKILL" in crash.message
        assert pid_gone(int(pathlib.Path(marker).read_text()))
        pool.submit(job("next", os.getpid))
        _, after = await got.wait(2)
        assert after.ok and pool.workers == 1

    run_pool(1, body)


def test_os_exit_is_a_crash_with_its_exit_code():
    async def body(pool: WorkerPool, got: Collector) -> None:
        pool.submit(job("exit", exit_now, 3))
        pool.submit(job("queued-behind", lambda: "fine"))
        outcomes = await got.wait(2)
        out = {o.key: o for o in outcomes}
        assert out["exit"].kind == "crash" and "exit code 3" in out["exit"].message
        assert values.loads(out["queued-behind"].value) == "fine"

    run_pool(1, body)


def test_timeout_kills_the_process_and_replaces_it(tmp_path):
    started, gate = str(tmp_path / "started"), str(tmp_path / "never")

    async def body(pool: WorkerPool, got: Collector) -> None:
        # Warm up first: the worker imports this module once, outside the timed attempt.
        pool.submit(job("warm", touch, str(tmp_path / "warm")))
        await got.wait(1)
        pool.submit(job("hung", blocked, started, gate, timeout=1.0))
        _, outcome = await got.wait(2)
        assert outcome.kind == "timeout" and outcome.exc_type == "Timeout"
        hung_pid = int(pathlib.Path(started).read_text())
        pool.submit(job("next", os.getpid))
        _, _, after = await got.wait(3)
        assert after.ok and values.loads(after.value) != hung_pid
        assert pool.workers == 1

    run_pool(1, body)
    assert pid_gone(int(pathlib.Path(started).read_text()))


def test_cancel_queued_job_drops_it(tmp_path):
    started, gate, never = (str(tmp_path / n) for n in ("started", "gate", "never-ran"))

    async def body(pool: WorkerPool, got: Collector) -> None:
        pool.submit(job("running", blocked, started, gate))
        pool.submit(job("queued", touch, never))
        assert pool.queued == 1 and pool.busy == 1
        assert pool.cancel("queued") is True
        assert pool.queued == 0 and pool.cancel("queued") is False
        (cancelled,) = await got.wait(1)
        assert cancelled.key == "queued" and cancelled.kind == "cancelled"
        touch(gate)
        _, done = await got.wait(2)
        assert done.key == "running" and done.ok
        assert not os.path.exists(never)

    run_pool(1, body)


def test_cancel_running_job_kills_its_process(tmp_path):
    started, gate = str(tmp_path / "started"), str(tmp_path / "gate")

    async def body(pool: WorkerPool, got: Collector) -> int:
        pool.submit(job("running", blocked, started, gate))
        while not os.path.exists(started):
            await asyncio.sleep(0.01)
        assert pool.cancel("running") is True
        (cancelled,) = await got.wait(1)
        assert cancelled.kind == "cancelled" and pool.busy == 0
        pool.submit(job("next", os.getpid))
        _, after = await got.wait(2)
        assert after.ok
        return int(pathlib.Path(started).read_text())

    victim = run_pool(1, body)
    assert pid_gone(victim)


def test_env_is_set_for_one_call_and_restored():
    async def body(pool: WorkerPool, got: Collector) -> None:
        pool.submit(job(1, getenv, "CUDA_VISIBLE_DEVICES", env={"CUDA_VISIBLE_DEVICES": "3"}))
        await got.wait(1)
        pool.submit(job(2, getenv, "CUDA_VISIBLE_DEVICES"))
        first, second = await got.wait(2)
        assert values.loads(first.value) == "3"
        assert values.loads(second.value) == os.environ.get("CUDA_VISIBLE_DEVICES")

    run_pool(1, body)


def test_duplicate_live_key_is_refused():
    async def body(pool: WorkerPool, got: Collector) -> None:
        pool.submit(job("same", lambda: 1))
        with pytest.raises(ValueError):
            pool.submit(job("same", lambda: 2))
        await got.wait(1)
        pool.submit(job("same", lambda: 3))  # done jobs free their key
        await got.wait(2)

    run_pool(1, body)


def test_close_kills_every_process_including_busy_ones(tmp_path):
    pids: list[int] = []
    started = [str(tmp_path / f"s{i}") for i in range(2)]

    async def body(pool: WorkerPool, got: Collector) -> None:
        for i in range(2):
            pool.submit(job(i, blocked, started[i], str(tmp_path / "never")))
        while not all(os.path.exists(s) for s in started):
            await asyncio.sleep(0.01)
        pids.extend(int(pathlib.Path(s).read_text()) for s in started)

    run_pool(2, body)
    assert len(set(pids)) == 2 and all(pid_gone(pid) for pid in pids)


def test_many_jobs_queue_and_all_complete():
    async def body(pool: WorkerPool, got: Collector) -> None:
        for i in range(300):
            pool.submit(job(i, lambda *a: a, i))
        outcomes = await got.wait(300)
        assert sorted(values.loads(o.value)[0] for o in outcomes) == list(range(300))

    run_pool(2, body)


def test_on_read_takes_each_read_s_outcomes_in_order_and_a_crash_goes_to_on_done():
    """With ``on_read`` set, the outcomes a read of a worker's pipe brings come to it as one list
    (a chain's, in submission order, each once), none through on_done; a crash's outcome, which
    no read brings, still goes to on_done."""

    async def body(pool: WorkerPool, got: Collector) -> None:
        reads: list[list] = []
        pool.on_read = reads.append
        pool.submit_all([job(("c", i), sized, 10) for i in range(40)], chain="c")
        await until(lambda: sum(len(r) for r in reads) == 40)
        assert [o.key for r in reads for o in r] == [("c", i) for i in range(40)]
        assert all(o.ok and o.value is not None for r in reads for o in r)
        assert got.outcomes == []  # not one through on_done
        pool.submit(job("exit", exit_now, 3))
        (crash,) = await got.wait(1)
        assert crash.key == "exit" and crash.kind == "crash"
        assert sum(len(r) for r in reads) == 40

    run_pool(1, body)


def test_a_key_already_queued_or_twice_in_a_batch_is_refused_with_nothing_queued() -> None:
    """``submit_all`` refuses a batch with a key already live or repeated, and queues none of it
    (no worker needed: a pool not started only queues)."""
    pool = WorkerPool(1, lambda outcome: None)
    pool.submit_all([Job("a", b"p", []), Job("b", b"p", [])], chain=1)
    assert pool.pending == 2
    for keys in (["c", "a"], ["d", "d"], ["b"]):
        with pytest.raises(ValueError, match="already queued or running"):
            pool.submit_all([Job(k, b"p", []) for k in keys], chain=2)
        assert pool.pending == 2 and set(pool._jobs) == {"a", "b"}
    pool.submit_all([Job("c", b"p", []), Job("d", b"p", [])], chain=1)
    assert [job.key for job in pool._chains[1].jobs] == ["a", "b", "c", "d"]
