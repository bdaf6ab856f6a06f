"""A batch of plain jobs in one message to a real worker process: the worker runs them one after
another with its output capture armed once for the batch, yet each job's outcome and output are
its own (a job that prints between two that do not, a job that changes ``sys.stdout``, the
root's level or its handlers), a cancel reaches only its job, and a crash mid-batch leaves the
jobs already answered answered and runs none after it."""

from __future__ import annotations

import logging
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from handoffd import values
from handoffd.worker import _pipe, _process
from handoffd.worker._records import Job

pytestmark = pytest.mark.timeout(90)


def _batch(conn: Any, *calls: tuple) -> None:
    """One message of SHORT_JOBs, token i + 1 for ``calls[i]`` = (fn, arg)."""
    parts = []
    for token, (fn, arg) in enumerate(calls, 1):
        payload = values.dumps_call(values.dumps_code(fn), [arg], {})
        data, _ = _pipe.pickle_job(token, Job(("r", token, 1), payload, [], title=f"t{token}"))
        assert data[:1] == _pipe.SHORT_JOB
        parts.append(data)
    conn.send_bytes(b"".join(parts))


def _replies(conn: Any, count: int) -> list[tuple]:
    """(token, status, value, output) of the next ``count`` replies, in the order they came."""
    got: list[tuple] = []
    while len(got) < count:
        assert conn.poll(30), "no reply from the worker"
        data = bytes(conn.recv_bytes())
        if data[:1] == _process.KEPT:
            token, _ = _process.KEPT_BODY.unpack_from(data, 1)
            got.append((token, _process.OK, pickle.loads(data[_process.KEPT_SIZE :]), ""))
            continue
        for token, status, value, *_, output in pickle.loads(data):
            value = pickle.loads(value) if isinstance(value, bytes) else value
            got.append((token, status, value, output))
    return got


def quiet(x: int) -> int:
    return x * 10


def talking(x: int) -> int:
    print("printed", x)
    logging.getLogger("user.task").info("logged %d", x)
    logging.getLogger("user.task").debug("not shown")
    return x


def meddling(x: int) -> int:
    """Leaves the process as a careless task would: its own stdout, no root handler, ERROR."""
    import io

    sys.stdout = io.StringIO()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.ERROR)
    return x


def test_only_the_job_that_printed_has_output(worker: tuple[Any, Any]) -> None:
    _, conn = worker
    _batch(conn, (quiet, 1), (talking, 2), (quiet, 3), (talking, 4), (quiet, 5))
    assert _replies(conn, 5) == [
        (1, _process.OK, 10, ""),
        (2, _process.OK, 2, "printed 2\nINFO user.task: logged 2\n"),
        (3, _process.OK, 30, ""),
        (4, _process.OK, 4, "printed 4\nINFO user.task: logged 4\n"),
        (5, _process.OK, 50, ""),
    ]


def test_what_a_job_changes_is_undone_for_the_next_one(worker: tuple[Any, Any]) -> None:
    _, conn = worker
    _batch(conn, (meddling, 1), (talking, 2), (meddling, 3), (quiet, 4), (talking, 5))
    assert _replies(conn, 5) == [
        (1, _process.OK, 1, ""),
        (2, _process.OK, 2, "printed 2\nINFO user.task: logged 2\n"),
        (3, _process.OK, 3, ""),
        (4, _process.OK, 40, ""),
        (5, _process.OK, 5, "printed 5\nINFO user.task: logged 5\n"),
    ]
    _batch(conn, (talking, 6))  # the next batch, after the worker waited with its capture off
    assert _replies(conn, 1) == [(1, _process.OK, 6, "printed 6\nINFO user.task: logged 6\n")]


def waiting_for(path: str) -> int:
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return 1


def test_a_cancel_in_a_batch_reaches_only_its_job(worker: tuple[Any, Any], tmp_path: Path) -> None:
    _, conn = worker
    go = tmp_path / "go"
    _batch(conn, (waiting_for, str(go)), (quiet, 2), (quiet, 3), (quiet, 4))
    conn.send_bytes(pickle.dumps((3,), protocol=5))  # while job 1 runs
    go.touch()
    got = _replies(conn, 4)
    assert sorted(got) == [
        (1, _process.OK, 1, ""),
        (2, _process.OK, 20, ""),
        (3, _process.SKIPPED, False, ""),
        (4, _process.OK, 40, ""),
    ]
    assert got.index((3, _process.SKIPPED, False, "")) < got.index((2, _process.OK, 20, ""))


def crashing(x: int) -> int:
    os._exit(3)


def marking(path: str) -> int:
    Path(path).touch()
    return 0


def test_a_crash_mid_batch_answers_the_jobs_before_it_and_runs_none_after(
    worker: tuple[Any, Any], tmp_path: Path
) -> None:
    proc, conn = worker
    after = tmp_path / "after"
    _batch(conn, (quiet, 1), (talking, 2), (crashing, 0), (marking, str(after)))
    assert _replies(conn, 2) == [
        (1, _process.OK, 10, ""),
        (2, _process.OK, 2, "printed 2\nINFO user.task: logged 2\n"),
    ]
    with pytest.raises(EOFError):
        while True:
            assert conn.poll(30)
            conn.recv_bytes()
    proc.join(30)
    assert proc.exitcode == 3 and not after.exists()


def leaving_a_child(exited: int) -> int:
    """Starts a process and returns its pid: left running (0) or exited and not reaped (1)."""
    import subprocess

    child = subprocess.Popen(["true"] if exited else ["sleep", "120"])
    if exited:  # its exit seen, the zombie left for the worker
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    return child.pid


def test_a_jobs_processes_end_before_its_outcome_mid_batch(
    worker: tuple[Any, Any], tmp_path: Path
) -> None:
    """Each job's processes, running or exited, are gone (killed and reaped) when its outcome
    comes, though the next job of the batch has started (and waits here meanwhile)."""
    _, conn = worker
    for exited in (0, 1):
        go = tmp_path / f"go{exited}"
        _batch(conn, (leaving_a_child, exited), (waiting_for, str(go)))
        ((token, status, pid, _),) = _replies(conn, 1)
        assert (token, status) == (1, _process.OK)
        assert not os.path.exists(f"/proc/{pid}")
        go.touch()
        assert _replies(conn, 1) == [(2, _process.OK, 1, "")]
