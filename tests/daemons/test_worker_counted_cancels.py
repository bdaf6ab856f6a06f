"""The worker looks at its pipe for cancels before a job's outcome only while the pool's count of
cancels sent (``_cancels``, shared memory) is ahead of the cancels it has read: a cancel counted
before it is written (``Writer.cancel``) drops its queued job (SKIPPED) as the look after every
job did; one written without being counted is not looked for, and its job runs (what the count
saves: the ``poll`` of every job that no cancel follows)."""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from handoffd import values
from handoffd.testing import wait_for
from handoffd.worker import _cancels, _pipe, _process
from handoffd.worker._records import Job

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def counted(spawn_worker: Any) -> Iterator[tuple[Any, _cancels.Count]]:
    """(our end of the pipe, the cancel count) of a worker started as a WorkerPool starts one."""
    count = _cancels.Count.create()
    assert count is not None
    try:
        with spawn_worker(count.for_worker()) as (_, parent):
            yield parent, count
    finally:
        count.close()


def waiting_for(paths: tuple[str, str]) -> int:
    started, go = paths
    Path(started).touch()
    while not os.path.exists(go):  # (bounded by the test's timeout)
        time.sleep(0.001)
    return 1


def marking(path: str) -> int:
    Path(path).touch()
    return 2


def _batch(conn: Any, *calls: tuple) -> None:
    parts = []
    for token, (fn, arg) in enumerate(calls, 1):
        payload = values.dumps_call(values.dumps_code(fn), [arg], {})
        parts.append(_pipe.pickle_job(token, Job(token, payload, [], title=f"t{token}"))[0])
    conn.send_bytes(b"".join(parts))


def _statuses(conn: Any, count: int) -> dict[int, int]:
    got: dict[int, int] = {}
    while len(got) < count:
        assert conn.poll(30), "no reply from the worker"
        data = bytes(conn.recv_bytes())
        if data[:1] == _process.KEPT:
            got[_process.KEPT_BODY.unpack_from(data, 1)[0]] = _process.OK
            continue
        for token, status, *_ in pickle.loads(data):
            got[token] = status
    return got


@pytest.mark.parametrize("counted_first", [True, False])
def test_a_cancel_is_looked_for_when_counted(
    counted: tuple[Any, _cancels.Count], tmp_path: Path, counted_first: bool
) -> None:
    conn, count = counted
    started, go, mark = tmp_path / "started", tmp_path / "go", tmp_path / "mark"
    _batch(conn, (waiting_for, (str(started), str(go))), (marking, str(mark)))
    # the batch was read: the cancel comes in a read of its own
    wait_for(started.exists, 30, what="job 1 started")
    if counted_first:  # as ``Writer.cancel`` sends it
        count.add()
    conn.send_bytes(pickle.dumps((2,), protocol=5))  # while job 1 runs
    go.touch()
    got = _statuses(conn, 2)
    if counted_first:
        assert got == {1: _process.OK, 2: _process.SKIPPED} and not mark.exists()
    else:  # not looked for before job 2 started; read when the worker waits again
        assert got == {1: _process.OK, 2: _process.OK} and mark.exists()
