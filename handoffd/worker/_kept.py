# cython: annotation_typing=False
# (the annotations are for mypy; _kept.pxd beside it gives the compiled build its C types)
"""A read's KEPT replies at the front of the reader's buffer cut as one block (``_replies``' read
with ``rows``): the replies of one frame size that answer the oldest jobs on the pipe in order,
ended as one ``Kept`` (keys, values and durations as columns), their jobs' books in one loop.

Design note: the block's form of session 30 did it a column at a time (five byte columns sliced
and stripped for the frames' heads, ``iter_unpack`` and ``zip`` for a tuple a reply and three
columns, the tokens compared with a ``tuple(range(...))``, ``map`` passes for the keys, their
types, the live map's deletes and the bytes' sums): each step a C call through the call protocol,
an object a step. Here the frames' heads and tokens are read a byte at a time (no int object a
token, only compared), every frame's duration and value come out of ONE ``unpack_from`` of a
struct of the whole block (a flat tuple: no tuple a reply), and one C loop checks the tokens and
keys, a second (when all of them pass) ends the jobs'
books: nothing is changed until the block is known to go whole, so a block that cannot goes one
reply at a time (``_replies._kept_run``) from the books it found.

Compiled (``setup.py EXECUTOR_COMPILED``) with _kept.pxd's types, this file is also its own
pure-Python twin: ``tests/cluster/test_kept_block.py`` holds both builds to the replies read one
by one, ``tests/unit/test_kept_tokens.py`` the compiled build to the .py."""

from __future__ import annotations

import struct
from collections.abc import Callable, Hashable
from typing import Any

from handoffd.worker._pipe import LARGE, SHORT_HEAD
from handoffd.worker._process import KEPT, KEPT_SIZE
from handoffd.worker._records import Chain, Ended, JobRun, Kept, Worker

SHORT_SIZE = 1 + SHORT_HEAD.size  # a SHORT_JOB's bytes besides its title and payload (``_books``)
MOST = 128  # replies a block at most (the rest is the next block): bounds the structs' formats
# The constants the loops read as this module's own: C integers in the compiled build (the .pxd),
# not a module dict's look-up a frame
_TAG, _MOST, _SHORT = KEPT[0], MOST, SHORT_SIZE
_LEAD = 4 + KEPT_SIZE  # a framed KEPT reply's bytes before its value
_TOKEN_AT = 5  # a frame's token: after its length and kind, 8 bytes big-endian
# The struct of ``count`` framed KEPT replies whose frames hold ``size`` bytes each, by (size,
# count): each frame's duration and value (its length, kind and token, checked apart in the
# buffer's bytes, skipped: no int object a reply for a token only compared and dropped)
_BLOCKS: dict[tuple[int, int], Callable[..., tuple[Any, ...]]] = {}


def _unpack_of(size: int, count: int) -> Callable[..., tuple[Any, ...]]:
    """``unpack_from`` of the struct of ``count`` frames of ``size`` bytes (a flat tuple:
    duration, value, duration, ...)."""
    key = (size, count)
    unpack = _BLOCKS.get(key)
    if unpack is None:
        if len(_BLOCKS) >= 64:  # (values of many sizes: keep the table small)
            _BLOCKS.clear()
        unpack = _BLOCKS[key] = struct.Struct("!" + f"13xd{size - KEPT_SIZE}s" * count).unpack_from
    return unpack


def _token_at(buf: bytearray, at: int) -> int:
    """The token of the frame at ``buf[at]`` (big-endian, unsigned: a frame's garbage never
    matches a job's token, in either build)."""
    token = 0
    at += _TOKEN_AT
    end = at + 8
    while at < end:
        token = (token << 8) | buf[at]
        at += 1
    return token


