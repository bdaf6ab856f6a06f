"""Feeding a WorkerPool's worker the next jobs of its chain (``Feeds`` is a base of
``WorkerPool``, which sets every attribute declared here).

A feed sends one to start if the worker has none, and more behind it within ``ahead`` and
``AHEAD_BYTES``, all in one pipe message followed by the large inputs of those jobs as raw
messages (see ``_process``). Consecutive jobs without inputs or env of one argument inclusion
(every task of a plain chain) are taken as one block: how many fit found by passes over columns
(their fields, sizes and the bounds), sent as one RUN (``_pipe``) and booked as one ``JobRun`` entry
of ``Worker.sent`` (``_books``), with no Python step and no dict entry a job. A ``JobBlock`` at the
chain's front (the executor's chained rows: columns, no ``Job`` a job) is fed the same way
straight from its columns (``_from_block``): its run's keys, titles and payloads are slices of the
block's, and a job's ``Job`` is made only where one leaves the block or the run (``take``,
``_books``)."""

from __future__ import annotations

import pickle
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from itertools import accumulate, compress, islice, repeat, starmap
from operator import add, attrgetter, is_not, ne
from typing import Any

from handoffd.worker import _books, _pipe, _process
from handoffd.worker._records import (
    Chain,
    Job,
    JobBlock,
    JobRun,
    Outcome,
    Worker,
    unpicklable_outcome,
)

# Jobs of a chain sent to its worker besides the running one, and the pickled bytes on a worker's
# pipe when sending ahead (a full pipe would block send_bytes, and with it the loop; Linux gives a
# socketpair far more than this).
AHEAD = 32
AHEAD_BYTES = 48 * 1024

short_head = _pipe.SHORT_HEAD.pack
frame = _pipe.FRAME.pack  # a message's length in front of it, as ``send_bytes`` frames it
_SHORT_JOB_SIZE = 1 + _pipe.SHORT_HEAD.size  # a SHORT_JOB's bytes besides its title and payload
run_message = _pipe.run_message
SHORT_SIZE = _books.SHORT_SIZE  # a SHORT_JOB's bytes besides its title and payload
# What makes a job short and of one run with the block's first (its inputs and env compared equal
# to the first's, which are empty; its argument inclusion the same)
_short_of = attrgetter("inputs", "env", "argument_inclusion")
_payload_of, _title_of = attrgetter("payload"), attrgetter("title")
_inclusion_of = attrgetter("argument_inclusion")
_inputs_of, _env_of = attrgetter("inputs"), attrgetter("env")
_key_of = attrgetter("key")
_drain: Callable[[Iterable[Any]], None] = deque(maxlen=0).extend  # (a ``map`` run in C)


def _within_bound(titles: list[Any], payloads: list[Any], size: int, count: int) -> tuple[int, int]:
    """How many of a run's jobs (a title and a payload each) fit within AHEAD_BYTES past ``size``
    (the running sums of their sizes on the pipe up to it; at least one when the worker holds
    none, ``count`` 0), both lists cut to them, and their sizes' sum."""
    n = len(titles)
    total = SHORT_SIZE * n + sum(map(len, titles)) + sum(map(len, payloads))
    if size + total <= AHEAD_BYTES:
        return n, total
    sizes = map(add, map(add, map(len, titles), map(len, payloads)), repeat(SHORT_SIZE))
    ends = list(accumulate(sizes, initial=size))
    fit = bisect_right(ends, AHEAD_BYTES, 1) - 1
    n = fit if fit or count else 1
    del titles[n:], payloads[n:]
    return n, ends[n] - size


