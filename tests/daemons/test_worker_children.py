"""What a job leaves running ends with it, before its outcome is sent (``_process.main`` looks
for children after every job, ``_contain.child_look``, and ``end_children`` kills and reaps
them): a live child and an exited one not reaped are both gone when the job's reply is read,
whether the job ran alone or inside a batch, and the jobs around it are answered as usual."""

from __future__ import annotations

import os
import pickle
import subprocess
from typing import Any

import pytest

from handoffd import values
from handoffd.worker import _pipe, _process
from handoffd.worker._records import Job

pytestmark = pytest.mark.timeout(60)


def _leave_a_sleeper() -> int:
    return subprocess.Popen(["sleep", "120"]).pid


def _leave_a_zombie() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    return pid


def _nothing() -> int:
    return 7


def _job(token: int, fn: Any) -> bytes:
    payload = values.dumps_call(values.dumps_code(fn), [], {})
    return _pipe.pickle_job(token, Job(token, payload, [], title=f"t{token}"))[0]


def _replies(parent: Any, count: int) -> dict[int, Any]:
    """token -> the value of each of the next ``count`` replies (all must have ended well)."""
    out: dict[int, Any] = {}
    while len(out) < count:
        data = parent.recv_bytes()
        if data[:1] == _process.KEPT:
            token, _ = _process.KEPT_BODY.unpack_from(data, 1)
            out[token] = pickle.loads(data[_process.KEPT_SIZE :])
            continue
        for token, status, value, *rest in pickle.loads(data):
            assert status == _process.OK, rest
            out[token] = pickle.loads(value)
    return out


def _child_of(pid: int, parent: int) -> bool:
    """Whether ``pid`` exists and is ``parent``'s child (a reused pid is another's)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return int(stat.rsplit(b")", 1)[1].split()[1]) == parent


def test_a_jobs_children_are_gone_when_its_outcome_is_read(worker: Any) -> None:
    proc, parent = worker
    parent.send_bytes(_job(1, _leave_a_sleeper))
    sleeper = _replies(parent, 1)[1]
    assert not _child_of(sleeper, proc.pid)
    parent.send_bytes(_job(2, _leave_a_zombie))
    zombie = _replies(parent, 1)[2]
    assert not _child_of(zombie, proc.pid)  # reaped, not left a zombie


def test_in_a_batch_each_jobs_children_end_before_its_own_outcome(worker: Any) -> None:
    proc, parent = worker
    fns = [_nothing, _leave_a_sleeper, _nothing, _leave_a_zombie, _leave_a_sleeper, _nothing]
    parent.send_bytes(b"".join(_job(token, fn) for token, fn in enumerate(fns, 1)))
    got: dict[int, Any] = {}
    while len(got) < len(fns):
        for token, value in _replies(parent, 1).items():
            got[token] = value
            if fns[token - 1] is not _nothing:
                assert not _child_of(value, proc.pid), (token, value)
    assert [got[t] for t in (1, 3, 6)] == [7, 7, 7]
