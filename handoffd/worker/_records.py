"""The records a WorkerPool keeps: the caller's Job and Outcome, and per worker and chain.

A job sent to a worker is the caller's ``Job`` itself (its ``token``, ``size`` and ``cancelling``
are the pool's): no record of its own per job on a pipe, which was one more object per task
between the executor's dispatch and its report."""

from __future__ import annotations

import signal
from collections import deque
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from handoffd.worker import _cancels, _pipe

if TYPE_CHECKING:  # Job and Outcome are built by the executor's state machine, which runs no loop
    import asyncio


@dataclass(slots=True)
class Job:
    key: Hashable  # caller's id for the job
    payload: bytes  # TaskSpec.payload
    inputs: list[Any]  # invoke.resolve() input descriptors
    argument_inclusion: str = "variadic"
    timeout: float | None = None  # seconds; the process running it is killed when it expires
    env: dict[str, str] | None = None  # set for this call only, e.g. {"HOME": "/tmp"}
    # CUDA_VISIBLE_DEVICES of the worker that runs it, fixed when that process started (None: the
    # pool's default set); a worker never runs jobs of two device sets
    devices: str | None = None
    # MB the job's processes may hold resident above what its worker held when it started (None:
    # no ceiling of its own; the pool's ``memory_bound`` still applies)
    memory: float | None = None
    title: str = ""  # the worker's process title while it runs, e.g. "run r1 task t3"
    # The pool's, set when it is sent to a worker (and again at each send: a job salvaged from
    # a dead worker is sent anew), read only while it is on that worker's pipe: its token there,
    # its pickled size, and whether a cancel was sent to the worker and is not reported yet. Not
    # set by ``__init__`` (three stores a task for nothing: the executor builds one Job a task).
    token: int = field(init=False, repr=False, compare=False)
    size: int = field(init=False, repr=False, compare=False)
    cancelling: bool = field(init=False, repr=False, compare=False)


@dataclass(slots=True)
class Outcome:
    key: Hashable
    ok: bool
    # values.dumps(result) when ok; a bytearray from _pipe.LARGE bytes on (read straight into it),
    # which the store, zmq and pickle take like bytes
    value: bytes | None
    exc_type: str = ""
    message: str = ""
    traceback: str = ""
    kind: str = ""  # "" when ok, else "error" | "timeout" | "crash" | "cancelled"
    duration: float = 0.0  # seconds the attempt ran (measured in the worker when it finished)
    output: str = ""  # what the attempt printed and logged (bounded: worker.capture)
    pid: int = 0  # the worker process that ran it (0: not known)


#: A job's end as ``WorkerPool.on_read`` gets it with ``rows`` set, for a KEPT reply: (key, value,
#: duration, pid), an ``Outcome`` that is ok with no output (``outcome_of`` makes it one), one
#: tuple a task, not a record of ten slots.
Row = tuple[Hashable, Any, float, int]


class Kept:
    """Consecutive KEPT replies of one read as columns (``WorkerPool.on_read`` with ``rows``,
    when the read's replies could be cut as a block: ``_kept.kept_block``): each a ``Row``
    (key, value, duration, pid), the pid one for all of them, no tuple a task. Every key is a
    plain tuple (a task's), none was being cancelled; in the order the worker wrote them."""

    __slots__ = ("keys", "values", "durations", "pid")

    def __init__(
        self, keys: list[Any], values: Sequence[bytes], durations: Sequence[float], pid: int
    ):
        self.keys = keys
        self.values = values
        self.durations = durations
        self.pid = pid

    def rows(self) -> list[Row]:
        """The block as the ``Row`` a reply each it stands for."""
        return list(zip(self.keys, self.values, self.durations, repeat(self.pid)))


Ended = Outcome | Row | Kept


