"""Reading a worker's replies in the parent: outcomes of the jobs on its pipe (see ``_process``)."""

from __future__ import annotations

import logging
import mmap
import pickle
import struct
from collections.abc import Callable, Hashable
from typing import cast

from handoffd.worker import _books, _live, _pipe, _process
from handoffd.worker._kept import kept_block
from handoffd.worker._records import (
    Chain,
    Ended,
    Job,
    Outcome,
    Worker,
    cancelled_outcome,
    ok_outcome,
)

log = logging.getLogger("handoffd.worker")

KEPT, KEPT_SIZE = _process.KEPT, _process.KEPT_SIZE
unpack_kept = _process.KEPT_BODY.unpack_from
# A framed KEPT reply's head: the frame's length (``send_bytes``'), KEPT, token, duration
_KEPT_HEAD = struct.Struct("!iBqd")
_KEPT_TAG = KEPT[0]
_LARGE = _pipe.LARGE
_new = object.__new__


def _kept_run(
    worker: Worker,
    live: dict[Hashable, Chain],
    outcomes: list[Ended],
    pid: int,
    rows: bool = False,
) -> int:
    """The KEPT replies whole at the front of the reader's buffer, ended in one pass (as the
    KEPT path of ``read`` ends one): each value cut once from the buffer, which is shortened once
    for all of them, not once a reply (a chain's replies mostly come many to a read). Stops at
    any other message. How many bytes it took off the buffer. ``rows``: a job whose key is a
    plain tuple (a task's) ends as its ``Row`` (key, value, duration, pid), not an ``Outcome``."""
    reader = worker.reader
    buf = reader.buf
    blocks = 0  # bytes the blocks took (a read's replies mostly all go as blocks)
    if rows:
        while True:
            taken = kept_block(worker, live, outcomes, pid)
            if not taken:
                break
            blocks += taken
            if not buf:  # (every reply of the read: nothing for the loop below)
                return blocks
    n = len(buf)
    at = 0
    on_pipe = worker.sent
    unpack = _KEPT_HEAD.unpack_from
    append = outcomes.append
    head = worker.head
    taken = 0  # pickled bytes of the jobs ended (``worker.bytes``, given back once)
    # (the module's constants as locals: read once a run, not once a reply)
    kept_tag, kept_size, large = _KEPT_TAG, KEPT_SIZE, _LARGE
    lead = 4 + kept_size  # a reply's frame length and head, before its value
    with memoryview(buf) as view:
        while at + lead <= n:
            size, tag, token, duration = unpack(buf, at)
            end = at + 4 + size
            if tag != kept_tag or not kept_size <= size < large or end > n:
                break
            value = bytes(view[at + lead : end])
            at = end
            job = (
                cast(Job | None, on_pipe.pop(token, None))
                if not worker.runs
                else _books.pop(worker, token)
            )
            if job is None:
                log.warning("dropping a stale reply from %s", worker.process.name)
                continue
            taken += job.size
            key = job.key
            live.pop(key, None)  # (a block's job may have no entry: ``WorkerPool._index``)
            if job is head:
                worker.head = head = None
            if job.cancelling:
                append(cancelled_outcome(key, duration))
                continue
            if rows and type(key) is tuple:
                append((key, value, duration, pid))  # (a ``Row``)
                continue
            # ``ok_outcome(key, value, duration, "", pid)`` in line (a call a reply less; the
            # same slots: ``tests/daemons/test_worker_kept_run.py`` compares the two)
            outcome = _new(Outcome)
            outcome.key = key
            outcome.ok = True
            outcome.value = value
            outcome.exc_type = outcome.message = outcome.traceback = outcome.kind = ""
            outcome.duration = duration
            outcome.output = ""
            outcome.pid = pid
            append(outcome)
    worker.bytes -= taken
    if at:
        del buf[:at]
        edge = reader.edge - at
        reader.edge = edge if edge > 0 else 0
    return blocks + at


