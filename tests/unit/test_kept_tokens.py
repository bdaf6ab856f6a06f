"""``_kept.kept_block`` compiled and as its ``.py`` run as plain Python end the same blocks: over
random books (a ``JobRun`` at the front, fed from a ``JobBlock`` or not, or jobs booked one a
token, a head among them, a job being cancelled, a key not a task's) and random buffers of
framed KEPT replies (values of one size or two, a stale token anywhere in a block, a token whose
high byte is set, a frame of another kind, a frame cut by the read), both take the same bytes and
leave the same outcomes (keys, values, durations, pid), books, live keys, bytes and buffer. And
the block's tokens are each checked: a reply for a job no longer on the pipe is never ended as
the job at its place, in either build."""

from __future__ import annotations

import random
import struct
from types import SimpleNamespace
from typing import Any

import pytest
from pure_build import check_builds, pure

from handoffd.worker import _kept, _process
from handoffd.worker._records import Job, JobBlock, JobRun, Kept

pytestmark = pytest.mark.timeout(120)

PURE = pure(_kept, "handoffd_worker_kept_tokens_pure")
_FRAMED = _process._KEPT_FRAMED


def test_the_compiled_build_is_the_one_imported_when_the_core_was_built() -> None:
    check_builds(_kept, PURE)


def _frame(token: int, value: bytes, duration: float) -> bytes:
    return _FRAMED.pack(_process.KEPT_SIZE + len(value), _process.KEPT, token, duration) + value


def _books(rng: random.Random, count: int) -> tuple[SimpleNamespace, dict[Any, Any]]:
    """A worker's books of ``count`` jobs from token 1, and its live map."""
    keys: list[Any] = [("r", f"t{n}", 1) for n in range(1, count + 1)]
    if rng.random() < 0.1:
        keys[rng.randrange(count)] = f"hook-{rng.random()}"  # (not a task's: one by one)
    titles = [f"title {n}" for n in range(count)]
    payloads = [bytes(rng.randint(1, 9)) for _ in range(count)]
    sent: dict[int, Any] = {}
    runs = 0
    if rng.random() < 0.7:
        block = None
        if rng.random() < 0.5:
            block = JobBlock(keys, payloads, titles, "variadic", None, None, None)
            block.indexed = rng.random() < 0.5
        made: list[Any] = (
            [None] * count
            if block is not None
            else [Job(k, p, [], title=t) for k, p, t in zip(keys, payloads, titles, strict=True)]
        )
        run = JobRun(made, list(keys), 1, titles, payloads, block)
        run.at = rng.randint(0, 1)
        sent[1] = run
        runs = 1
        head = made[run.at] if block is None else None
    else:
        for n, (k, p) in enumerate(zip(keys, payloads, strict=True), 1):
            job = Job(k, p, [])
            job.token, job.size, job.cancelling = n, 20 + len(p), rng.random() < 0.05
            sent[n] = job
        head = sent[1]
    reader = SimpleNamespace(buf=bytearray(), edge=0)
    worker = SimpleNamespace(reader=reader, sent=sent, runs=runs, head=head, bytes=10_000)
    live = {k: "chain" for k in keys if rng.random() < 0.9}
    return worker, live


def _stream(rng: random.Random, first: int, count: int) -> bytes:
    sizes = rng.choice([(3,), (3,), (3, 4), (0, 8)])
    noise = rng.choice([0.0, 0.0, 0.01, 0.03])
    out = b""
    for token in range(first, first + count):
        value = bytes([token % 251]) * rng.choice(sizes)
        roll = rng.random() / noise if noise else 1.0
        if roll < 0.4:
            out += _frame(token + 1000, value, 0.0)  # (a stale token among the block's)
        elif roll < 0.7:
            out += _frame(token | (0xFF << 56) - (1 << 64), value, 0.0)  # (its high byte set)
        elif roll < 1.0:
            out += struct.pack("!i", 6) + b"Lxxxxx"  # (a message of another kind)
        out += _frame(token, value, 0.001 * token)
    if rng.random() < 0.3:
        out = out[: rng.randint(1, len(out))]  # (the read ended inside a frame)
    return out


def _state(worker: SimpleNamespace, live: dict[Any, Any], outcomes: list[Any]) -> tuple:
    ended = [
        (list(o.keys), list(o.values), list(o.durations), o.pid) if type(o) is Kept else o
        for o in outcomes
    ]
    books = []
    for token, entry in worker.sent.items():
        books.append((token, entry.at) if type(entry) is JobRun else (token, entry.key))
    head = worker.head.key if worker.head is not None else None
    return (
        ended,
        books,
        head,
        worker.runs,
        worker.bytes,
        sorted(map(str, live)),
        bytes(worker.reader.buf),
        worker.reader.edge,
    )


@pytest.mark.parametrize("seed", range(24))
def test_both_builds_take_the_same_blocks(seed: int) -> None:
    rng = random.Random(seed)
    taken_any = 0
    for _ in range(40):
        count = rng.randint(2, 150)
        state = rng.getstate()
        data = _stream(rng, rng.choice([1, 1, 1, 1, 2]), count)
        got = []
        for build in (_kept, PURE):
            rng.setstate(state)
            worker, live = _books(rng, count)
            worker.reader.buf += data
            outcomes: list[Any] = []
            took = [build.kept_block(worker, live, outcomes, 77)]
            while took[-1]:  # (the next block, as ``_replies._kept_run`` asks for it)
                took.append(build.kept_block(worker, live, outcomes, 77))
            got.append((took, _state(worker, live, outcomes)))
        assert got[0] == got[1]
        taken_any += got[0][0][0] > 0
        # Every job a block ended is the one its reply's token names: in order from the first
        ended = [k for o in got[0][1][0] for k in o[0]]
        assert len(ended) <= count
    assert taken_any > 5


@pytest.mark.parametrize("build", ["compiled", "pure"])
def test_a_stale_token_inside_a_block_stops_it_before_any_change(build: str) -> None:
    module = _kept if build == "compiled" else PURE
    for at in range(5):  # (the stale reply's place among five of one size)
        job_keys: list[Any] = [("r", f"t{n}", 1) for n in range(1, 6)]
        run = JobRun([None] * 5, list(job_keys), 1, ["t"] * 5, [b"p"] * 5, None)
        worker = SimpleNamespace(
            reader=SimpleNamespace(buf=bytearray(), edge=0),
            sent={1: run},
            runs=1,
            head=None,
            bytes=100,
        )
        tokens = [1, 2, 3, 4, 5]
        tokens[at] = 900 + at
        for token in tokens:
            worker.reader.buf += _frame(token, b"vv", 0.5)
        before = bytes(worker.reader.buf)
        outcomes: list[Any] = []
        assert module.kept_block(worker, {}, outcomes, 1) == 0
        assert not outcomes and run.at == 0 and bytes(worker.reader.buf) == before