class JobBlock:
    """Consecutive short jobs of one chain as columns, no ``Job`` a job: what the executor's refill
    chains of a table's queued rows (``ExecutorState._refill``), submitted and queued in a chain
    as ONE entry (``Chain.jobs``) and fed from whole (``_feeds``). Each job ``i`` from ``at`` is
    ``Job(keys[i], payloads[i], [], argument_inclusion, timeout, None, devices, memory,
    titles[i])`` (``job``); the jobs before ``at`` were taken off the front. A job is made only
    where one leaves the block (``take``, ``jobs``: a cancel, a loss, a feed of one).
    ``indexed``: its keys are in the pool's key -> chain map (``WorkerPool._jobs``); until a
    look-up by key needs them (``WorkerPool._index``) a block's jobs have no entry there, so a
    job's way in and out costs no dict entry (its replies end by position, ``_kept``)."""

    __slots__ = (
        "keys",
        "payloads",
        "titles",
        "argument_inclusion",
        "timeout",
        "devices",
        "memory",
        "at",
        "indexed",
    )

    def __init__(
        self,
        keys: list[Hashable],
        payloads: list[bytes],
        titles: list[str],
        argument_inclusion: str,
        timeout: float | None,
        devices: str | None,
        memory: float | None,
    ) -> None:
        self.keys = keys
        self.payloads = payloads
        self.titles = titles
        self.argument_inclusion = argument_inclusion
        self.timeout = timeout
        self.devices = devices
        self.memory = memory
        self.at = 0
        self.indexed = False

    def __len__(self) -> int:
        """Jobs left in the block."""
        return len(self.keys) - self.at

    def job(self, i: int) -> Job:
        """Job ``i`` of the block as its ``Job``."""
        return new_job(
            self.keys[i],
            self.payloads[i],
            [],
            self.argument_inclusion,
            self.timeout,
            self.devices,
            self.memory,
            self.titles[i],
        )

    def jobs(self) -> list[Job]:
        """The jobs left, each as its ``Job``."""
        return [self.job(i) for i in range(self.at, len(self.keys))]

    def take(self) -> Job:
        """The front job, taken off the block as its ``Job``."""
        job = self.job(self.at)
        self.at += 1
        return job


def expand(entries: Iterable[Job | JobBlock]) -> list[Job]:
    """Jobs and blocks (an ``Execute``'s, a chain's queue) as one ``Job`` a job, in order."""
    out: list[Job] = []
    for entry in entries:
        if type(entry) is JobBlock:
            out += entry.jobs()
        else:
            out.append(entry)  # type: ignore[arg-type]
    return out


class JobRun:
    """Consecutive short jobs of one chain sent to a worker in one feed (``_feeds``), booked as one
    entry of ``Worker.sent`` under its first token: their keys, the tokens ``first`` ..
    ``first + len(keys) - 1``, their titles and payloads as columns (a job's size on the pipe is
    ``SHORT_SIZE`` and their lengths, as a SHORT_JOB's), and ``at``, how many of them have ended
    (replied in order, at the front of the pipe). ``jobs`` holds each one's ``Job``, or None for
    one fed from a ``JobBlock`` (``block``) and not made yet: ``_books`` makes it (from the block's
    fields) only where it leaves the run. A job in a run has no ``token``, ``size`` or
    ``cancelling`` of its own until ``_books`` gives it them (it becomes the head, is replied
    alone, or the run is split into one entry a job for a cancel, a loss or a stale reply)."""

    __slots__ = ("jobs", "keys", "first", "titles", "payloads", "at", "block")

    def __init__(
        self,
        jobs: list[Job | None],
        keys: list[Hashable],
        first: int,
        titles: list[str],
        payloads: list[bytes],
        block: JobBlock | None = None,
    ) -> None:
        self.jobs = jobs
        self.keys = keys
        self.first = first
        self.titles = titles
        self.payloads = payloads
        self.at = 0
        self.block = block


_new = object.__new__


def new_job(
    key: Hashable,
    payload: bytes,
    inputs: list[Any],
    argument_inclusion: str,
    timeout: float | None,
    devices: str | None,
    memory: float | None,
    title: str,
) -> Job:
    """``Job(key, payload, inputs, argument_inclusion, timeout, None, devices, memory, title)``
    without the dataclass's ``__init__`` call (one a started task): the same record, field for
    field (``tests/unit/test_record_makers.py``)."""
    job = _new(Job)
    job.key = key
    job.payload = payload
    job.inputs = inputs
    job.argument_inclusion = argument_inclusion
    job.timeout = timeout
    job.env = None
    job.devices = devices
    job.memory = memory
    job.title = title
    return job


def ok_outcome(
    key: Hashable, value: bytes | None, duration: float, output: str, pid: int
) -> Outcome:
    """``Outcome(key, True, value, "", "", "", "", duration, output, pid)`` without the
    dataclass's ``__init__`` call (one a reply read): the same record, field for field
    (``tests/unit/test_record_makers.py``)."""
    outcome = _new(Outcome)
    outcome.key = key
    outcome.ok = True
    outcome.value = value
    outcome.exc_type = outcome.message = outcome.traceback = outcome.kind = ""
    outcome.duration = duration
    outcome.output = output
    outcome.pid = pid
    return outcome


def outcome_of(ended: Outcome | Row) -> Outcome:
    """The ``Outcome`` a ``Row`` stands for (an ``Outcome`` as it is)."""
    if type(ended) is tuple:
        key, value, duration, pid = ended
        return ok_outcome(key, value, duration, "", pid)
    return ended  # type: ignore[return-value]


