"""A worker's replies on its pipe, from a real worker process: a job that ended well with a small
value, printed nothing and had no cancel read while it ran is answered as ``_process.KEPT`` (the
token and the duration packed, the value's bytes after them), any other as a pickled reply list;
the parent's ``_replies.read`` makes the same ``Outcome`` of both."""

from __future__ import annotations

import math
import pickle
import random
import select
import struct
from typing import Any

import pytest

from handoffd import values
from handoffd.worker import _live, _pipe, _process, _replies
from handoffd.worker._process import INLINE_VALUE
from handoffd.worker._records import Job, Outcome, Worker

pytestmark = pytest.mark.timeout(60)


def _job(token: int, fn: Any, *args: Any) -> Job:
    payload = values.dumps_call(values.dumps_code(fn), list(args), {})
    return Job(("run", f"t{token}", 1), payload, [], title=f"run r task t{token}")


def _send(conn: Any, token: int, job: Job) -> None:
    data, _ = _pipe.pickle_job(token, job)
    conn.send_bytes(data)


def _raw(conn: Any) -> bytes:
    assert conn.poll(30), "no reply from the worker"
    return bytes(conn.recv_bytes())


def _printing(x: int) -> int:
    print("hello", x)
    return x


def _failing(x: int) -> int:
    raise KeyError(x)


def test_a_quiet_job_that_ended_well_is_answered_kept(worker: tuple[Any, Any]) -> None:
    _, conn = worker
    _send(conn, 7, _job(7, lambda x: x + 1, 41))
    reply = _raw(conn)
    assert reply[:1] == _process.KEPT
    token, duration = _process.KEPT_BODY.unpack_from(reply, 1)
    assert token == 7 and duration >= 0.0
    assert pickle.loads(reply[_process.KEPT_SIZE :]) == 42


@pytest.mark.parametrize(
    ("fn", "arg", "status", "output"),
    [
        (_printing, 3, _process.OK, "hello 3\n"),  # printed: its output goes with it
        (_failing, 3, _process.ERROR, ""),
        (lambda n: b"v" * n, INLINE_VALUE, _process.OK, ""),  # a value that follows as a message
    ],
)
def test_any_other_outcome_is_a_pickled_reply(
    worker: tuple[Any, Any], fn: Any, arg: int, status: int, output: str
) -> None:
    _, conn = worker
    _send(conn, 9, _job(9, fn, arg))
    replies = pickle.loads(_raw(conn))
    assert len(replies) == 1
    token, got, value, *_, text = replies[0]
    assert (token, got, text) == (9, status, output)
    if status == _process.OK and value is True:
        assert len(pickle.loads(_raw(conn))) == arg


class _Process:
    """What ``_replies.read`` asks of a worker's process."""

    def __init__(self, pid: int) -> None:
        self.pid, self.name = pid, "w"


def _read_all(record: Worker, running: dict, count: int) -> list[Outcome]:
    outcomes: list[Outcome] = []
    while len(outcomes) < count:
        select.select([record.fd], [], [], 30)
        got, lost, _ = _replies.read(record, running, lambda w: None)
        assert not lost
        outcomes += got
    return outcomes


def test_the_parent_reads_kept_and_pickled_replies_alike(worker: tuple[Any, Any]) -> None:
    proc, conn = worker
    record = Worker(_Process(proc.pid), conn)  # type: ignore[arg-type]
    jobs = [
        _job(1, lambda x: x * 2, 21),
        _job(2, _printing, 5),
        _job(3, _failing, 1),
        _job(4, lambda x: x, "done"),
    ]
    running: dict = {}
    for token, job in enumerate(jobs, 1):
        job.token, job.size, job.cancelling = token, 1, False  # (as the pool sends it)
        record.sent[token] = job
        running[job.key] = record
        _send(conn, token, job)
    record.head = record.sent[1]
    outcomes = {o.key: o for o in _read_all(record, running, len(jobs))}
    assert not running and not record.sent and record.head is None
    first, printed, failed, last = (outcomes[job.key] for job in jobs)
    assert (first.ok, pickle.loads(first.value), first.output, first.pid) == (
        True,
        42,
        "",
        proc.pid,
    )
    assert (printed.ok, pickle.loads(printed.value), printed.output) == (True, 5, "hello 5\n")
    assert (failed.ok, failed.value, failed.exc_type) == (False, None, "KeyError")
    assert (last.ok, pickle.loads(last.value)) == (True, "done")
    assert all(o.duration >= 0.0 for o in outcomes.values())


