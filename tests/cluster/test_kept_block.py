"""A read's KEPT replies cut as one block (``_kept.kept_block``: the frames' heads a byte at a
time, one struct for the whole block, one C loop that checks and one that ends the books) end
exactly what the same replies read one by one (``_replies._kept_run``'s loop, the reference:
``kept_block`` taking nothing) end. Two workers, each on its own pipe, hold the same random books
(a feed's ``JobRun``s among jobs sent alone, a run part ended already, a job being cancelled, a
key that is not a plain tuple, the head or none) and read the same random stream (KEPT replies of
one value size or a few, a stale token, a pickled reply, a reply to a job not the oldest, jobs
left unanswered), cut at random points; after every read the ends so far (a block's rows, rows,
outcomes) and the books (the tokens and keys on the pipe, the runs, the head, the bytes, the live
map, the reader's buffer) must be the same. Both builds: the compiled module and its ``.py`` as
plain Python."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import random
from dataclasses import fields
from typing import Any, NamedTuple

import pytest
from pure_build import check_builds, pure

from handoffd.worker import _books, _kept, _pipe, _process, _replies
from handoffd.worker._records import Job, JobRun, Kept, Outcome, Worker

pytestmark = pytest.mark.timeout(120)

PURE = pure(_kept, "handoffd_worker_kept_pure")


class _Process:
    pid = 4242
    name = "kept-block"


class _HookKey(NamedTuple):  # (a serialize hook's key: a tuple, not a plain one)
    peer: str
    request: int


def _framed(token: int, value: bytes, duration: float) -> bytes:
    """A KEPT reply framed as the worker writes it (``_process.main``)."""
    size = _process.KEPT_SIZE + len(value)
    return _process._KEPT_FRAMED.pack(size, _process.KEPT, token, duration) + value


def _pickled(token: int, value: bytes) -> bytes:
    """A reply pickled with its output (a job that printed), framed."""
    reply = [(token, _process.OK, value, "", "", "", 0.5, "printed\n")]
    return _pipe.framed_one(pickle.dumps(reply, protocol=5))


def test_the_compiled_build_is_the_one_imported_when_the_core_was_built() -> None:
    check_builds(_kept, PURE)


def _books_of(rng: random.Random) -> list[tuple[Any, ...]]:
    """A random pipe's entries, in the order sent: ("run", keys, titles, payloads, at) or ("job",
    key, size, cancelling)."""
    entries: list[tuple[Any, ...]] = []
    task = 0
    for _ in range(rng.randint(1, 6)):
        if rng.random() < 0.6:
            n = rng.choice([1, 2, 3, rng.randint(4, 40), rng.randint(100, 160)])
            keys: list[Any] = [("r", f"t{task + i}", 1) for i in range(n)]
            if rng.random() < 0.15:  # (a job whose key is not a task's)
                keys[rng.randrange(n)] = rng.choice([_HookKey("peer", task), f"s{task}"])
            titles = [rng.choice(["", "run r task t", "x" * rng.randint(0, 30)]) for _ in keys]
            payloads = [rng.choice([b"p", b"payload" * rng.randint(1, 5)]) for _ in keys]
            at = rng.choice([0, 0, 0, rng.randint(0, n - 1)])
            entries.append(("run", keys, titles, payloads, at))
            task += n
        else:
            key: Any = ("r", f"t{task}", rng.randint(1, 3))
            if rng.random() < 0.1:
                key = _HookKey("peer", task)
            elif rng.random() < 0.05:
                key = f"s{task}"
            entries.append(("job", key, rng.randint(10, 200), rng.random() < 0.1))
            task += 1
    return entries


def _set_up(worker: Worker, entries: list[tuple[Any, ...]], head: bool) -> dict[Any, Any]:
    """``worker``'s books as ``entries`` say (as the pool's feed leaves them); the live map."""
    live: dict[Any, Any] = {}
    token = 100
    for entry in entries:
        if entry[0] == "run":
            _, keys, titles, payloads, at = entry
            jobs = [
                Job(key, payload, [], title=title)
                for key, payload, title in zip(keys, payloads, titles, strict=True)
            ]
            run = JobRun(jobs, list(keys), token, list(titles), list(payloads))
            run.at = at
            worker.sent[token] = run
            worker.runs += 1
            worker.bytes += sum(
                _books.SHORT_SIZE + len(titles[i]) + len(payloads[i]) for i in range(at, len(keys))
            )
            for job in jobs[at:]:
                live[job.key] = worker
            token += len(keys)
        else:
            _, key, size, cancelling = entry
            job = Job(key, b"p", [])
            job.token, job.size, job.cancelling = token, size, cancelling
            worker.sent[token] = job
            worker.bytes += size
            live[key] = worker
            token += 1
    if head:
        worker.head = _books.oldest(worker)
    return live


def _stream(rng: random.Random, worker: Worker) -> bytes:
    """Replies to the jobs on ``worker``'s pipe, mostly in order."""
    tokens = _books.tokens(worker)
    sizes = rng.choice([(8,), (8,), (0,), (8, 9), (0, 8, 300), (1000,)])
    answered = tokens[: rng.choice([len(tokens), len(tokens), rng.randint(0, len(tokens))])]
    if len(answered) > 3 and rng.random() < 0.1:  # (a reply to a job not the oldest)
        i = rng.randrange(1, len(answered) - 1)
        answered[i], answered[i + 1] = answered[i + 1], answered[i]
    data = b""
    for token in answered:
        value = bytes([token % 251]) * rng.choice(sizes)
        if rng.random() < 0.03:
            data += _pickled(token, value)
        else:
            data += _framed(token, value, rng.choice([1e-5, 0.001 * token, 2.5]))
        if rng.random() < 0.02:
            data += _framed(token + 10_000, value, 0.0)  # (a token no longer on the pipe)
    if answered and rng.random() < 0.2:  # (one after the last job's: more replies than jobs)
        data += _framed(99_999, bytes([answered[-1] % 251]) * rng.choice(sizes), 0.0)
    return data