class Feeds:
    """The feeding part of ``WorkerPool``."""

    ahead: int
    _token: int
    _jobs: dict[Hashable, Chain]
    _others_wait: Callable[[], bool]
    _next_head: Callable[[Worker], None]
    _make_head: Callable[[Worker, Job], None]
    _soon: Callable[[Outcome], None]

    def _feed(self, worker: Worker) -> None:
        """Send the worker the next jobs of its chain: one to start if it has none, and more
        behind it within ``ahead`` and AHEAD_BYTES (see the module's docstring)."""
        chain = worker.chain
        assert chain is not None
        batch: list[bytes] = []
        raw: list[pickle.PickleBuffer] = []
        first: Job | JobRun | None = None  # the first job sent now (or the run it leads)
        count, size = _books.count(worker), worker.bytes
        others: bool | None = None  # chains wait: asked once (the loop changes only this one)
        # (read once a feed, not once a job)
        jobs, live, sent = chain.jobs, self._jobs, worker.sent
        # The last token given (counted here, stored back once a feed; a job pickled and kept
        # waiting in ``chain.next`` holds one given before)
        last, ahead = self._token, self.ahead
        # The short jobs taken one by one last, not yet in ``batch`` (encoded together when
        # another kind comes or at the end), and their argument inclusion
        run: list[Job] = []
        run_inclusion = ""
        run_next = 0  # the token a job must have to join ``run``
        job: Any  # a ``Job``, or a ``JobBlock`` (its branch first)
        while jobs:
            job = jobs[0]
            pickled = chain.next
            if pickled is not None and pickled[0] is job:
                _, token, data, buffers = pickled
            elif type(job) is JobBlock:
                # A block of the executor's short jobs (no ``Job`` a job): as many as fit sent
                # as one RUN straight from its columns (``_from_block``)
                room = ahead + 1 - count
                if room > 1 or count:
                    if others is None:
                        others = self._others_wait()
                    if others:
                        room = 0 if count else 1
                fed = self._from_block(job, room, count, size, last + 1) if room > 1 else None
                if fed is None:
                    # One job (or none) fits now: the front one leaves the block as its Job,
                    # and the path of a short job alone decides
                    one = job.take()
                    if not job:
                        jobs.popleft()
                    jobs.appendleft(one)
                    continue
                if not isinstance(fed, tuple):  # (not as one RUN: a Job each, the Jobs' path)
                    jobs.popleft()
                    jobs.extendleft(reversed(job.jobs()))
                    continue
                booked, block_size, data = fed
                if not job:
                    jobs.popleft()
                if run:
                    batch += _short_bytes(run)
                    run, run_inclusion = [], ""
                batch.append(data)
                sent[last + 1] = booked
                worker.runs += 1
                if first is None:  # (its first job made only if it becomes the head)
                    first = booked
                n = len(booked.keys)
                last += n
                count += n
                size += block_size
                continue
            elif not job.inputs and not job.env and type(job.payload) is bytes:
                room = ahead + 1 - count  # jobs the bound lets on the pipe now
                if room > 1 or count:
                    if others is None:
                        others = self._others_wait()
                    if others:  # (only the one to start, if the worker has none)
                        room = 0 if count else 1
                if room > 1:
                    block = self._block(jobs, room, count, size, last + 1)
                    if block is not None:
                        taken, block_size, data = block
                        if run:
                            batch += _short_bytes(run)
                            run, run_inclusion = [], ""
                        batch.append(data)
                        sent[last + 1] = JobRun(*taken)  # type: ignore[arg-type]
                        worker.runs += 1
                        if first is None:  # (given a token, size and flag: it may be the head)
                            first = _books.given(
                                taken[0][0],
                                last + 1,
                                SHORT_SIZE + len(job.title) + len(job.payload),
                            )
                        n = len(taken[0])
                        last += n
                        count += n
                        size += block_size
                        continue
                # Its bytes are made with the run's; its size counted as a SHORT_JOB's (the
                # title's characters for its bytes: AHEAD_BYTES is a bound, not a sum to match)
                job_size = SHORT_SIZE + len(job.title) + len(job.payload)
                if count and (room <= 0 or size + job_size > AHEAD_BYTES):
                    break
                jobs.popleft()
                last = token = last + 1
                job.token = token
                job.size = job_size
                job.cancelling = False
                sent[token] = job  # (it stays in ``_jobs``, under its chain, until it ends)
                if run and job.argument_inclusion == run_inclusion and token == run_next:
                    run.append(job)
                else:  # (a run's tokens are consecutive: a job that failed to pickle took one)
                    if run:
                        batch += _short_bytes(run)
                    run_inclusion = job.argument_inclusion
                    run = [job]
                run_next = token + 1
                if first is None:
                    first = job
                count += 1
                size += job_size
                continue
            else:
                last = token = last + 1
                try:
                    data, buffers = _pipe.pickle_job(token, job)
                except Exception as exc:
                    jobs.popleft()
                    live.pop(job.key, None)  # (a block's job may have none)
                    self._soon(unpicklable_outcome(job, exc))
                    continue
            job_size = (
                len(data) + sum(buf.raw().nbytes for buf in buffers) if buffers else len(data)
            )
            if count and (
                count > ahead
                or size + job_size > AHEAD_BYTES
                or (others := self._others_wait() if others is None else others)
            ):
                chain.next = (job, token, data, buffers)
                break
            if pickled is not None:
                chain.next = None
            jobs.popleft()
            job.token = token
            job.size = job_size
            job.cancelling = False
            sent[token] = job  # (it stays in ``_jobs``, under its chain, until it ends)
            if run:
                batch += _short_bytes(run)
                run, run_inclusion = [], ""
            batch.append(data)
            if buffers:
                raw += buffers
            if first is None:
                first = job
            count += 1
            size += job_size
        if run:
            batch += _short_bytes(run)
        self._token = last
        worker.bytes = size
        if not batch:
            if not worker.sent:  # every job left failed to pickle
                self._next_head(worker)
            return
        assert first is not None  # (a job was sent: ``batch`` holds its bytes)
        if worker.head is None:
            if isinstance(first, JobRun):  # (its first job, given a token, size and flag)
                first = _books.front(first)
            self._make_head(worker, first)
        send = worker.writer.send
        try:
            if raw:
                count_bytes = _process.OUT_OF_BAND_COUNT.pack(len(raw))
                send(b"".join([_process.OUT_OF_BAND, count_bytes, *batch]))
                for buf in raw:
                    send(buf)
            else:
                send(batch[0] if len(batch) == 1 else b"".join(batch))
            if worker.head is first:
                worker.writer.mark()
        except OSError:
            # It died. If it had nothing before, none of these started. EOF on the pipe (next loop
            # iteration) reports it: never from inside submit().
            if worker.head is first:
                worker.head = None
                worker.unsent = True
                if worker.timer is not None:
                    worker.timer.cancel()
                    worker.timer = None

    def _send_alone(self, worker: Worker, job: Job) -> None:
        """``_feed`` of a worker with nothing on its pipe whose chain's one job is ``job``, short
        (no inputs, no env, its payload bytes; ``WorkerPool._alone``): the job given its token,
        size and flag, booked, made the head and written as its SHORT_JOB, with none of the
        feed's loop (a one-task run's job; ``tests/daemons/test_worker_alone.py`` holds the two
        paths to the same books, bytes and outcomes)."""
        token = self._token = self._token + 1
        payload, title = job.payload, job.title
        size = SHORT_SIZE + len(title) + len(payload)
        job.token = token
        job.size = size
        job.cancelling = False
        worker.sent[token] = job  # (it stays in ``_jobs``, under its chain, until it ends)
        worker.bytes += size
        encoded = title.encode("utf-8", "surrogatepass")
        head = short_head(token, job.argument_inclusion == "as_list", len(encoded), len(payload))
        length = _SHORT_JOB_SIZE + len(encoded) + len(payload)
        self._make_head(worker, job)
        writer = worker.writer
        try:
            # (framed here, in the one join: ``Writer.send`` would copy the message again)
            writer.send_framed(b"".join((frame(length), _pipe.SHORT_JOB, head, encoded, payload)))
            writer.mark()
        except OSError:  # (as ``_feed``: EOF on the pipe reports it, never from submit())
            worker.head = None
            worker.unsent = True
            if worker.timer is not None:
                worker.timer.cancel()
                worker.timer = None

    @staticmethod
    def _block(
        jobs: deque[Any], room: int, count: int, size: int, token: int
    ) -> tuple[tuple[list[Job], list[Hashable], int, list[str], list[bytes]], int, bytes] | None:
        """The short jobs at the front of ``jobs`` (the first is one) of the first's argument
        inclusion, at most ``room`` of them and within AHEAD_BYTES past ``size`` (the first
        always when ``count``, the jobs on the pipe, is 0), taken off ``jobs`` when two or more:
        (their ``JobRun``'s fields from ``token``, their sizes' sum, their message bytes). None
        (nothing taken) for fewer than two."""
        taken = list(islice(jobs, room))
        n = len(taken)
        if n < 2:
            return None
        kinds = list(map(type, taken))
        if kinds.count(Job) < n:  # (a ``JobBlock`` behind: the jobs before it only)
            n = kinds.index(JobBlock)
            if n < 2:
                return None
            del taken[n:]
        # (counted first, as a plain chain's jobs all are: one inclusion, no inputs, no env)
        inclusions = list(map(_inclusion_of, taken))
        inclusion = inclusions[0]
        if (
            inclusions.count(inclusion) < n
            or any(map(_inputs_of, taken))
            or any(map(_env_of, taken))
        ):
            shorts = list(map(_short_of, taken))
            first = shorts[0]
            n = next(compress(range(1, n), map(ne, islice(shorts, 1, None), repeat(first))), n)
            if n < 2:
                return None
        payloads = list(map(_payload_of, islice(taken, n)))
        types = list(map(type, payloads))
        if types.count(bytes) < n:
            n = next(compress(range(1, n), map(is_not, types, repeat(bytes))), n)
            if n < 2:
                return None
        titles = list(map(_title_of, islice(taken, n)))
        del payloads[n:]
        n, total = _within_bound(titles, payloads, size, count)
        if n < 2:
            return None
        del taken[n:]
        keys = list(map(_key_of, taken))
        _drain(starmap(jobs.popleft, repeat((), n)))
        data = run_message(token, inclusion == "as_list", titles, payloads)
        if data is None:  # (a title holds a NUL: a SHORT_JOB each, the same tokens)
            for at, job in enumerate(taken):
                job.token = token + at
            data = b"".join(_short_bytes(taken))
        return (taken, keys, token, titles, payloads), total, data

    @staticmethod
    def _from_block(
        block: JobBlock, room: int, count: int, size: int, token: int
    ) -> tuple[JobRun, int, bytes] | bool | None:
        """``_block`` of a ``JobBlock`` at the chain's front: its jobs from ``block.at``, at most
        ``room`` and within AHEAD_BYTES past ``size``, taken off the block when two or more, as
        (their ``JobRun`` from ``token``, their sizes' sum, their message bytes); None (nothing
        taken) for fewer than two; False when they cannot go as one RUN (a payload not bytes, a
        title with a NUL)."""
        at = block.at
        end = min(at + room, len(block.keys))
        n = end - at
        if n < 2:
            return None
        payloads = block.payloads[at:end]
        if list(map(type, payloads)).count(bytes) < n:
            return False
        titles = block.titles[at:end]
        n, total = _within_bound(titles, payloads, size, count)
        if n < 2:
            return None
        end = at + n
        data = run_message(token, block.argument_inclusion == "as_list", titles, payloads)
        if data is None:
            return False
        block.at = end
        made: list[Job | None] = [None] * n
        return JobRun(made, block.keys[at:end], token, titles, payloads, block), total, data


def _short_bytes(jobs: list[Job]) -> list[bytes]:
    """The message bytes of consecutive jobs sent now, none with inputs or env, all of one
    argument inclusion, their tokens consecutive: one RUN for two or more (one head, one
    encode), else (or when a title holds a NUL) a SHORT_JOB each."""
    as_list = jobs[0].argument_inclusion == "as_list"
    if len(jobs) > 1:
        data = run_message(
            jobs[0].token, as_list, [j.title for j in jobs], [j.payload for j in jobs]
        )
        if data is not None:
            return [data]
    out = []
    for job in jobs:
        title = job.title.encode("utf-8", "surrogatepass")
        head = short_head(job.token, as_list, len(title), len(job.payload))
        out.append(b"".join((_pipe.SHORT_JOB, head, title, job.payload)))
    return out
