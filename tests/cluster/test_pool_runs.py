"""A feed's short jobs booked as one ``JobRun`` entry of ``Worker.sent`` (``_feeds._block``, read by
``_books`` and ``_kept.kept_block``) end every job exactly as the per-job books do: two pools
take the same random events, one with the block path, one with it off (``_block`` finding
nothing, so every job is fed and booked one by one as before runs), and must deliver the same
outcomes in the same order and keep the same books (the tokens and keys on the pipe, the head,
the bytes, the live keys, the queued jobs) after every step. The events: chains of W1-like short
jobs among jobs that take the pickled path (inputs, env, a non-bytes payload), another argument
inclusion, a NUL in a title, a string key, a timeout; replies of the oldest jobs in one write
(blocks of KEPT replies, one KEPT, a pickled OK or error, a SKIPPED, a stale token), cancels of
queued and sent jobs, a worker killed mid-run (its replacement started and ready), a timeout.
The workers are socketpairs driven by the test; the loop is a fake that runs what the pool asks
when the test says."""

from __future__ import annotations

import itertools
import pickle
import random
import socket
import struct
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import pytest

from handoffd.worker import _books, _feeds, _losses, _pipe, _process, _records
from handoffd.worker._records import Job, JobBlock, Kept, Outcome, Worker, expand
from handoffd.worker.pool import WorkerPool

_FRAMED = struct.Struct("!icqd")  # (``_process._KEPT_FRAMED``)


class _Handle:
    def __init__(self, loop: _Loop, at: float, fn: Callable[..., Any], args: tuple) -> None:
        self.loop, self.at, self.fn, self.args, self.cancelled = loop, at, fn, args, False

    def cancel(self) -> None:
        self.cancelled = True


class _Loop:
    """What the pool asks of its loop, run when the test says (``run``)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.soon: list[tuple[Callable[..., Any], tuple]] = []
        self.timers: list[_Handle] = []

    def time(self) -> float:
        return self.now

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        self.soon.append((fn, args))

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> _Handle:
        handle = _Handle(self, self.now + delay, fn, args)
        self.timers.append(handle)
        return handle

    def add_reader(self, *args: Any) -> None:
        pass

    def remove_reader(self, *args: Any) -> None:
        pass

    def add_writer(self, *args: Any) -> None:
        raise AssertionError("the test's pipes never fill")

    def remove_writer(self, *args: Any) -> None:
        pass

    def call_soon_threadsafe(self, fn: Callable[..., Any], *args: Any) -> None:
        self.soon.append((fn, args))

    def run(self) -> None:
        while self.soon:
            fn, args = self.soon.pop(0)
            fn(*args)


class _Process:
    def __init__(self, n: int) -> None:
        self.name = f"fake-{n}"
        self.pid = 1000 + n


class _Procs:
    """Starts a worker as a socketpair (its other end kept for the test) and says at once, on
    the next ``run``, that a killed one exited."""

    def __init__(self, loop: _Loop) -> None:
        self.loop = loop
        self.names = itertools.count(1)
        self.ends: dict[int, socket.socket] = {}  # a worker's pid -> the test's end

    def start(self, name: str, devices: str | None, setup: Any) -> tuple[Any, Connection, None]:
        ours, theirs = socket.socketpair()
        theirs.setblocking(False)
        process = _Process(next(self.names))
        self.ends[process.pid] = theirs
        theirs.sendall(_pipe.framed_one(_process.READY))
        return process, Connection(ours.detach()), None

    def when_exited(self, process: Any, then: Callable[[int | None], None] | None) -> None:
        if then is not None:
            self.loop.call_soon(then, -9)

    async def close(self, alive: list[Any]) -> None:
        pass


class _Side:
    """One pool under test with its fake loop and workers, and what it delivered."""

    def __init__(self, blocks: bool, monkeypatch: pytest.MonkeyPatch) -> None:
        self.loop = _Loop()
        self.got: list[tuple] = []
        self.pool = WorkerPool(1, self.got_one, ahead=6)
        self.pool.on_read = self.got_many
        self.pool.rows = True
        self.blocks = blocks
        self.procs = _Procs(self.loop)
        pool = self.pool
        pool._loop = self.loop  # type: ignore[assignment]
        pool._procs = self.procs  # type: ignore[assignment]
        pool._spawn(None)
        self.read_all()

    def got_one(self, outcome: Outcome) -> None:
        self.got.append(_plain(outcome))

    def got_many(self, ended: list[Any]) -> None:
        for one in ended:
            if type(one) is Kept:
                self.got += [("ok", k, v, "") for k, v, _, _ in one.rows()]
            elif type(one) is tuple:
                self.got.append(("ok", one[0], one[1], ""))
            else:
                self.got.append(_plain(one))

    def worker(self) -> Worker:
        (worker,) = self.pool._workers
        return worker

    def end(self) -> socket.socket:
        return self.procs.ends[self.worker().process.pid]

    def read_all(self) -> None:
        """Every worker's pipe read (the stand-in's writes) and the loop's callbacks run."""
        for _ in range(3):
            self.loop.run()
            for worker in list(self.pool._workers):
                self.pool._on_readable(worker)
            self.loop.run()

    def drain(self) -> None:
        """The test's ends drop what the pool wrote (the jobs' bytes)."""
        for end in self.procs.ends.values():
            try:
                while end.recv(1 << 20):
                    pass
            except (BlockingIOError, OSError):
                pass

    def books(self) -> tuple:
        pool = self.pool
        live = pool.live()
        walked: dict[Any, Any] = {}  # (every job not ended, from the queues and pipes)
        pool._walk(walked, False)
        # (a block's jobs may have no entry of their own, never an ended job one: ``_index``)
        assert pool._jobs.keys() <= walked.keys() == live.keys()
        out: list[Any] = [sorted(map(repr, live)), pool.pending, pool.busy]
        for worker in sorted(pool._workers, key=lambda w: w.fd):
            chain = worker.chain
            out.append(
                (
                    _books.tokens(worker),
                    [_fields(job) for job in _books.jobs(worker)],
                    _books.count(worker),
                    None if worker.head is None else _fields(worker.head),
                    worker.bytes,
                    None if chain is None else [_fields(job) for job in expand(chain.jobs)],
                )
            )
        return tuple(out)


