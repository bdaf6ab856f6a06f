"""A pool of spawned worker processes driven from the caller's asyncio loop.

Design note: each worker is a ``spawn``-ed process (no inherited sockets, threads or zeroconf state)
connected by one duplex pipe. The pool registers every pipe with ``loop.add_reader``: one loop wake-up
serves every worker whose results are ready (each pipe is drained while data is ready), and no thread,
Future or Task exists per job. Jobs and results travel with plain ``pickle`` (the payload is already
cloudpickled bytes). A dead worker is noticed by EOF on its pipe; its exit code comes from the process
sentinel, also watched by the loop, so nothing here ever blocks.

Chains (pipelining): every job belongs to a chain (``submit(job, chain=id)``; without an id it is a
chain of its own). The jobs of one chain run one after another, in submission order, on one worker,
never two at once: the caller may let a chain share one resource claim. A chain holds one worker
while it has jobs; besides the one running, up to ``ahead`` of its jobs (at most ``AHEAD_BYTES``
pickled) are sent ahead on the worker's pipe, so the worker starts the next one as soon as the
previous one ends, without waiting for this process. A chain ends when its last job has ended; the
same id may start a new chain later.

Which job is running: the worker runs its sent jobs in order; the pool calls the oldest sent job whose
outcome it has not read "the head" and treats it as running. Its timeout clock starts when it becomes
the head (when the previous job's outcome was read, or when it was sent to an idle worker), so it never
gets less than its timeout. Losing a worker (crash, timeout, cancel of the head) loses exactly the
head: the jobs sent behind it never started and go back, with the rest of their chain, to the front of
the queue. Cancelling a job sent ahead sends the worker a cancel; the worker drops the job unless it
already started it (it reads its pipe before starting each job), and says so; the pool reports the
cancel only once the job cannot run any more (dropped by the worker, or its process killed when it
became the head first).

Device sets: every worker has one CUDA_VISIBLE_DEVICES for its whole life, set when its process
starts (``Job.devices``; None is the pool's default set). A chain waits for a worker of its set: an
idle one, one starting for it, a new one while the pool is below ``max_workers``, or one that replaces
an idle worker of another set. The oldest waiting chain, whatever its set, is served first. With
``recycle_gpu_workers`` a worker of a non-default set is replaced once its chain ends. Each set in
``warm`` keeps one worker of its own, started with the pool and beyond ``max_workers``: starting an
interpreter takes ~70 ms, which the first task of a device set would otherwise wait for (and a node
mixing CPU and GPU tasks would swap processes for). That worker is never swapped out for another
set, and is replaced when it dies or is recycled.

Memory (``memory_enforce``): while a job with a ceiling (``Job.memory``, else ``memory_bound``) runs,
the pool looks at its worker every ``_watch.INTERVAL`` and kills it (with the processes it started)
when the job holds more than its ceiling; the outcome's kind is "memory" (``MemoryExceeded``).

Invariants: every submitted job gets exactly one Outcome through ``on_done`` (called on the loop, never
from inside ``submit``/``cancel``) unless ``close()`` runs first; ``close()`` reports nothing. A job key
is unique among live (queued, sent or running) jobs (checked at ``submit`` for a ``Job``; a
``JobBlock``'s keys are its caller's to keep unique: they get no entry of their own in the key map
until a look-up by key needs them, ``_index``). A cancelled job's Outcome has kind "cancelled",
and it is reported only when the job cannot start any more. No two jobs of a chain ever run at once.
With ``on_output``, what a running job prints reaches ``on_output(key, text)`` while it runs (new
lines every ``output_interval`` s, ``worker._live``), always before its Outcome, whose ``output``
holds only the rest.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import os
from collections.abc import Callable, Hashable, Iterable
from functools import partial
from multiprocessing.process import BaseProcess
from operator import attrgetter
from typing import cast

from handoffd.worker import _books, _replies, _watch
from handoffd.worker._feeds import AHEAD, AHEAD_BYTES, Feeds
from handoffd.worker._losses import Losses
from handoffd.worker._procs import Processes, kill_group
from handoffd.worker._queues import WaitingChains
from handoffd.worker._records import (
    Chain,
    Ended,
    Job,
    JobBlock,
    JobRun,
    Outcome,
    Worker,
    cancelled_outcome,
    crash_outcome,
    expand,
)
from handoffd.worker._sets import WorkerRoom

__all__ = ["AHEAD", "AHEAD_BYTES", "Job", "Outcome", "WorkerPool"]

_key_of = attrgetter("key")
chain_of = itertools.chain.from_iterable


def _keys_of(entry: Job | JobBlock) -> list[Hashable]:
    """The keys of a job, or of a block's jobs left."""
    if type(entry) is JobBlock:
        return entry.keys[entry.at :] if entry.at else entry.keys
    return [entry.key]  # type: ignore[union-attr]


