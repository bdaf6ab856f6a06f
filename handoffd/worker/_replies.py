"""Reading a worker's replies in the parent: outcomes of the jobs on its pipe (see ``_process``)."""

from __future__ import annotations

import logging
import pickle
import struct
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from itertools import islice, repeat
from operator import attrgetter, is_
from typing import Any, cast

from handoffd.worker import _books, _live, _pipe, _process
from handoffd.worker._records import (
    Chain,
    Ended,
    Job,
    JobRun,
    Kept,
    Outcome,
    Worker,
    cancelled_outcome,
    ok_outcome,
)

log = logging.getLogger("handoffd.worker")

KEPT, KEPT_SIZE = _process.KEPT, _process.KEPT_SIZE
SHORT_SIZE = _books.SHORT_SIZE
unpack_kept = _process.KEPT_BODY.unpack_from
# A framed KEPT reply's head: the frame's length (``send_bytes``'), KEPT, token, duration
_KEPT_HEAD = struct.Struct("!iBqd")
_KEPT_TAG = KEPT[0]
_LARGE = _pipe.LARGE
_new = object.__new__
# A block of KEPT replies of one frame size: its struct by the size (``_kept_block``)
_BLOCKS: dict[int, struct.Struct] = {}
_FRAME_HEAD = struct.Struct("!iB")  # a framed reply's length and kind
_key_of, _size_of, _cancelling_of = attrgetter("key"), attrgetter("size"), attrgetter("cancelling")
_drain: Callable[[Iterable[Any]], None] = deque(maxlen=0).extend  # (a ``map`` run in C)


def _block_of(size: int) -> struct.Struct:
    """The struct of a framed KEPT reply whose frame holds ``size`` bytes: its token, duration
    and value (its length and kind, checked apart, skipped)."""
    block = _BLOCKS.get(size)
    if block is None:
        if len(_BLOCKS) > 64:  # (values of many sizes: keep the table small)
            _BLOCKS.clear()
        block = _BLOCKS[size] = struct.Struct(f"!5xqd{size - KEPT_SIZE}s")
    return block


def _kept_block(
    worker: Worker, live: dict[Hashable, Chain], outcomes: list[Ended], pid: int
) -> int:
    """The KEPT replies at the front of the reader's buffer whose frames are all the size of the
    first (a chain of one function's tasks mostly returns values of one size) and which answer
    the oldest jobs on the pipe in order (as replies come), cut as one block: the frames' heads
    compared a byte column at a time, one ``iter_unpack``, the jobs' books by ``map`` over
    columns, and one ``Kept`` for all of them, no Python step a reply. Takes nothing (0) unless
    there are two or more, none of their jobs is being cancelled and every key is a task's (a
    plain tuple): then ``_kept_run`` reads them one by one. How many bytes it took."""
    reader = worker.reader
    buf = reader.buf
    n = len(buf)
    if n < 2 * (4 + KEPT_SIZE):
        return 0
    size, tag = _FRAME_HEAD.unpack_from(buf)
    if tag != _KEPT_TAG or not KEPT_SIZE <= size < _LARGE:
        return 0
    frame = 4 + size
    count = n // frame
    if count < 2:
        return 0
    whole = buf[: count * frame]
    # Each byte of the first frame's head (its length and kind) at every frame's start: the
    # block ends before the first frame whose head differs (the frames before it lie where
    # they were cut; past it the offsets are not frames').
    for at in range(5):
        column = whole[at::frame]
        same = count - len(column.lstrip(column[:1]))
        if same < count:
            count = same
    if count < 2:
        return 0
    on_pipe = worker.sent
    run = next(iter(on_pipe.values())) if worker.runs else None
    if type(run) is not JobRun:
        run = None
    else:  # (the oldest jobs are a run's: the block ends with it)
        at = run.at
        count = min(count, len(run.jobs) - at)
        if count < 2:
            return 0
    if len(whole) > count * frame:
        del whole[count * frame :]
    tokens, durations, values = zip(*_block_of(size).iter_unpack(whole), strict=True)
    if run is not None:
        first = run.first + at
        if tokens != tuple(range(first, first + count)):
            return 0  # (not the oldest jobs in order: a stale reply; one by one, as ever)
        end = at + count
        jobs = run.jobs[at:end]  # (none is being cancelled: a cancel splits the run)
        keys = list(map(_key_of, jobs))
        if not all(map(is_, map(type, keys), repeat(tuple))):
            return 0
        if end == len(run.jobs):
            del on_pipe[run.first]
            worker.runs -= 1
        else:
            run.at = end
        worker.bytes -= (  # (their sizes as SHORT_JOBs: ``_books``)
            SHORT_SIZE * count
            + sum(map(len, islice(run.titles, at, end)))
            + sum(map(len, islice(run.payloads, at, end)))
        )
    else:
        if tokens != tuple(islice(on_pipe, count)):
            return 0  # (not the oldest jobs in order: a stale reply; one by one, as ever)
        jobs = list(islice(on_pipe.values(), count))  # type: ignore[arg-type]
        if worker.runs and JobRun in map(type, jobs):
            return 0  # (a run behind the oldest jobs: its first token is not all it holds)
        if any(map(_cancelling_of, jobs)):
            return 0
        keys = list(map(_key_of, jobs))
        if not all(map(is_, map(type, keys), repeat(tuple))):
            return 0
        _drain(map(on_pipe.__delitem__, tokens))
        worker.bytes -= sum(map(_size_of, jobs))
    _drain(map(live.__delitem__, keys))
    head = worker.head
    if head is not None and (head is jobs[0] or any(map(is_, jobs, repeat(head)))):
        worker.head = None
    outcomes.append(Kept(keys, values, durations, pid))
    at = count * frame
    del buf[:at]
    edge = reader.edge - at
    reader.edge = edge if edge > 0 else 0
    return at


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
    if rows:
        taken = _kept_block(worker, live, outcomes, pid)
        if taken:
            return taken + _kept_run(worker, live, outcomes, pid, rows)
    buf = reader.buf
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
            del live[key]
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
    return at


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
    lost = answered = False
    pending = reader.pending
    pid = -1  # the attempt's worker, in the task history (read once: a property with a check)
    while True:
        try:
            if not pending:
                if reader.buf and reader.whole is None and reader.large is None:
                    if pid < 0:
                        pid = worker.process.pid or 0
                    if _kept_run(worker, live, outcomes, pid, rows):
                        answered = True
                        continue
                data = reader.next()
                if data is None:
                    lost = reader.eof
                    break
                if data[:1] == KEPT:  # (most replies: see _process)
                    # Ended here at once, as the pending path below ends it (nothing pends:
                    # replies end in the order they came).
                    token, duration = unpack_kept(data, 1)
                    answered = True
                    job = _books.pop(worker, token)
                    if job is None:
                        log.warning("dropping a stale reply from %s", worker.process.name)
                        continue
                    if pid < 0:
                        pid = worker.process.pid or 0
                    worker.bytes -= job.size
                    key = job.key
                    del live[key]
                    if worker.head is job:
                        worker.head = None
                    if job.cancelling:
                        outcomes.append(cancelled_outcome(key, duration))
                    else:
                        kept = cast(bytes, data[KEPT_SIZE:])  # (or a bytearray: see Outcome)
                        outcomes.append(ok_outcome(key, kept, duration, "", pid))
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
            del live[key]
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