def test_short_and_pickled_jobs_in_one_message_run_in_order(worker: tuple[Any, Any]) -> None:
    _, conn = worker
    jobs = [
        _job(1, lambda x: x + 1, 1),
        Job(
            ("run", "t2", 1),
            values.dumps_call(values.dumps_code(lambda a, b: a * b), [3], {}),
            [("value", values.dumps(7))],
        ),
        _job(3, lambda *a: len(a), 1, 2, 3),
        Job(
            ("run", "t4", 1),
            values.dumps_call(values.dumps_code(lambda xs: xs), [], {}),
            [],
            argument_inclusion="as_list",
        ),
    ]
    messages = [_pipe.pickle_job(token, job)[0] for token, job in enumerate(jobs, 1)]
    assert [m[:1] == _pipe.SHORT_JOB for m in messages] == [True, False, True, True]
    conn.send_bytes(b"".join(messages))
    got = []
    while len(got) < len(jobs):
        reply = _raw(conn)
        assert reply[:1] == _process.KEPT
        token, _ = _process.KEPT_BODY.unpack_from(reply, 1)
        got.append((token, pickle.loads(reply[_process.KEPT_SIZE :])))
    assert got == [(1, 2), (2, 21), (3, 3), (4, [])]


class _Count(int):
    """An int subclass: pickled by ``pickle`` as any other object (its class by reference)."""


def _identity(x: Any) -> Any:
    return x


def test_a_result_s_value_is_the_bytes_pickle_makes(worker: tuple[Any, Any]) -> None:
    """The worker packs the commonest results (None, ints in [0, 65536), floats) without a
    pickler: each value is byte for byte ``pickle.dumps(result, 5)``, at every edge of a form
    and for results of other kinds next to them (a bool, a negative or big int, an int or float
    subclass, a str)."""
    rng = random.Random(26)
    results: list[Any] = [None, True, False, 0, 1, 255, 256, 257, 4097, 65535, 65536, -1, 2**31]
    results += [2**64, _Count(7), 0.0, -0.0, 1.5, -1e300, 5e-324, math.inf, -math.inf, math.nan]
    results += [float.fromhex("-0x1.8p+1"), "t", (1, 2.5)]
    results += [rng.randrange(65536) for _ in range(40)] + [rng.randrange(256) for _ in range(10)]
    results += [struct.unpack("<d", rng.randbytes(8))[0] for _ in range(40)]
    _, conn = worker
    code = values.dumps_code(_identity)
    jobs = [
        _pipe.pickle_job(t, Job(("r", f"t{t}", 1), values.dumps_call(code, [r], {}), []))[0]
        for t, r in enumerate(results, 1)
    ]
    conn.send_bytes(b"".join(jobs))
    got: dict[int, bytes] = {}
    while len(got) < len(results):
        reply = _raw(conn)
        assert reply[:1] == _process.KEPT
        got[_process.KEPT_BODY.unpack_from(reply, 1)[0]] = reply[_process.KEPT_SIZE :]
    for token, result in enumerate(results, 1):
        assert got[token] == pickle.dumps(result, 5), (token, result)


def _prints_behind(x: int) -> int:
    """Leaves a thread printing a line every 10 ms for 0.6 s, and returns at once."""
    import threading
    import time

    def lines() -> None:
        for k in range(60):
            print("late", k)
            time.sleep(0.01)

    threading.Thread(target=lines, daemon=True).start()
    return x


def _sleeps(x: int) -> int:
    import time

    time.sleep(0.3)
    return x


def test_no_live_line_of_a_job_follows_its_outcome(spawn_worker: Any) -> None:
    """A worker sending output live (interval 0.05 s) whose first job leaves a thread printing:
    the live sender's thread starts from that thread's print, after the job's outcome, and what
    it sends goes under the job then running; no live message names a job whose outcome went
    before it (the outcome of a job in a worker with no live thread yet takes no lock)."""
    with spawn_worker(live=0.05) as (_proc, parent):
        jobs = [_job(1, _prints_behind, 1), _job(2, _sleeps, 2), _job(3, _identity, 3)]
        parent.send_bytes(b"".join(_pipe.pickle_job(t, j)[0] for t, j in enumerate(jobs, 1)))
        ended: list[int] = []
        live: list[tuple[int, str]] = []
        while len(ended) < len(jobs):
            data = _raw(parent)
            if data[:1] == _process.KEPT:
                ended.append(_process.KEPT_BODY.unpack_from(data, 1)[0])
            elif data[:1] == _live.LIVE:
                token, text = pickle.loads(data[1:])
                assert token not in ended, (token, text, ended)
                live.append((token, text))
            else:
                ended += [reply[0] for reply in pickle.loads(data)]
        assert ended == [1, 2, 3]
        assert any(token == 2 and "late" in text for token, text in live), live