_SOLO = object()  # chain ids of jobs submitted without one: (_SOLO, n) never equals a caller's id


class WorkerPool(Feeds, Losses):
    """Runs Jobs in up to ``max_workers`` reused processes; results come back through ``on_done``."""

    def __init__(
        self,
        max_workers: int,
        on_done: Callable[[Outcome], None],
        *,
        name: str = "worker",
        ahead: int = AHEAD,
        node: str = "",
        devices: str | None = None,
        memory_enforce: bool = False,
        memory_bound: float | None = None,
        recycle_gpu_workers: bool = False,
        on_memory: Callable[[float], None] | None = None,
        code_dir: str = "",
        on_output: Callable[[Hashable, str], None] | None = None,
        output_interval: float = 0.5,
        warm: Iterable[str] = (),
    ) -> None:
        if not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be an integer >= 1, got {max_workers!r}")
        self.max_workers = max_workers
        self._room = WorkerRoom(max_workers, warm, devices)
        self.ahead = ahead
        self._on_done = on_done
        # Takes the outcomes one read of a worker's pipe brought (in order) instead of on_done
        # for each; the others (a crash, a timeout, a cancel of a job not sent) go to on_done.
        self.on_read: Callable[[list[Ended]], None] | None = None
        # With on_read: a task's KEPT reply (a value, nothing printed) comes to it as its
        # ``Row``, not an ``Outcome`` (the executor's; others take Outcomes only)
        self.rows = False
        self._name = name
        self._node = node
        self._code_dir = code_dir  # the node's code packages (worker.code_env)
        # What a running job printed, sent by its worker every output_interval s (worker._live)
        self._on_output = on_output
        self._live = output_interval if on_output is not None else 0.0
        self._devices = devices  # the default device set (jobs whose devices is None)
        self._recycle = recycle_gpu_workers
        self._ctx = multiprocessing.get_context("spawn")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._procs: Processes | None = None
        self._workers: set[Worker] = set()  # alive (starting, idle or busy)
        # ready and without a chain, per device set (stacks: reuse warm workers)
        self._idle: dict[str | None, list[Worker]] = {}
        self._memory: _watch.MemoryWatch | None = None
        if (memory_enforce or on_memory is not None) and _watch.available():
            self._memory = _watch.MemoryWatch(
                lambda: [w for w in self._workers if w.head is not None],
                self._over_memory if memory_enforce else None,
                memory_bound,
                on_memory,
            )
        self._chains: dict[Hashable, Chain] = {}  # id -> live chain (has a job not ended)
        self._waiting = WaitingChains(self._chains)  # chains waiting for a worker
        # key -> chain of a job not ended: queued in ``chain.jobs`` or sent (on the pipe of
        # ``chain.worker``: a chain keeps its worker while a job of it is on the worker's pipe)
        self._jobs: dict[Hashable, Chain] = {}
        # A ``JobBlock`` was submitted since the last ``_index``: ``_jobs`` may lack its keys
        self._unindexed = False
        self._token = 0  # the last token given to a job sent (``_feed``)
        self._names = itertools.count(1)
        self._solo = itertools.count(1)
        self._startup_failures = 0
        self._broken: str | None = None  # why no more workers are started
        self._started: asyncio.Future[None] | None = None
        self._closed = False

    # -- public -----------------------------------------------------------------------------
    @property
    def busy(self) -> int:
        """Jobs running now."""
        return sum(1 for w in self._workers if w.head is not None)

    @property
    def queued(self) -> int:
        """Jobs waiting to start (for a worker, or sent ahead behind a running one)."""
        return self.pending - self.busy

    @property
    def pending(self) -> int:
        """Jobs not ended: queued, sent ahead or running (``busy + queued``, without counting the
        running ones)."""
        return len(self.live())

    def live(self) -> dict[Hashable, Chain]:
        """key -> chain of every job not ended (queued or on a worker's pipe); a copy made from
        the queues and pipes while a block's jobs have no entries of their own (``_index``)."""
        if not self._unindexed:
            return self._jobs
        out = dict(self._jobs)
        self._walk(out, False)
        return out

    def _index(self) -> None:
        """Every job not ended given its entry in ``_jobs``, the blocks' too, and the blocks
        marked ``indexed``: from here on their jobs leave ``_jobs`` as they end. A look-up by key
        (a cancel) finds every job then; blocks submitted later go without entries again until
        the next look-up needs them."""
        self._unindexed = False
        self._walk(self._jobs, True)

    def _walk(self, live: dict[Hashable, Chain], mark: bool) -> None:
        """Every job not ended into ``live`` (key -> chain), its blocks marked ``indexed`` with
        ``mark``."""
        for chain in self._chains.values():
            for entry in chain.jobs:
                if type(entry) is JobBlock:
                    if mark:
                        entry.indexed = True
                    live.update(dict.fromkeys(entry.keys[entry.at :], chain))
                else:
                    live[entry.key] = chain  # type: ignore[union-attr]
        for worker in self._workers:
            held = worker.chain  # (a job on a worker's pipe is its chain's)
            if held is None:
                continue
            for sent in worker.sent.values():
                if type(sent) is JobRun:
                    if mark and sent.block is not None:
                        sent.block.indexed = True
                    live.update(dict.fromkeys(sent.keys[sent.at :], held))
                else:
                    live[sent.key] = held  # type: ignore[union-attr]

    @property
    def workers(self) -> int:
        """Worker processes alive (starting, idle or busy)."""
        return len(self._workers)

    def worker_pids(self) -> list[int]:
        return [w.process.pid or 0 for w in self._workers]

    async def start(self) -> None:
        """Spawn every worker and wait until each has started; raises RuntimeError if they cannot."""
        if self._loop is not None:
            raise RuntimeError("WorkerPool.start() called twice")
        self._loop = asyncio.get_running_loop()
        self._procs = Processes(self._ctx, self._loop)
        self._started = self._loop.create_future()
        for _ in range(self.max_workers):
            self._spawn(self._devices)
        try:
            await self._started
        except BaseException:
            await self.close()
            raise
        # The warm sets' workers start once the others are up: they do not slow the first task.
        for devices in self._room.warm:
            if not self._closed and self._room.missing(self._workers, devices):
                self._spawn(devices)  # (a chain of that set that came meanwhile started one)
        self._pump()

    def submit(self, job: Job, chain: Hashable = None) -> None:
        """Queue a job at the end of chain ``chain`` (a chain of its own when None). Never blocks."""
        self.submit_all((job,), chain)

    def submit_all(self, jobs: Iterable[Job | JobBlock], chain: Hashable = None) -> None:
        """Queue jobs, in order, at the end of one chain; sends them ahead in one pipe message.
        A ``JobBlock`` among them is its jobs, kept as one entry of the chain's queue."""
        if self._closed:
            raise RuntimeError("WorkerPool is closed")
        jobs = list(jobs)
        if len(jobs) == 1 and self._alone(jobs[0], chain):
            return  # (a one-task run's job, sent at once: its own short path)
        live = self._jobs
        keys: list[Hashable] | dict[Hashable, None]
        kinds = list(map(type, jobs))
        blocks = kinds.count(JobBlock)
        if blocks:
            # A block's keys get no entry in ``_jobs`` until a look-up by key needs them
            # (``_index``): nor are they checked against the live keys here, the executor's
            # books (one entry a task) hold them unique; the jobs among the blocks are booked
            # and checked as ever
            self._unindexed = True
            given = [job.key for job in jobs if type(job) is not JobBlock]  # type: ignore[union-attr]
            keys = dict.fromkeys(given)
            clash = len(keys) < len(given) or not live.keys().isdisjoint(keys.keys())
        elif len(jobs) == 1:  # (a one-task run's: no set, no generator)
            keys = [jobs[0].key]  # type: ignore[union-attr]
            clash = keys[0] in live
        else:  # (in C; a dict keeps each key's hash for ``dict.fromkeys`` and ``update``)
            given = list(map(_key_of, jobs))
            keys = dict.fromkeys(given)
            clash = len(keys) < len(given) or not live.keys().isdisjoint(keys.keys())
        if clash:
            raise ValueError(
                f"a job with one of the keys {set(keys)!r} is already queued or running"
            )
        if self._broken is not None:
            for job in expand(jobs):
                self._soon(crash_outcome(job, self._broken, 0.0))
            return
        if chain is None:
            chain = (_SOLO, next(self._solo))
        c = self._chains.get(chain)
        new = c is None
        if c is None:
            c = self._chains[chain] = Chain(chain)
            devices = jobs[0].devices if jobs else None
            c.devices = self._devices if devices is None else devices
        c.jobs.extend(jobs)
        if keys:
            live.update(dict.fromkeys(keys, c))
        if c.worker is not None:
            self._feed(c.worker)
        elif new:
            waiting = self._waiting
            idle = self._idle.get(c.devices)
            if idle and self._loop is not None and (waiting.empty() or not waiting.waiting()):
                # What _pump would do, without the queue: no chain waits, so this one is the
                # oldest, and it takes an idle worker of its set (a one-task run, every time).
                waiting.served(c)
                worker = idle.pop()
                worker.chain = c
                c.worker = worker
                self._feed(worker)
                return
            waiting.push(c)
            self._pump()

    def _alone(self, job: Job | JobBlock, chain: Hashable) -> bool:
        """``submit_all`` of one short job (no inputs, no env, its payload bytes) that starts a
        chain while an idle worker of its set is there and no chain waits (a one-task run's: W3's
        every job), done here: the chain made and given the worker, the job sent at once as its
        head (``Feeds._send_alone``), as the general path and ``_feed`` would; False (nothing
        done) for any other, which the general path takes (and a key clash it raises for)."""
        if type(job) is not Job or job.inputs or job.env or type(job.payload) is not bytes:
            return False
        chains, live, waiting = self._chains, self._jobs, self._waiting
        devices = job.devices
        if devices is None:
            devices = self._devices
        idle = self._idle.get(devices)
        if (
            not idle
            or (chain is not None and chain in chains)
            or (not waiting.empty() and waiting.waiting())
            or job.key in live
            or self._broken is not None
            or self._loop is None
        ):
            return False
        if chain is None:
            chain = (_SOLO, next(self._solo))
        c = chains[chain] = Chain(chain)
        c.devices = devices
        live[job.key] = c
        waiting.served(c)
        worker = idle.pop()
        worker.chain = c
        c.worker = worker
        self._send_alone(worker, job)
        return True

    def cancel(self, key: Hashable) -> bool:
        """Drop a job not started or kill the process running it; its Outcome has kind "cancelled".
        A job sent ahead is dropped by its worker (reported when the worker says so) unless it
        became the head first, in which case its process is killed like a running one's."""
        c = self._jobs.get(key)
        if c is None and self._unindexed:
            self._index()
            c = self._jobs.get(key)
        if c is None:
            return False
        # (queued: in its chain's ``jobs``; else sent, on the pipe of the chain's worker)
        if JobBlock in map(type, c.jobs):  # (a rare path: the blocks as a Job each, for good)
            left = expand(c.jobs)
            c.jobs.clear()
            c.jobs.extend(left)
        queued = next((job for job in c.jobs if job.key == key), None)  # type: ignore[union-attr]
        if queued is not None:
            del self._jobs[key]
            c.jobs.remove(queued)
            if c.next is not None and c.next[0] is queued:
                c.next = None
            self._chain_maybe_over(c)
            self._soon(cancelled_outcome(key, 0.0))
            return True
        worker = c.worker
        assert worker is not None  # (a job not queued is on its chain's worker's pipe)
        # (a rare path: the job is found among the few on its worker's pipe, where each job
        # sent kept a record of its own under its key before; a run's jobs each an entry now)
        _books.split(worker)
        on_pipe = cast(list[Job], list(worker.sent.values()))  # (split: a Job an entry)
        sent = next(job for job in on_pipe if job.key == key)
        if sent.cancelling:
            return True
        if worker.head is sent:
            self._cancel_head(worker)
            return True
        sent.cancelling = True
        try:
            worker.writer.cancel(sent.token)
        except OSError:
            pass  # the worker died: EOF on its pipe resolves the cancel
        return True

    async def close(self) -> None:
        """Kill and reap every worker process; no Outcome is reported after this starts."""
        if self._closed:
            return
        self._closed = True
        self._waiting.clear()
        self._jobs.clear()
        self._chains.clear()
        self._idle.clear()
        if self._memory is not None:
            self._memory.close()
        if self._started is not None and not self._started.done():
            self._started.cancel()
        alive = []
        for worker in list(self._workers):
            self._detach(worker)
            alive.append(worker.process)
        if self._procs is not None:
            await self._procs.close(alive)

    # -- workers ------------------------------------------------------------------------------
    def _spawn(self, devices: str | None) -> None:
        assert self._procs is not None
        name = f"{self._name}-{next(self._names)}"
        setup = (self._node, os.getpid(), self._code_dir, self._live)
        process, conn, cancels = self._procs.start(name, devices, setup)
        worker = Worker(process, conn, self._loop, cancels)
        worker.devices = devices
        self._workers.add(worker)
        assert self._loop is not None
        self._loop.add_reader(worker.fd, self._on_readable, worker)
        # A huge value is read by a thread (``_pipe.THREAD_BYTES``), which says when it is whole.
        worker.reader.wake = partial(self._loop.call_soon_threadsafe, self._resume, worker)

    def _detach(self, worker: Worker) -> tuple[Job | None, list[Job], Chain | None]:
        """Forget a worker: no more reads, no timer, not idle. Returns its head, the other jobs on
        its pipe (in order; none of them started) and its chain, now without a worker."""
        if worker not in self._workers:
            return None, [], None
        self._workers.discard(worker)
        assert self._loop is not None
        self._loop.remove_reader(worker.fd)
        if worker.timer is not None:
            worker.timer.cancel()
            worker.timer = None
        try:
            self._idle.get(worker.devices, []).remove(worker)
        except ValueError:
            pass
        worker.conn.close()
        worker.reader.close()
        worker.writer.close()
        if self._memory is not None:
            self._memory.forget(worker)
        head = worker.head
        _books.split(worker)  # (a run's jobs each an entry, with its token, size and flag)
        behind = cast(list[Job], [job for job in worker.sent.values() if job is not head])
        for job in worker.sent.values():
            self._jobs.pop(job.key, None)  # type: ignore[union-attr]
        worker.sent.clear()
        worker.head = None
        chain, worker.chain = worker.chain, None
        if chain is not None:
            chain.worker = None
            chain.next = None
        return head, behind, chain

    def _replace(self, devices: str | None) -> None:
        """Keep ``max_workers`` processes (``_pump`` may have started one for a waiting chain) and
        one worker of each warm device set."""
        if self._closed or self._broken is not None:
            return
        if self._room.missing(self._workers, devices) or not self._room.full(self._workers):
            self._spawn(devices)

    def _when_exited(self, process: BaseProcess, then: Callable[[int | None], None] | None) -> None:
        assert self._procs is not None
        self._procs.when_exited(process, then)

    # -- events from the loop -----------------------------------------------------------------
    def _on_readable(self, worker: Worker) -> None:
        on_read = self.on_read
        outcomes, lost, answered = _replies.read(
            worker, self._jobs, self._on_ready, self._on_output, self.rows and bool(on_read)
        )
        if worker.reader.thread is not None and not lost and self._loop is not None:
            self._loop.remove_reader(worker.fd)  # a thread reads a huge value: not ours to watch
        if lost:
            if worker.writer.short_of_mark and worker.head is not None:
                worker.head, worker.unsent = None, True  # its job never reached it whole
            if answered and worker.head is None and not worker.unsent:
                # The head's outcome came with the EOF: the job after it started and died.
                first = _books.oldest(worker)
                if first is not None:
                    assert self._loop is not None
                    worker.head, worker.started = first, self._loop.time()
            self._lost(worker)
        elif not answered:
            return
        elif worker.head is None:
            self._next_head(worker)
        elif worker.chain is not None and worker.chain.jobs:
            self._feed(worker)  # skipped jobs made room ahead
        if on_read is None:
            for outcome in outcomes:
                self._on_done(outcome)  # type: ignore[arg-type]  # (no rows: not asked for)
        elif outcomes:
            on_read(outcomes)

    def _resume(self, worker: Worker) -> None:
        """The thread reading a huge value from the worker's pipe is done: watch it again."""
        if not self._closed and worker in self._workers and self._loop is not None:
            self._loop.add_reader(worker.fd, self._on_readable, worker)
            self._on_readable(worker)

    def _on_ready(self, worker: Worker) -> None:
        worker.ready = True
        self._startup_failures = 0
        self._idle.setdefault(worker.devices, []).append(worker)
        started = self._started
        if started is not None and not started.done():
            if all(w.ready for w in self._workers):
                started.set_result(None)
            return  # start() pumps once every worker is up
        self._pump()

    def _next_head(self, worker: Worker) -> None:
        """The head's outcome was read: the next job sent is running now (or is sent now)."""
        if worker.timer is not None:
            worker.timer.cancel()
            worker.timer = None
        first = _books.oldest(worker) if worker.sent else None
        if first is not None:
            self._make_head(worker, first)
            if worker.head is not None and worker.head.cancelling:
                self._cancel_head(worker)  # it started before the worker read our cancel
                return
            self._feed(worker)
            return
        chain = worker.chain
        if chain is not None and chain.jobs and not self._others_wait():
            self._feed(worker)
            return
        if chain is not None:  # over, or it yields the worker to chains waiting for one
            worker.chain = None
            chain.worker = None
            if chain.jobs:
                self._waiting.push(chain)
            elif not chain.held and self._chains.get(chain.id) is chain:
                del self._chains[chain.id]  # (``_chain_maybe_over``: over, with no call)
        if self._recycle and worker.devices and worker.devices != self._devices:
            # A fresh process for the next job on these devices: nothing of this one's GPU state
            # (contexts, allocations, libraries) is left for it.
            self._retire_idle(worker)
            self._replace(worker.devices if worker.devices in self._room.warm else self._devices)
        else:
            self._idle.setdefault(worker.devices, []).append(worker)
        if not self._waiting.empty():  # (else _pump would find no chain to give a worker)
            self._pump()

    def _others_wait(self) -> bool:
        """Chains wait for a worker: no chain keeps its worker for more than its running job."""
        return self._waiting.waiting()

    def _make_head(self, worker: Worker, job: Job) -> None:
        assert self._loop is not None
        worker.head = job
        worker.started = self._loop.time()
        timeout = job.timeout
        if timeout is not None:
            worker.timer = self._loop.call_later(timeout, self._expire, worker, job)
        if self._memory is not None:
            self._memory.started(worker, job, self._loop)

    def _chain_maybe_over(self, chain: Chain) -> None:
        if chain.worker is None and not chain.jobs and not chain.held:
            if self._chains.get(chain.id) is chain:
                del self._chains[chain.id]

    # -- dispatch -----------------------------------------------------------------------------
    def _pump(self) -> None:
        """Give idle workers to waiting chains, the oldest first whatever its device set; start
        (or swap in) workers of the sets that have none."""
        if self._closed or self._loop is None:
            return
        promised: dict[str | None, int] = {}  # starting workers counted for a waiting chain
        while True:
            for devices in self._waiting.order():
                idle = self._idle.get(devices)
                if idle:
                    chain = self._waiting.pop(devices)
                    worker = idle.pop()
                    worker.chain = chain
                    chain.worker = worker
                    self._feed(worker)
                    break  # the queues changed: look at the fronts again
                if self._broken is not None:
                    continue
                starting = sum(1 for w in self._workers if not w.ready and w.devices == devices)
                if starting > promised.get(devices, 0):
                    promised[devices] = promised.get(devices, 0) + 1
                    continue
                if self._room.missing(self._workers, devices):
                    pass  # its kept worker died or was recycled: start it again
                elif self._room.full(self._workers):
                    victim = self._room.victim(self._workers, self._idle, devices)
                    if victim is None:
                        continue  # it waits for a busy worker to end
                    self._retire_idle(victim)
                self._spawn(devices)
                promised[devices] = promised.get(devices, 0) + 1
            else:
                return

    def _retire_idle(self, worker: Worker) -> None:
        self._detach(worker)
        kill_group(worker.process)
        self._when_exited(worker.process, None)
