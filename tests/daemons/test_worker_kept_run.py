"""The parent's read of a worker's KEPT replies many to a read (``_replies._kept_run``): each ends
its job as the one-at-a-time path does (value, duration, pid, cancel pending), in the order sent,
stopping at any other message and at a reply not yet whole, which a later read finishes."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import random
from dataclasses import fields
from typing import Any, NamedTuple

import pytest

from handoffd.worker import _pipe, _process, _replies
from handoffd.worker._records import Job, Kept, Worker, ok_outcome, outcome_of

pytestmark = pytest.mark.timeout(60)


class _Process:
    def __init__(self) -> None:
        self.pid = 4242
        self.name = "kept-worker"


def _kept(token: int, value: bytes, duration: float) -> bytes:
    """A KEPT reply framed as the worker writes it (``_process.main``)."""
    size = _process.KEPT_SIZE + len(value)
    return _process._KEPT_FRAMED.pack(size, _process.KEPT, token, duration) + value


def _pickled(token: int, value: bytes) -> bytes:
    """A reply pickled with its output (a job that printed), framed."""
    reply = [(token, _process.OK, value, "", "", "", 0.5, "printed\n")]
    return _pipe.framed_one(pickle.dumps(reply, protocol=5))


@pytest.fixture
def pipe() -> Any:
    ours, theirs = multiprocessing.Pipe(duplex=True)
    worker = Worker(_Process(), ours)  # type: ignore[arg-type]
    yield worker, theirs
    worker.reader.close()
    worker.writer.close()
    ours.close()
    theirs.close()


def _on_pipe(worker: Worker, count: int) -> tuple[dict[Any, Worker], list[Job]]:
    running: dict[Any, Worker] = {}
    jobs = []
    for token in range(1, count + 1):
        job = Job(("r", f"t{token}", 1), b"payload", [])
        job.token, job.size, job.cancelling = token, 10, False  # (as the pool sends it)
        worker.sent[token] = job
        running[job.key] = worker
        jobs.append(job)
    worker.bytes = 10 * count
    worker.head = jobs[0]
    return running, jobs


def test_many_kept_replies_and_a_pickled_one_end_in_order(pipe: Any, monkeypatch: Any) -> None:
    worker, theirs = pipe
    taken: list[int] = []
    run = _replies._kept_run

    def counted(*args: Any) -> int:
        taken.append(run(*args))
        return taken[-1]

    monkeypatch.setattr(_replies, "_kept_run", counted)
    running, jobs = _on_pipe(worker, 6)
    jobs[2].cancelling = True  # its cancel reached the worker too late: reported cancelled
    data = b"".join(
        [
            _kept(1, b"v1", 0.1),
            _kept(2, b"v2" * 100, 0.2),
            _kept(3, b"v3", 0.3),
            _pickled(4, b"v4"),
            _kept(5, b"", 0.5),
            _kept(99, b"stale", 0.0),  # a job no longer on the pipe: dropped
            _kept(6, b"v6", 0.6),
        ]
    )
    os.write(theirs.fileno(), data)
    outcomes, lost, answered = _replies.read(worker, running, lambda w: None)
    assert answered and not lost
    got = [(o.key[1], o.ok, o.kind, o.value, o.duration, o.output) for o in outcomes]
    assert got == [
        ("t1", True, "", b"v1", 0.1, ""),
        ("t2", True, "", b"v2" * 100, 0.2, ""),
        ("t3", False, "cancelled", None, 0.3, ""),
        ("t4", True, "", b"v4", 0.5, "printed\n"),
        ("t5", True, "", b"", 0.5, ""),
        ("t6", True, "", b"v6", 0.6, ""),
    ]
    assert all(type(o.value) is bytes for o in outcomes if o.ok)
    # the KEPT path's records, made in line, are ``ok_outcome``'s, slot for slot
    for o in (outcomes[0], outcomes[1], outcomes[4], outcomes[5]):
        made = ok_outcome(o.key, o.value, o.duration, "", 4242)
        assert [getattr(o, f.name) for f in fields(o)] == [
            getattr(made, f.name) for f in fields(made)
        ]
    assert {o.pid for o in outcomes if o.ok} == {4242}
    assert not running and not worker.sent and worker.head is None and worker.bytes == 0
    assert not worker.reader.buf and not worker.reader.pending
    # the three KEPT replies in front were ended in one pass, the three behind the pickled
    # one in another
    assert [n for n in taken if n] == [
        len(data[: data.index(_pickled(4, b"v4"))]),
        len(_kept(5, b"", 0.5) + _kept(99, b"stale", 0.0) + _kept(6, b"v6", 0.6)),
    ]


def test_a_reply_cut_by_the_read_waits_for_its_rest(pipe: Any) -> None:
    worker, theirs = pipe
    running, jobs = _on_pipe(worker, 3)
    data = _kept(1, b"a", 0.1) + _kept(2, b"b" * 50, 0.2) + _kept(3, b"c", 0.3)
    cut = len(_kept(1, b"a", 0.1)) + 30  # inside the second reply's value
    os.write(theirs.fileno(), data[:cut])
    outcomes, _, answered = _replies.read(worker, running, lambda w: None)
    assert answered and [o.key[1] for o in outcomes] == ["t1"]
    assert worker.head is None and set(worker.sent) == {2, 3}
    os.write(theirs.fileno(), data[cut:])
    outcomes, _, _ = _replies.read(worker, running, lambda w: None)
    assert [(o.key[1], o.value) for o in outcomes] == [("t2", b"b" * 50), ("t3", b"c")]
    assert not running and not worker.sent and not worker.reader.buf


def test_random_streams_end_every_job_once_in_order(pipe: Any) -> None:
    """Random mixes of KEPT and pickled replies, cut at random points: every job ends exactly
    once, in the order sent, with its own value."""
    worker, theirs = pipe
    rng = random.Random(7)
    for _ in range(30):
        count = rng.randint(1, 40)
        running, jobs = _on_pipe(worker, count)
        values = {t: bytes([t % 251]) * rng.randint(0, 300) for t in range(1, count + 1)}
        parts = [
            _kept(t, v, 0.01 * t) if rng.random() < 0.8 else _pickled(t, v)
            for t, v in values.items()
        ]
        data = b"".join(parts)
        ended = []
        at = 0
        while at < len(data):
            step = rng.randint(1, len(data) - at)
            os.write(theirs.fileno(), data[at : at + step])
            at += step
            outcomes, lost, _ = _replies.read(worker, running, lambda w: None)
            assert not lost
            ended += [(o.key, o.value) for o in outcomes]
        assert ended == [(job.key, values[job.token]) for job in jobs]
        assert not running and not worker.sent and worker.bytes == 0
        assert not worker.reader.buf and not worker.reader.pending


def test_with_rows_a_tasks_kept_reply_ends_as_its_row(pipe: Any) -> None:
    """``rows`` (the executor's pool): a KEPT reply read in a run ends as (key, value, duration,
    pid), what ``outcome_of`` reads back as the Outcome the same read makes without rows; a job
    whose key is not a plain tuple (a serialize hook's), a cancel and a pickled reply still end
    as Outcomes."""
    worker, theirs = pipe
    data = b"".join(
        [_kept(1, b"v1", 0.1), _kept(2, b"v2", 0.2), _kept(3, b"v3", 0.3), _pickled(4, b"v4")]
        + [_kept(5, b"v5", 0.5), _kept(6, b"v6", 0.6)]
    )
    got = {}
    for rows in (False, True):
        running, jobs = _on_pipe(worker, 6)
        jobs[2].cancelling = True
        hook_key = _HookKey("peer", 5)
        del running[jobs[5].key]
        jobs[5].key = hook_key
        running[hook_key] = worker
        os.write(theirs.fileno(), data)
        outcomes, lost, answered = _replies.read(worker, running, lambda w: None, None, rows)
        assert answered and not lost and not running and not worker.sent
        got[rows] = outcomes
    plain, as_rows = got[False], got[True]
    assert [type(o) is tuple for o in as_rows] == [True, True, False, False, True, False]
    assert as_rows[0] == (("r", "t1", 1), b"v1", 0.1, 4242)
    for a, b in zip(plain, as_rows, strict=True):
        b = outcome_of(b)
        assert [getattr(a, f.name) for f in fields(a)] == [getattr(b, f.name) for f in fields(b)]


class _HookKey(NamedTuple):
    peer: str
    request: int


def _flat(outcomes: list[Any]) -> list[Any]:
    """Each job's end as an ``Outcome`` (a ``Kept`` block's rows, in order, a ``Row``'s)."""
    flat: list[Any] = []
    for o in outcomes:
        flat += [outcome_of(r) for r in o.rows()] if type(o) is Kept else [outcome_of(o)]
    return flat


def test_random_streams_with_rows_end_in_blocks_as_one_by_one(pipe: Any) -> None:
    """With ``rows``, KEPT replies of one frame size at a read's front end as one ``Kept`` block
    (``_kept.kept_block``): over random streams (values of one size or a few, cancels
    pending, stale tokens, a hook's job, pickled replies, reads cut anywhere) every job ends
    once, in the order sent, with the fields the same stream read without ``rows`` gives, and
    the pool's books (``sent``, the live map, the head, the bytes) end empty."""
    worker, theirs = pipe
    rng = random.Random(11)
    blocks = 0
    for _ in range(40):
        count = rng.randint(2, 60)
        sizes = rng.choice([(8,), (8,), (8, 9), (0, 8, 300)])
        values = {t: bytes([t % 251]) * rng.choice(sizes) for t in range(1, count + 1)}
        kinds = {
            t: rng.choice(["kept"] * 12 + ["pickled", "stale", "cancel", "hook"]) for t in values
        }
        data = b""
        for t, v in values.items():
            if kinds[t] == "pickled":
                data += _pickled(t, v)
            else:
                data += _kept(t, v, 0.001 * t)
                if kinds[t] == "stale":
                    data += _kept(count + 100 + t, v, 0.0)  # (a token no longer on the pipe)
        cuts = sorted(rng.sample(range(1, len(data)), min(3, len(data) - 1)))
        got = {}
        for rows in (False, True):
            running, jobs = _on_pipe(worker, count)
            for job in jobs:
                if kinds[job.token] == "cancel":
                    job.cancelling = True
                elif kinds[job.token] == "hook":
                    del running[job.key]
                    job.key = _HookKey("peer", job.token)
                    running[job.key] = worker
            ended: list[Any] = []
            at = 0
            for cut in [*cuts, len(data)]:
                os.write(theirs.fileno(), data[at:cut])
                at = cut
                outcomes, lost, _ = _replies.read(worker, running, lambda w: None, None, rows)
                assert not lost
                blocks += rows and any(type(o) is Kept for o in outcomes)
                ended += outcomes
            assert not running and not worker.sent and worker.head is None
            assert worker.bytes == 0 and not worker.reader.buf and not worker.reader.pending
            got[rows] = _flat(ended)
        plain, as_rows = got[False], got[True]
        assert [o.key for o in plain] == [job.key for job in jobs]
        for a, b in zip(plain, as_rows, strict=True):
            assert [getattr(a, f.name) for f in fields(a)] == [
                getattr(b, f.name) for f in fields(b)
            ]
    assert blocks > 20


def test_with_rows_a_kept_reply_read_alone_ends_as_its_row(pipe: Any) -> None:
    """A read that brings one KEPT reply alone (``Reader.whole``: not through the buffer) ends a
    task's job as its ``Row``, as the same reply read among others does, and a job whose key is
    not a task's as its ``Outcome``; without ``rows`` both are Outcomes with the same fields."""
    worker, theirs = pipe
    got = {}
    for rows in (False, True):
        running, jobs = _on_pipe(worker, 2)
        hook_key = _HookKey("peer", 2)
        del running[jobs[1].key]
        jobs[1].key = hook_key
        running[hook_key] = worker
        ended = []
        for token, value in ((1, b"one"), (2, b"two")):
            os.write(theirs.fileno(), _kept(token, value, 0.25 * token))
            outcomes, lost, answered = _replies.read(worker, running, lambda w: None, None, rows)
            assert answered and not lost and len(outcomes) == 1
            ended += outcomes
        assert not running and not worker.sent and worker.head is None and worker.bytes == 0
        got[rows] = ended
    assert got[True][0] == (("r", "t1", 1), b"one", 0.25, 4242)
    assert type(got[True][1]) is not tuple and type(got[False][0]) is not tuple
    for a, b in zip(got[False], got[True], strict=True):
        b = outcome_of(b)
        assert [getattr(a, f.name) for f in fields(a)] == [getattr(b, f.name) for f in fields(b)]