def _ends(outcomes: list[Any]) -> list[Any]:
    """Each job's end as a tuple of its fields (a block's rows each a row)."""
    flat: list[Any] = []
    for o in outcomes:
        if type(o) is Kept:
            assert len(o.keys) == len(o.values) == len(o.durations)  # (the columns read whole)
            flat += o.rows()
        elif type(o) is Outcome:
            flat.append(tuple(getattr(o, f.name) for f in fields(o)))
        else:
            flat.append(o)
    return flat


def _state(worker: Worker, live: dict[Any, Any]) -> tuple[Any, ...]:
    head = worker.head
    return (
        _books.tokens(worker),
        [job.key for job in _books.jobs(worker)],
        worker.runs,
        None if head is None else head.key,
        worker.bytes,
        list(live),
        bytes(worker.reader.buf),
        worker.reader.edge,
    )


def _read(worker: Worker, live: dict[Any, Any]) -> list[Any]:
    outcomes, lost, _ = _replies.read(worker, live, lambda w: None, None, True)
    assert not lost
    return outcomes


@pytest.mark.parametrize("build", ["compiled", "pure"])
@pytest.mark.parametrize("seed", range(12))
def test_a_block_ends_what_its_replies_end_one_by_one(
    seed: int, build: str, monkeypatch: Any
) -> None:
    rng = random.Random(seed)
    block = _kept.kept_block if build == "compiled" else PURE.kept_block
    pipes = [multiprocessing.Pipe(duplex=True) for _ in range(2)]
    blocks = 0
    try:
        for _ in range(25):
            entries = _books_of(rng)
            head = rng.random() < 0.5
            workers = [Worker(_Process(), ours) for ours, _ in pipes]  # type: ignore[arg-type]
            lives = [_set_up(worker, entries, head) for worker in workers]
            data = _stream(rng, workers[0])
            cuts = sorted(rng.sample(range(1, len(data)), min(4, len(data) - 1))) if data else []
            ended: list[list[Any]] = [[], []]
            at = 0
            for cut in [*cuts, len(data)]:
                for side, (worker, (_, theirs)) in enumerate(zip(workers, pipes, strict=True)):
                    os.write(theirs.fileno(), data[at:cut])
                    monkeypatch.setattr(
                        _replies, "kept_block", block if side == 0 else lambda *args: 0
                    )
                    outcomes = _read(worker, lives[side])
                    blocks += side == 0 and any(type(o) is Kept for o in outcomes)
                    ended[side] += _ends(outcomes)
                at = cut
                assert ended[0] == ended[1]
                assert _state(workers[0], lives[0]) == _state(workers[1], lives[1])
            for worker in workers:
                worker.reader.close()
                worker.writer.close()
    finally:
        for ours, theirs in pipes:
            ours.close()
            theirs.close()
    assert blocks > 5  # (the block's path was taken)