def kept_block(worker: Worker, live: dict[Hashable, Chain], outcomes: list[Ended], pid: int) -> int:
    """The KEPT replies at the front of the reader's buffer whose frames are all the size of the
    first (a chain of one function's tasks mostly returns values of one size) and which answer
    the oldest jobs on the pipe in order (as replies come), ended as one ``Kept`` appended to
    ``outcomes``: the jobs off ``worker.sent`` (a run's ``at`` moved, or the run's entry deleted
    at its end), their keys off ``live`` (those it holds), their bytes given back, the head cleared if it was one
    of them. Takes nothing (0, nothing changed) unless there are two or more, none of their jobs
    is being cancelled and every key is a task's (a plain tuple): then ``_replies._kept_run``
    reads them one by one. How many bytes it took off the buffer."""
    reader = worker.reader
    buf = reader.buf
    n = len(buf)
    if n < 2 * _LEAD:
        return 0
    if buf[0] or buf[4] != _TAG:  # (a length's top byte set: LARGE or more, or negative)
        return 0
    size = (buf[1] << 16) | (buf[2] << 8) | buf[3]  # (the frame's length, big-endian)
    if size < KEPT_SIZE or size >= LARGE:
        return 0
    frame = 4 + size
    count = n // frame
    if count > _MOST:
        count = _MOST
    if count < 2:
        return 0
    # Each frame's head (its length and kind) the first's: the block ends before the first frame
    # whose head differs (the frames before it lie where they were cut; past it the offsets are
    # not frames')
    b1, b2, b3 = buf[1], buf[2], buf[3]
    at = 1
    start = frame
    while at < count:
        if (
            buf[start]
            or buf[start + 1] != b1
            or buf[start + 2] != b2
            or buf[start + 3] != b3
            or buf[start + 4] != _TAG
        ):
            break
        at += 1
        start += frame
    count = at
    if count < 2:
        return 0
    sent = worker.sent
    run: Any = None
    if worker.runs:
        run = next(iter(sent.values()))
        if type(run) is not JobRun:
            run = None
    keys: list[Any] = []
    # Whether the jobs' keys leave ``live``: a run fed from a block not indexed has none there
    # (``WorkerPool._index``), a job may have none either (made from such a block)
    drop = True
    if run is not None:  # (the oldest jobs are a run's: the block ends with it)
        block = run.block
        drop = block is None or block.indexed
        first_at = run.at
        jobs = run.jobs
        if count > len(jobs) - first_at:
            count = len(jobs) - first_at
            if count < 2:
                return 0
        token = run.first + first_at  # (the tokens of a run's jobs: consecutive from ``first``)
        titles = run.titles
        payloads = run.payloads
        run_keys = run.keys
        taken = _SHORT * count  # (their sizes as SHORT_JOBs: ``_books``)
        at = 0
        start = 0
        while at < count:  # checked first, nothing changed
            if _token_at(buf, start) != token:
                return 0  # (not the oldest jobs in order: a stale reply; one by one, as ever)
            key = run_keys[first_at + at]  # (none is being cancelled: a cancel splits the run)
            if type(key) is not tuple:
                return 0
            keys.append(key)
            taken += len(titles[first_at + at]) + len(payloads[first_at + at])
            token += 1
            at += 1
            start += frame
        flat = _unpack_of(size, count)(buf)
        end = first_at + count
        if end == len(jobs):
            del sent[run.first]
            worker.runs -= 1
        else:
            run.at = end
        head = worker.head
        if head is not None:
            at = first_at
            while at < end:
                if jobs[at] is head:
                    worker.head = None
                    break
                at += 1
    else:
        taken = 0
        ended: list[Any] = []
        at = 0
        start = 0
        job: Any  # (a ``Job`` once a ``JobRun`` is ruled out)
        for number, job in sent.items():  # checked first, nothing changed
            if at == count:
                break
            if _token_at(buf, start) != number:
                return 0  # (not the oldest jobs in order: a stale reply; one by one, as ever)
            if type(job) is JobRun:
                return 0  # (a run behind the oldest jobs: its first token is not all it holds)
            if job.cancelling:
                return 0
            key = job.key
            if type(key) is not tuple:
                return 0
            keys.append(key)
            ended.append(number)
            taken += job.size
            at += 1
            start += frame
        if at < count:
            return 0  # (fewer jobs on the pipe than replies: a stale one among them)
        flat = _unpack_of(size, count)(buf)
        head = worker.head
        for number in ended:
            if sent.pop(number) is head:
                worker.head = None
    worker.bytes -= taken
    if drop:
        for key in keys:
            live.pop(key, None)
    outcomes.append(Kept(keys, flat[1::2], flat[0::2], pid))
    at = count * frame
    del buf[:at]
    edge = reader.edge - at
    reader.edge = edge if edge > 0 else 0
    return at