def _fields(job: Job) -> tuple:
    """What a worker is given of a job (its key, and what it runs it with)."""
    return (job.key, job.payload, job.title, job.argument_inclusion, job.timeout, job.memory)


def _plain(outcome: Outcome) -> tuple:
    return (outcome.kind or "ok", outcome.key, outcome.value, outcome.exc_type)


def _job(rng: random.Random, n: int) -> Job:
    key: Any = ("r", f"t{n}", 1)
    payload: Any = b"p" * (20000 if rng.random() < 0.08 else rng.choice((0, 3, 20)))
    inputs: list[Any] = []
    inclusion, title, env, timeout = "variadic", f"run r task t{n}", None, None
    pick = rng.random()
    if pick < 0.02:
        inputs = [("v", n)]
    elif pick < 0.035:
        env = {"A": "1"}
    elif pick < 0.05:
        payload = bytearray(payload)
    elif pick < 0.09:
        inclusion = "as_list"
    elif pick < 0.10:
        title = f"t\0{n}"
    elif pick < 0.12:
        key = f"k{n}"
    elif pick < 0.15:
        timeout = 5.0
    return Job(key, payload, inputs, inclusion, timeout, env, title=title)


def _kept(token: int, value: bytes) -> bytes:
    return _FRAMED.pack(_process.KEPT_SIZE + len(value), b"K", token, 0.001) + value


def _pickled(token: int, status: int) -> bytes:
    if status == _process.OK:
        reply = [(token, status, b"pv", "", "", "", 0.5, "printed\n")]
    elif status == _process.SKIPPED:
        reply = [(token, status, False, "", "", "", 0.0, "")]
    else:
        reply = [(token, status, False, "ValueError", "no", "tb", 0.5, "")]
    return _pipe.framed_one(pickle.dumps(reply, protocol=5))


def _replies(rng: random.Random, tokens: list[int], cancelled: set[int]) -> bytes:
    """What a worker writes for the ``k`` oldest jobs on its pipe in one write: mostly KEPT of
    one size, sometimes of another, a pickled reply, a SKIPPED for a cancel, a stale token."""
    k = rng.randint(1, len(tokens))
    out = []
    size = rng.choice((1, 4))
    for token in tokens[:k]:
        pick = rng.random()
        if token in cancelled and pick < 0.6:
            out.append(_pickled(token, _process.SKIPPED))
        elif pick < 0.05:
            out.append(_pickled(token, _process.OK))
        elif pick < 0.09:
            out.append(_pickled(token, _process.ERROR))
        elif pick < 0.13:
            out.append(_kept(token, b"x" * (size + 3)))
        else:
            out.append(_kept(token, bytes([token % 256]) * size))
    if rng.random() < 0.05:
        out.insert(rng.randint(0, len(out)), _kept(tokens[0] - 1, b"s"))  # stale
    return b"".join(out)