class Chain:
    __slots__ = ("id", "jobs", "worker", "held", "next", "devices", "seq")

    def __init__(self, chain_id: Hashable) -> None:
        self.id = chain_id
        # not sent to a worker yet, in order (a ``JobBlock``: its jobs, one entry)
        self.jobs: deque[Job | JobBlock] = deque()
        self.worker: Worker | None = None  # the worker it holds
        self.held = False  # its last worker died and is not reaped yet: do not start it elsewhere
        # jobs[0] pickled, with its out-of-band inputs (kept if it must wait)
        self.next: tuple[Job, int, bytes, list[Any]] | None = None
        self.devices: str | None = None  # the device set of its jobs (its first job's)
        self.seq = 0  # when it joined the queue of chains waiting for a worker


class Worker:
    __slots__ = (
        "process",
        "conn",
        "fd",
        "ready",
        "chain",
        "sent",
        "bytes",
        "head",
        "started",
        "timer",
        "unsent",
        "reader",
        "devices",
        "limit",
        "baseline",
        "statm",
        "writer",
        "runs",
    )

    def __init__(
        self,
        process: BaseProcess,
        conn: Connection,
        loop: asyncio.AbstractEventLoop | None = None,
        cancels: _cancels.Count | None = None,
    ) -> None:
        self.process = process
        self.conn = conn
        self.fd = conn.fileno()
        self.ready = False  # said "ready" at least once
        self.chain: Chain | None = None  # the chain it serves; None when idle or starting
        # token -> job on its pipe whose outcome is not read, in the order sent (a dict keeps
        # its insertion order: the oldest is the first, no separate queue of tokens); a feed's
        # short jobs as one ``JobRun`` under its first token (``_books`` reads both kinds)
        self.sent: dict[int, Job | JobRun] = {}
        self.runs = 0  # ``JobRun`` entries in ``sent``
        self.bytes = 0  # pickled size of the jobs in ``sent``
        self.head: Job | None = None  # the job it runs, as far as we know
        self.started = 0.0  # loop time when ``head`` became the head
        self.timer: asyncio.TimerHandle | None = None  # the head's timeout
        self.unsent = False  # a send to it failed while it had no job: none of its jobs started
        self.reader = _pipe.Reader(self.fd)
        self.writer = _pipe.Writer(self.fd, loop, cancels)  # (it sends the cancels)
        self.devices: str | None = None  # its CUDA_VISIBLE_DEVICES, fixed when it started
        self.limit: float | None = None  # MB the head may add to ``baseline``; None: unwatched
        self.baseline = 0  # resident bytes of the worker alone when the head became the head
        self.statm: int | None = None  # an open /proc/PID/statm of it (the memory watch's)


def exit_description(code: int | None) -> str:
    if code is None:
        return "exit code unknown"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def cancelled_outcome(key: Hashable, duration: float) -> Outcome:
    return Outcome(
        key, False, None, "Cancelled", "the job was cancelled", kind="cancelled", duration=duration
    )


def timeout_outcome(job: Job, duration: float, pid: int = 0) -> Outcome:
    return Outcome(
        job.key,
        False,
        None,
        "Timeout",
        f"the attempt ran longer than its timeout of {job.timeout} s and was killed",
        kind="timeout",
        duration=duration,
        pid=pid,
    )


def unpicklable_outcome(job: Job, exc: Exception) -> Outcome:
    message = f"the job's inputs could not be pickled: {exc}"
    return Outcome(job.key, False, None, type(exc).__name__, message, kind="error")


def crash_outcome(job: Job, what: str, duration: float) -> Outcome:
    return Outcome(
        job.key,
        False,
        None,
        "WorkerCrashed",
        f"the worker process running this job died ({what}); it crashed, was killed "
        f"or ran out of memory",
        kind="crash",
        duration=duration,
    )


def memory_outcome(job: Job, limit: float, used: int, duration: float) -> Outcome:
    """The worker held more than ``limit`` MB for the job and was killed."""
    used_mb = used / (1024 * 1024)
    if job.memory is not None:
        why = f"the task declared memory={job.memory:g} MB and used {used_mb:.0f} MB"
        fix = "declare a larger memory cost for it, or make it use less"
    else:
        why = (
            f"the task declared no memory and used {used_mb:.0f} MB, over this node's bound of "
            f"{limit:g} MB"
        )
        fix = "declare its memory cost so it is placed on a node that has it, or use less"
    return Outcome(
        job.key,
        False,
        None,
        "MemoryExceeded",
        f"{why} (resident, with the processes it started); its worker was killed: {fix}",
        kind="memory",
        duration=duration,
    )
