"""A one-task run's job sent on the pool's own short path (``WorkerPool._alone``,
``Feeds._send_alone``) and its lone reply read on ``_replies.read``'s (a read that is one KEPT
reply) end every job as the general path does: two pools take the same random events, one as
built, one with ``_alone`` off (every job through ``submit_all``'s general path and ``_feed``),
and must write the same bytes on their workers' pipes, deliver the same outcomes in the same
order and keep the same books (tokens, keys, head, bytes, chains, idle workers, the last token)
after every step. The events: one-job chains (a chain of their own, a named one, one whose chain
still runs) of short jobs and of jobs that take another path (inputs, env, a payload not
bytes, a job a worker of another device set runs), batches of jobs, a worker's reply to its head
alone (KEPT, pickled OK or error) or to several jobs in one write, a stale reply, cancels of
queued and running jobs, a worker killed, a timeout. Workers are socketpairs driven by the test
(``test_pool_runs``' harness)."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from test_pool_runs import _job, _kept, _pickled, _Side

from handoffd.worker import _books, _feeds, _losses, _process
from handoffd.worker._records import Job
from handoffd.worker.pool import WorkerPool


@pytest.fixture(autouse=True)
def _no_kill(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake workers have no process to kill."""
    monkeypatch.setattr(_losses, "kill_group", lambda process: None)
    monkeypatch.setattr("handoffd.worker.pool.kill_group", lambda process: None)


def _wrote(side: _Side) -> bytes:
    """What the pool wrote on its workers' pipes since the last look (the test's ends drained)."""
    out = []
    for end in side.procs.ends.values():
        try:
            while True:
                data = end.recv(1 << 20)
                if not data:
                    break
                out.append(data)
        except (BlockingIOError, OSError):
            pass
    return b"".join(out)


def _books_of(side: _Side) -> tuple:
    pool = side.pool
    idle = {devices: len(workers) for devices, workers in pool._idle.items()}
    chains = sorted((repr(c.id), c.worker is not None, len(c.jobs)) for c in pool._chains.values())
    return (side.books(), pool._token, idle, chains, pool._waiting.waiting())


def _one(rng: random.Random, n: int) -> Job:
    """A one-task run's job: mostly short (W3's), sometimes one of another path."""
    if rng.random() < 0.75:
        return Job(("r", f"t{n}", 1), b"p" * rng.choice((0, 5, 300)), [], title=f"run r{n} task t")
    return _job(rng, n)


def _copy(job: Job) -> Job:
    return Job(
        job.key,
        job.payload,
        job.inputs,
        job.argument_inclusion,
        job.timeout,
        job.env,
        job.devices,
        job.memory,
        job.title,
    )


def _play(seed: int, monkeypatch: pytest.MonkeyPatch, plant: str = "") -> int:
    rng = random.Random(seed)
    sides = [_Side(True, monkeypatch), _Side(True, monkeypatch)]
    general = sides[1].pool
    general._alone = lambda job, chain: False  # type: ignore[method-assign]
    taken = [0]
    alone, head = WorkerPool._alone, _feeds.short_head

    def counted(self: WorkerPool, job: Any, chain: Any) -> bool:
        if (
            plant == "token"
        ):  # (a planted fault: the job booked under its token, sent with the next)
            monkeypatch.setattr(_feeds, "short_head", lambda token, *rest: head(token + 1, *rest))
        try:
            done = alone(self, job, chain)
        finally:
            monkeypatch.setattr(_feeds, "short_head", head)
        taken[0] += done
        return done

    sides[0].pool._alone = counted.__get__(sides[0].pool)  # type: ignore[method-assign]
    for side in sides:
        _wrote(side)
    n = itertools.count(1)
    for step in range(300):
        pick = rng.random()
        ref = sides[1]
        worker = ref.worker()
        tokens = _books.tokens(worker)
        keys = list(ref.pool._jobs)
        if pick < 0.3 or not keys:
            if rng.random() < 0.85:
                jobs = [_one(rng, next(n))]
            else:
                jobs = [_job(rng, next(n)) for _ in range(rng.randint(2, 5))]
            chain = rng.choice((None, None, None, "slot-1", f"c{step}"))
            if rng.random() < 0.05:
                jobs[0].devices = "gpu-3"  # (no idle worker of that set: the general path)
            for side in sides:
                side.pool.submit_all([_copy(j) for j in jobs], chain)
                side.read_all()
        elif pick < 0.85 and tokens:
            if rng.random() < 0.7:  # the head's reply alone: one message in one write
                token = tokens[0]
                kind = rng.random()
                if kind < 0.8:
                    data = _kept(token, bytes([token % 256]) * rng.choice((1, 9)))
                elif kind < 0.9:
                    data = _pickled(token, _process.OK)
                elif kind < 0.95:
                    data = _pickled(token, _process.ERROR)
                else:
                    data = _kept(token - 1000, b"s")  # stale
            else:
                k = rng.randint(1, len(tokens))
                data = b"".join(_kept(t, b"v") for t in tokens[:k])
            for side in sides:
                side.end().sendall(data)
                side.read_all()
        elif pick < 0.93 and keys:
            key = rng.choice(keys)
            for side in sides:
                side.pool.cancel(key)
                side.read_all()
        elif pick < 0.97 and tokens:
            for side in sides:  # the worker dies (a crash mid-run)
                _wrote(side)
                side.end().close()
                side.read_all()
        elif worker.head is not None and worker.head.timeout is not None:
            for side in sides:
                w = side.worker()
                side.pool._expire(w, w.head)  # type: ignore[arg-type]
                side.read_all()
        assert _wrote(sides[0]) == _wrote(sides[1]), f"seed {seed} step {step}"
        assert sides[0].got == sides[1].got, f"seed {seed} step {step}"
        assert _books_of(sides[0]) == _books_of(sides[1]), f"seed {seed} step {step}"
    return taken[0]


@pytest.mark.parametrize("seed", range(10))
def test_a_job_alone_ends_as_on_the_general_path(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _play(seed, monkeypatch) > 20  # (the short path was taken)


def test_the_differential_check_catches_a_job_sent_under_another_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(AssertionError):
        _play(1, monkeypatch, plant="token")