def _as_blocks(jobs: list[Job], rng: random.Random) -> list[Job | JobBlock]:
    """``jobs`` as the executor's refill submits rows: consecutive jobs with no inputs or env
    and one inclusion and timeout as ``JobBlock``s (cut at random places too), the others as
    they are."""
    out: list[Job | JobBlock] = []
    block: JobBlock | None = None
    for job in jobs:
        if job.inputs or job.env is not None:
            out.append(job)
            block = None
            continue
        if (
            block is None
            or job.argument_inclusion != block.argument_inclusion
            or job.timeout != block.timeout
            or rng.random() < 0.1
        ):
            block = JobBlock([], [], [], job.argument_inclusion, job.timeout, None, None)
            out.append(block)
        block.keys.append(job.key)
        block.payloads.append(job.payload)
        block.titles.append(job.title)
    return out


def _play(seed: int, monkeypatch: pytest.MonkeyPatch, plant: str = "", blocks: bool = False) -> int:
    """``blocks``: the first pool is submitted ``JobBlock``s (``_as_blocks``) where it can."""
    rng = random.Random(seed)
    sides = [_Side(True, monkeypatch), _Side(False, monkeypatch)]
    taken = [0]  # the block's path taken (``_block`` or ``_from_block`` answered a run)
    cut = random.Random(seed + 1000)  # (where blocks are cut: not the events' draws)

    def real_block(*args: Any) -> Any:
        block = _feeds_block(*args)
        taken[0] += block is not None
        return block

    def real_from_block(*args: Any) -> Any:
        fed = _feeds_from_block(*args)
        taken[0] += type(fed) is tuple
        if plant == "block_at" and type(fed) is tuple:
            args[0].at -= 1  # (a planted fault: a block's fed job left at its front)
        return fed

    monkeypatch.setattr(_feeds.Feeds, "_from_block", staticmethod(real_from_block))

    n = itertools.count(1)
    cancelled: set[int] = set()
    chains = ["c1"] * 8 + ["c2", None]
    for step in range(400):
        pick = rng.random()
        jobs_args = None
        if pick < 0.25 or not sides[1].pool._jobs:
            count = rng.randint(1, 20)
            jobs_args = ([_job(rng, next(n)) for _ in range(count)], rng.choice(chains))
        for side in sides:
            # (``_block`` off: the per-job books, the reference)
            monkeypatch.setattr(
                _feeds.Feeds, "_block", staticmethod(real_block if side.blocks else _none)
            )
            pool = side.pool
            if jobs_args is not None:
                jobs, chain = jobs_args
                copies = [
                    Job(
                        j.key,
                        j.payload,
                        j.inputs,
                        j.argument_inclusion,
                        j.timeout,
                        j.env,
                        title=j.title,
                    )
                    for j in jobs
                ]
                if blocks and side.blocks:
                    pool.submit_all(_as_blocks(copies, cut), chain)
                else:
                    pool.submit_all(copies, chain)
                side.read_all()
        if jobs_args is None:
            ref = sides[1]
            worker = ref.worker()
            tokens = _books.tokens(worker)
            keys = list(ref.pool._jobs)
            if pick < 0.85 and tokens:
                data = _replies(rng, tokens, cancelled)
                for side in sides:
                    monkeypatch.setattr(
                        _feeds.Feeds, "_block", staticmethod(real_block if side.blocks else _none)
                    )
                    side.drain()
                    side.end().sendall(data)
                    side.read_all()
            elif pick < 0.93 and keys:
                key = rng.choice(keys)
                on_pipe = dict(zip([j.key for j in _books.jobs(worker)], tokens, strict=True))
                if key in on_pipe:
                    cancelled.add(on_pipe[key])
                for side in sides:
                    monkeypatch.setattr(
                        _feeds.Feeds, "_block", staticmethod(real_block if side.blocks else _none)
                    )
                    side.pool.cancel(key)
                    side.read_all()
            elif pick < 0.97 and tokens:
                for side in sides:  # the worker dies (a crash mid-run)
                    monkeypatch.setattr(
                        _feeds.Feeds, "_block", staticmethod(real_block if side.blocks else _none)
                    )
                    side.drain()
                    side.end().close()
                    side.read_all()
            elif worker.head is not None and worker.head.timeout is not None:
                for side in sides:
                    monkeypatch.setattr(
                        _feeds.Feeds, "_block", staticmethod(real_block if side.blocks else _none)
                    )
                    w = side.worker()
                    side.pool._expire(w, w.head)  # type: ignore[arg-type]
                    side.read_all()
        if plant == "skip_at" and sides[0].worker().runs:
            for entry in sides[0].worker().sent.values():
                if type(entry) is _records.JobRun and len(entry.jobs) - entry.at > 2:
                    entry.at += 1  # (a planted fault: a run's job ends unreplied)
                    plant = ""
                    break
        assert sides[0].got == sides[1].got, f"seed {seed} step {step}"
        assert sides[0].books() == sides[1].books(), f"seed {seed} step {step}"
    return taken[0]