def _kept_one(
    worker: Worker,
    data: bytes | bytearray | mmap.mmap,
    live: dict[Hashable, Chain],
    outcomes: list[Ended],
    rows: bool,
    pid: int = -1,
) -> None:
    """One KEPT reply (``data``, a whole message) ended at once, as the pending path of ``read``
    ends a reply (nothing pends: replies end in the order they came); a stale one is logged and
    dropped. ``rows``: a task's ends as its ``Row``, as ``_kept_run`` ends it. ``pid``: the
    worker's (-1: looked up here)."""
    token, duration = unpack_kept(data, 1)
    job: Job | None = (  # (``_books.pop`` in line when no ``JobRun`` is on the pipe)
        _books.pop(worker, token) if worker.runs else worker.sent.pop(token, None)  # type: ignore[assignment]
    )
    if job is None:
        log.warning("dropping a stale reply from %s", worker.process.name)
        return
    worker.bytes -= job.size
    key = job.key
    live.pop(key, None)
    if worker.head is job:
        worker.head = None
    if job.cancelling:
        outcomes.append(cancelled_outcome(key, duration))
        return
    if pid < 0:
        pid = worker.process.pid or 0
    kept: bytes = data[KEPT_SIZE:]  # type: ignore[assignment]  # (or a bytearray: see Outcome)
    if rows and type(key) is tuple:
        outcomes.append((key, kept, duration, pid))  # (a ``Row``)
    else:
        outcomes.append(ok_outcome(key, kept, duration, "", pid))


def read(
    worker: Worker,
    live: dict[Hashable, Chain],
    on_ready: Callable[[Worker], None],
    on_output: Callable[[Hashable, str], None] | None = None,
    rows: bool = False,
) -> tuple[list[Ended], bool, bool]:
    """Everything the worker wrote that is here: (outcomes, lost, answered). ``lost``: its pipe
    ended (it died); ``answered``: a reply was read (the jobs it answered left ``worker.sent`` and
    ``live``, the pool's key -> chain map, and ``worker.head`` is None if the head was one of
    them). A running job's live output goes to ``on_output(key, text)`` at once (before its
    outcome, which comes later).
    ``rows``: the KEPT replies read many at a time (``_kept_run``) end as ``Row``s."""
    outcomes: list[Ended] = []
    reader = worker.reader
    reader.fill()
    pending = reader.pending
    whole = reader.whole
    if whole is not None and not pending and whole[:1] == KEPT:
        # The read was one KEPT reply and nothing else (a one-task run's, W3's every reply):
        # ended here, as the loop below ends it, with nothing left to look at after it
        reader.whole = None
        _kept_one(worker, whole, live, outcomes, rows)
        return outcomes, reader.eof, True
    lost = answered = False
    pid = -1  # the attempt's worker, in the task history (read once: a property with a check)
    while True:
        try:
            if not pending:
                if reader.buf and reader.whole is None and reader.large is None:
                    if pid < 0:
                        pid = worker.process.pid or 0
                    if _kept_run(worker, live, outcomes, pid, rows):
                        answered = True
                        if reader.buf:
                            continue
                        lost = reader.eof  # (what ``next`` of an empty buffer ends with)
                        break
                data = reader.next()
                if data is None:
                    lost = reader.eof
                    break
                if data[:1] == KEPT:  # (most replies: see _process)
                    answered = True
                    if pid < 0:
                        pid = worker.process.pid or 0
                    _kept_one(worker, data, live, outcomes, rows, pid)
                    continue
                if data == _process.READY:
                    on_ready(worker)
                    continue
                if data[:1] == _live.LIVE:
                    token, text = pickle.loads(memoryview(data)[1:])
                    _books.split(worker)  # (a job by its token)
                    running_job = cast(Job | None, worker.sent.get(token))
                    if running_job is not None and on_output is not None:
                        on_output(running_job.key, text)
                    continue
                pending.extend(pickle.loads(data))
                continue
            # A value not in its reply follows it as a raw message (_process.main); a large one is
            # read over several wake-ups of the loop (``Reader.next``), its reply kept meanwhile.
            token, status, value, exc_type, message, tb_text, duration, output = pending[0]
            if value is True:  # its bytes follow the reply as a raw message
                value = cast(bytes | None, reader.next())
                if value is None:
                    lost = reader.eof
                    break
            elif value is False:
                value = None
            pending.pop(0)
            answered = True
            if pid < 0:
                pid = worker.process.pid or 0
            job = _books.pop(worker, token)
            if job is None:
                log.warning("dropping a stale reply from %s", worker.process.name)
                continue
            worker.bytes -= job.size
            key = job.key
            live.pop(key, None)
            if worker.head is job:
                worker.head = None
            if job.cancelling or status == _process.SKIPPED:
                outcomes.append(cancelled_outcome(key, duration))
            elif status == _process.OK:
                outcomes.append(ok_outcome(key, value, duration, output, pid))
            else:
                outcomes.append(
                    Outcome(
                        key,
                        False,
                        None,
                        exc_type,
                        message,
                        tb_text,
                        "error",
                        duration,
                        output,
                        pid,
                    )
                )
        except (EOFError, OSError):
            lost = True
            break
    return outcomes, lost, answered
