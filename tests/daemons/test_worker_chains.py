"""WorkerPool chains: jobs of one chain run in order on one worker and never two at once; jobs sent
ahead survive the loss of the one running before them; a cancelled job never runs after its cancel
was reported; timeouts count from the start; exactly one Outcome per job under random cancels and
crashes (against real worker processes).

Coordination with the workers goes through files in tmp_path, as in test_worker_pool.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import random
import time
from typing import Any

import pytest
from pool_harness import (
    Collector,
    blocked,
    die_hard,
    job,
    on_pipe,
    pid_gone,
    run_pool,
    sent_ahead,
    touch,
    until,
)

from handoffd import values
from handoffd.worker.pool import WorkerPool

pytestmark = pytest.mark.timeout(120)


# -- functions run in the workers -----------------------------------------------------------------
def log_line(path: str, text: str) -> int:
    with open(path, "a") as f:
        f.write(f"{text} {os.getpid()}\n")
    return os.getpid()


def sleep_then(seconds: float, value: Any) -> Any:
    time.sleep(seconds)
    return value


def exclusive(lock: str, ran: str, seconds: float, crash: bool) -> int:
    """Hold ``lock`` (a file created exclusively) while running: a second job of the same chain
    running at the same time fails to create it and leaves a violation file."""
    touch(ran)
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        # A job cancelled while it held the lock was killed with its worker and left the file
        # behind: only a holder that is still alive means two jobs of one chain ran at once.
        with open(lock) as held:
            holder = int(held.read() or 0)
        if holder and not _alive(holder):
            os.unlink(lock)
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        else:
            touch(lock + ".violation")
            raise
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    time.sleep(seconds)
    os.unlink(lock)
    if crash:
        os.kill(os.getpid(), 9)
    return os.getpid()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a killed worker stays a zombie until the pool reaps it
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# -- tests ----------------------------------------------------------------------------------------
def test_a_chain_runs_in_order_on_one_worker(tmp_path):
    log = str(tmp_path / "log")

    async def body(pool: WorkerPool, got: Collector) -> None:
        pool.submit_all([job(i, log_line, log, str(i)) for i in range(20)], chain="c")
        pool.submit(job("other", os.getpid))
        outcomes = await got.wait(21)
        assert all(o.ok for o in outcomes), outcomes
        lines = pathlib.Path(log).read_text().split()
        assert lines[0::2] == [str(i) for i in range(20)]
        assert len(set(lines[1::2])) == 1  # one worker
        assert pool.busy == 0 and pool.queued == 0

    run_pool(2, body)


def test_jobs_are_sent_ahead_and_a_chain_can_be_extended_while_it_runs(tmp_path):
    started, gate, log = (str(tmp_path / n) for n in ("started", "gate", "log"))

    async def body(pool: WorkerPool, got: Collector) -> None:
        pool.submit(job("head", blocked, started, gate), chain=7)
        pool.submit_all([job(i, log_line, log, str(i)) for i in range(3)], chain=7)
        await until(lambda: os.path.exists(started))
        assert all(sent_ahead(pool, i) for i in range(3))
        assert pool.busy == 1 and pool.queued == 3 and pool.pending == 4
        pool.submit(job(3, log_line, log, "3"), chain=7)  # appended behind the ones sent
        touch(gate)
        outcomes = await got.wait(5)
        assert [o.key for o in outcomes] == ["head", 0, 1, 2, 3]
        head_pid = values.loads(outcomes[0].value)
        lines = pathlib.Path(log).read_text().split()
        assert lines[0::2] == ["0", "1", "2", "3"] and set(lines[1::2]) == {str(head_pid)}

    run_pool(1, body)


def test_one_feed_asks_once_whether_other_chains_wait(tmp_path):
    """Sending a batch ahead asks the waiting queues once per feed, not once per job; while
    another chain waits, nothing more of the running chain is sent ahead."""
    started, gate, log = (str(tmp_path / n) for n in ("started", "gate", "log"))

    async def body(pool: WorkerPool, got: Collector) -> None:
        asked = 0
        others_wait = pool._others_wait

        def counting() -> bool:
            nonlocal asked
            asked += 1
            return others_wait()

        pool._others_wait = counting  # type: ignore[method-assign]
        pool.submit(job("head", blocked, started, gate), chain=7)
        await until(lambda: os.path.exists(started))
        asked = 0
        pool.submit_all([job(i, log_line, log, str(i)) for i in range(5)], chain=7)
        assert asked == 1 and all(sent_ahead(pool, i) for i in range(5))
        pool.submit(job("other", log_line, log, "other"), chain=8)  # waits for the one worker
        asked = 0
        pool.submit_all([job(i, log_line, log, str(i)) for i in range(5, 8)], chain=7)
        assert asked == 1 and not any(sent_ahead(pool, i) for i in range(5, 8))
        touch(gate)
        outcomes = await got.wait(10)
        assert all(o.ok for o in outcomes), outcomes
        assert [o.key for o in outcomes][:6] == ["head", 0, 1, 2, 3, 4]

    run_pool(1, body)


def test_a_new_chain_takes_an_idle_worker_at_once_and_queues_behind_a_waiting_one(tmp_path):
    """With a worker idle and no chain waiting, a new chain starts on it without the waiting
    queues (a one-task run's way), and a worker left idle with none waiting is not pumped; while
    chains wait, new ones queue behind them and start in the order they came."""
    started, gate, log = (str(tmp_path / n) for n in ("started", "gate", "log"))

    async def body(pool: WorkerPool, got: Collector) -> None:
        pumps = 0
        pump = pool._pump

        def counting() -> None:
            nonlocal pumps
            pumps += 1
            pump()

        pool._pump = counting  # type: ignore[method-assign]
        pool.submit(job("head", blocked, started, gate), chain=1)
        running = on_pipe(pool, "head")
        assert running is not None and running.head is not None  # its head, at once
        assert running.head.key == "head"
        assert pumps == 0 and pool._waiting.empty()
        await until(lambda: os.path.exists(started))
        for key, chain in (("b", 2), ("c", 3), ("d", 4)):
            pool.submit(job(key, log_line, log, key), chain=chain)
        assert on_pipe(pool, "b") is None and not pool._waiting.empty()
        touch(gate)
        outcomes = await got.wait(4)
        assert [o.key for o in outcomes] == ["head", "b", "c", "d"]
        assert all(o.ok for o in outcomes), outcomes
        pumps = 0
        pool.submit(job("e", log_line, log, "e"), chain=5)
        assert on_pipe(pool, "e") is not None
        await got.wait(5)
        assert pumps == 0 and pool._waiting.empty(), pumps

    run_pool(1, body)


def test_cancel_of_a_job_sent_ahead_never_runs_it_and_spares_the_running_one(tmp_path):
    started, gate, never, after = (str(tmp_path / n) for n in ("started", "gate", "never", "after"))

    async def body(pool: WorkerPool, got: Collector) -> None:
        pool.submit_all(
            [job("head", blocked, started, gate), job("x", touch, never), job("y", touch, after)],
            chain="c",
        )
        await until(lambda: os.path.exists(started))
        assert sent_ahead(pool, "x")
        assert pool.cancel("x") is True
        assert pool.cancel("x") is True  # already being cancelled: still one Outcome
        touch(gate)
        outcomes = await got.wait(3)
        await asyncio.sleep(0.2)  # a second Outcome for "x" would arrive meanwhile
        out = {o.key: o for o in outcomes}
        assert len(got.outcomes) == 3 and set(out) == {"head", "x", "y"}
        assert out["x"].kind == "cancelled"
        assert out["head"].ok and out["y"].ok
        assert not os.path.exists(never)
        # the running job's process was not killed: "y" ran in it
        assert pathlib.Path(after).read_text() == str(values.loads(out["head"].value))

    run_pool(1, body)


def test_one_key_map_tells_a_queued_job_from_one_sent_ahead_when_cancelled(tmp_path):
    """The pool keeps one key -> chain map for jobs queued and sent: a cancel finds a queued job
    in its chain's jobs (dropped at once, never sent) and a sent one on its chain's worker's pipe
    (dropped by the worker); the counts follow, and the map empties as the jobs end."""
    started, gate = str(tmp_path / "started"), str(tmp_path / "gate")
    marks = [str(tmp_path / f"m{i}") for i in range(6)]

    async def body(pool: WorkerPool, got: Collector) -> None:
        jobs = [job("head", blocked, started, gate)]
        jobs += [job(i, touch, mark) for i, mark in enumerate(marks)]
        pool.submit_all(jobs, chain="c")
        await until(lambda: os.path.exists(started))
        assert sent_ahead(pool, 0) and sent_ahead(pool, 1) and not sent_ahead(pool, 2)
        assert on_pipe(pool, 3) is None and 3 in pool._jobs  # queued, not sent
        assert pool.pending == 7 and pool.queued == 6 and pool.busy == 1
        assert pool.cancel(3) is True and 3 not in pool._jobs  # queued: gone at once
        assert pool.pending == 6
        assert pool.cancel(1) is True and 1 in pool._jobs  # sent: until the worker says
        assert pool.cancel("absent") is False
        touch(gate)
        out = {o.key: o for o in await got.wait(7)}
        assert out[1].kind == "cancelled" and out[3].kind == "cancelled"
        assert all(out[k].ok for k in ("head", 0, 2, 4, 5))
        assert not os.path.exists(marks[1]) and not os.path.exists(marks[3])
        assert pool.pending == 0 and not pool._jobs

    run_pool(1, body, ahead=2)


def test_cancel_of_the_running_job_keeps_the_jobs_behind_it(tmp_path):
    started, a, b = (str(tmp_path / n) for n in ("started", "a", "b"))

    async def body(pool: WorkerPool, got: Collector) -> int:
        pool.submit_all(
            [
                job("head", blocked, started, str(tmp_path / "never")),
                job("a", touch, a),
                job("b", touch, b),
            ],
            chain="c",
        )
        await until(lambda: os.path.exists(started))
        assert pool.cancel("head") is True
        outcomes = await got.wait(3)
        await asyncio.sleep(0.2)
        out = {o.key: o for o in outcomes}
        assert len(got.outcomes) == 3
        assert out["head"].kind == "cancelled" and out["a"].ok and out["b"].ok
        victim = int(pathlib.Path(started).read_text())
        assert pathlib.Path(a).read_text() != str(victim)
        return victim

    assert pid_gone(run_pool(1, body))


def test_crash_of_the_running_job_requeues_the_chained_ones(tmp_path):
    marker, x, y = (str(tmp_path / n) for n in ("marker", "x", "y"))

    async def body(pool: WorkerPool, got: Collector) -> None:
        pool.submit_all(
            [job("dies", die_hard, marker), job("x", touch, x), job("y", touch, y)], chain="c"
        )
        outcomes = await got.wait(3)
        await asyncio.sleep(0.2)
        out = {o.key: o for o in outcomes}
        assert len(got.outcomes) == 3
        assert out["dies"].kind == "crash" and "SIGKILL" in out["dies"].message
        assert out["x"].ok and out["y"].ok  # never started before the crash: not failed
        dead = pathlib.Path(marker).read_text()
        assert pathlib.Path(x).read_text() != dead
        assert pool.workers == 1

    run_pool(1, body)


def log_and_die(path: str) -> None:
    log_line(path, "ran")
    os.kill(os.getpid(), 9)


def test_a_job_that_crashes_right_after_the_one_before_it_is_the_one_failed(tmp_path):
    """The previous job's outcome and the EOF arrive in one wake-up: the job that started after it
    is the one that crashed (not a job that never started, run again for free)."""
    runs = str(tmp_path / "runs")

    async def body(pool: WorkerPool, got: Collector) -> None:
        for round_ in range(3):
            keys = [f"ok{round_}", f"dies{round_}", f"after{round_}"]
            pool.submit_all(
                [job(keys[0], os.getpid), job(keys[1], log_and_die, runs), job(keys[2], os.getpid)],
                chain="c",
            )
            time.sleep(0.5)  # block the loop: the reply and the EOF are then read in one wake-up
            await got.wait(3 * (round_ + 1))
        await asyncio.sleep(0.2)
        out = {o.key: o for o in got.outcomes}
        assert len(got.outcomes) == 9
        for round_ in range(3):
            assert out[f"ok{round_}"].ok and out[f"after{round_}"].ok
            assert out[f"dies{round_}"].kind == "crash"
        assert len(pathlib.Path(runs).read_text().splitlines()) == 3  # each ran once

    run_pool(1, body)


def test_a_chained_jobs_timeout_counts_from_its_start(tmp_path):
    started, gate = str(tmp_path / "started"), str(tmp_path / "never")

    async def body(pool: WorkerPool, got: Collector) -> None:
        pool.submit(job("warm", touch, str(tmp_path / "warm")))  # imports outside timed attempts
        await got.wait(1)
        pool.submit_all(
            [
                job("long", sleep_then, 3.0, "long"),
                # counted from when it was sent it would expire during "long"; it needs ~0.05 s
                job("short", sleep_then, 0.05, "short", timeout=2.5),
                job("hung", blocked, started, gate, timeout=1.0),
                job("last", sleep_then, 0.0, "last"),
            ],
            chain="c",
        )
        outcomes = await got.wait(5)
        out = {o.key: o for o in outcomes}
        assert out["long"].ok and out["short"].ok, out
        assert out["hung"].kind == "timeout"
        assert out["last"].ok  # the job behind the timed out one still ran

    run_pool(1, body)


def test_close_with_chains_sent_ahead_reports_nothing(tmp_path):
    started = str(tmp_path / "started")

    async def body(pool: WorkerPool, got: Collector) -> None:
        pool.submit_all(
            [job("head", blocked, started, str(tmp_path / "never"))]
            + [job(i, os.getpid) for i in range(5)],
            chain="c",
        )
        await until(lambda: os.path.exists(started))

    run_pool(1, body)
    assert pid_gone(int(pathlib.Path(started).read_text()))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_exactly_one_outcome_per_job_under_random_cancels_and_crashes(tmp_path, seed):
    rng = random.Random(seed)
    chains = {f"c{i}": [] for i in range(4)}
    specs: dict[str, tuple[str, bool]] = {}  # key -> (chain, crashes)
    for n in range(48):
        chain = rng.choice(list(chains))
        key = f"j{n}"
        crash = rng.random() < 0.12
        chains[chain].append(key)
        specs[key] = (chain, crash)
    ran = {key: str(tmp_path / f"ran-{key}") for key in specs}
    not_ran_at_cancel: set[str] = set()

    async def body(pool: WorkerPool, got: Collector) -> None:
        def submit(key: str) -> None:
            chain, crash = specs[key]
            lock = str(tmp_path / f"lock-{chain}")
            pool.submit(job(key, exclusive, lock, ran[key], rng.random() * 0.02, crash), chain)

        keys = list(specs)
        rng.shuffle(keys)  # submission order within each chain follows the draw
        submitted: list[str] = []
        cancels = [k for k in keys if rng.random() < 0.3]
        for step, key in enumerate(keys):
            submit(key)
            submitted.append(key)
            if step % 6 == 5:
                await asyncio.sleep(rng.random() * 0.03)
                for victim in cancels:
                    if victim in submitted and rng.random() < 0.5:
                        pool.cancel(victim)
        seen = len(got.outcomes)
        while len(got.outcomes) < len(specs):
            for outcome in got.outcomes[seen:]:
                if outcome.kind == "cancelled" and not os.path.exists(ran[outcome.key]):
                    not_ran_at_cancel.add(outcome.key)
            seen = len(got.outcomes)
            for victim in cancels:
                pool.cancel(victim)
            await asyncio.sleep(0.01)
        for outcome in got.outcomes[seen:]:
            if outcome.kind == "cancelled" and not os.path.exists(ran[outcome.key]):
                not_ran_at_cancel.add(outcome.key)
        await asyncio.sleep(0.3)  # late duplicates, late starts of cancelled jobs
        keys_out = [o.key for o in got.outcomes]
        assert sorted(keys_out) == sorted(specs), "exactly one Outcome per job"
        for outcome in got.outcomes:
            chain, crash = specs[outcome.key]
            if outcome.kind == "cancelled":
                continue
            assert outcome.kind == ("crash" if crash else ""), outcome
        assert pool.busy == 0 and pool.queued == 0

    run_pool(2, body)
    assert not list(tmp_path.glob("*.violation")), "two jobs of one chain ran at once"
    for key in not_ran_at_cancel:
        assert not os.path.exists(ran[key]), f"{key} ran after its cancel was reported"


def test_a_batch_with_a_key_twice_or_a_key_not_ended_is_refused_whole(tmp_path):
    """``submit_all`` refuses a batch holding one key twice, or a key queued or running, before
    any of it is queued; the batch after it runs as usual."""
    log = str(tmp_path / "log")

    async def body(pool: WorkerPool, got: Collector) -> None:
        with pytest.raises(ValueError, match="already queued or running"):
            pool.submit_all([job(0, log_line, log, "0"), job(0, log_line, log, "0")], chain="c")
        assert pool.pending == 0 and not pool._jobs
        pool.submit_all([job(i, log_line, log, str(i)) for i in range(3)], chain="c")
        with pytest.raises(ValueError, match="already queued or running"):
            pool.submit_all([job(9, log_line, log, "9"), job(2, log_line, log, "2")], chain="c")
        assert set(pool._jobs) == {0, 1, 2} and all(pool._jobs[k].id == "c" for k in range(3))
        outcomes = await got.wait(3)
        assert sorted(o.key for o in outcomes) == [0, 1, 2] and all(o.ok for o in outcomes)
        assert pathlib.Path(log).read_text().split()[0::2] == ["0", "1", "2"] and not pool._jobs

    run_pool(1, body)