_feeds_block = _feeds.Feeds._block
_feeds_from_block = _feeds.Feeds._from_block


def _none(*args: Any) -> None:
    return None


@pytest.fixture(autouse=True)
def _no_kill(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake workers have no process to kill."""
    monkeypatch.setattr(_losses, "kill_group", lambda process: None)
    monkeypatch.setattr("handoffd.worker.pool.kill_group", lambda process: None)


@pytest.mark.parametrize("seed", range(12))
def test_runs_end_every_job_as_the_per_job_books_do(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _play(seed, monkeypatch) > 0  # (the block's path was taken)


def test_the_differential_check_catches_a_run_s_job_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AssertionError):
        _play(3, monkeypatch, plant="skip_at")


@pytest.mark.parametrize("seed", range(12))
def test_blocks_end_every_job_as_jobs_fed_one_by_one_do(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chain's jobs submitted as ``JobBlock``s (the executor's chained rows), fed whole, cut
    by cancels, losses, a feed of one and the bytes' bound: the outcomes and books of the same
    jobs submitted as ``Job``s and fed one by one."""
    assert _play(seed, monkeypatch, blocks=True) > 0


def test_the_differential_check_catches_a_block_s_job_fed_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(AssertionError):
        _play(3, monkeypatch, plant="block_at", blocks=True)


def _w1_block(first: int, count: int) -> JobBlock:
    """``count`` W1-like short jobs of one inclusion as the executor's refill submits them."""
    keys: list[Any] = [("r", f"t{n}", 1) for n in range(first, first + count)]
    payloads = [b"p%d" % n for n in range(first, first + count)]
    titles = [f"run r task t{n}" for n in range(first, first + count)]
    return JobBlock(keys, payloads, titles, "variadic", None, None, None)


def test_a_block_s_jobs_take_no_entry_in_the_pool_s_books_until_a_cancel_looks_one_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ``JobBlock``'s jobs are submitted, fed and ended by their replies' positions with no
    key -> chain entry a job (``WorkerPool._jobs``); the counts and a cancel by key still see
    every one of them, the queued ones and those on the pipe."""
    side = _Side(True, monkeypatch)
    pool = side.pool
    pool.submit_all([_w1_block(0, 10)], "c")
    side.read_all()
    assert not pool._jobs and pool.pending == 10 and len(pool.live()) == 10
    tokens = _books.tokens(side.worker())
    assert len(tokens) == 7  # (the head and ``ahead`` behind it; three queued)
    side.drain()
    side.end().sendall(b"".join(_kept(token, b"v") for token in tokens[:4]))
    side.read_all()
    assert [got[1] for got in side.got] == [("r", f"t{n}", 1) for n in range(4)]
    assert not pool._jobs and pool.pending == 6
    # A cancel of a job on the pipe and of a queued one: every job not ended gets its entry,
    # another chain's queued block's too (its jobs leave the map as they end)
    pool.submit_all([_w1_block(10, 5)], "c")
    other = _w1_block(20, 6)
    pool.submit_all([other], "d")
    assert not other.indexed
    assert pool.cancel(("r", "t5", 1)) is True and pool.cancel(("r", "t12", 1)) is True
    assert set(pool._jobs) == {
        ("r", f"t{n}", 1) for n in [*range(4, 15), *range(20, 26)] if n != 12
    }
    assert other.indexed and pool.cancel(("r", "t99", 1)) is False
    side.read_all()
    # The rest end as their replies come, their entries with them (a SKIPPED for the cancel)
    while pool.pending:
        worker = side.worker()
        cancelled = {job.token for job in _books.jobs(worker) if job.cancelling}
        side.drain()
        side.end().sendall(
            b"".join(
                _pickled(token, _process.SKIPPED) if token in cancelled else _kept(token, b"v")
                for token in _books.tokens(worker)
            )
        )
        side.read_all()
    assert not pool._jobs and not pool.live()
    ended = {got[1]: got[0] for got in side.got}
    assert len(ended) == len(side.got) == 21
    assert ended[("r", "t5", 1)] == ended[("r", "t12", 1)] == "cancelled"
    assert sum(kind == "ok" for kind in ended.values()) == 19
