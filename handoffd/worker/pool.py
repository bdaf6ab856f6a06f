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

Invariants: every submitted job gets exactly one Outcome through ``on_done`` (called on the loop, never
from inside ``submit``/``cancel``) unless ``close()`` runs first; ``close()`` reports nothing. A job key
is unique among live (queued, sent or running) jobs. A cancelled job's Outcome has kind "cancelled",
and it is reported only when the job cannot start any more. No two jobs of a chain ever run at once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import pickle
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from multiprocessing.process import BaseProcess
from typing import cast

from handoffd.worker import _pipe, _process
from handoffd.worker._records import (
    Chain,
    Job,
    Outcome,
    Sent,
    Worker,
    cancelled_outcome,
    exit_description,
)

__all__ = ["AHEAD", "AHEAD_BYTES", "Job", "Outcome", "WorkerPool"]

log = logging.getLogger("handoffd.worker")

# Replacement workers that die before saying "ready" this many times in a row break the pool
# (e.g. the main module cannot be imported in a fresh interpreter): fail jobs instead of spinning.
MAX_STARTUP_FAILURES = 3
# After EOF on a worker's pipe, how long its process may linger before we kill it.
EXIT_GRACE = 1.0
# Jobs of a chain sent to its worker besides the running one, and the pickled bytes on a worker's
# pipe when sending ahead (a full pipe would block send_bytes, and with it the loop; Linux gives a
# socketpair far more than this).
AHEAD = 32
AHEAD_BYTES = 48 * 1024

# Socket buffers of a worker's pipe, each way: a job with a 1 MiB input, or a 1 MiB value, is
# written whole without waiting for the other side to read it (the kernel caps this at wmem_max).
PIPE_BUFFER = 4 << 20

_SOLO = object()  # chain ids of jobs submitted without one: (_SOLO, n) never equals a caller's id


class WorkerPool:
    """Runs Jobs in up to ``max_workers`` reused processes; results come back through ``on_done``."""

    def __init__(
        self,
        max_workers: int,
        on_done: Callable[[Outcome], None],
        *,
        name: str = "worker",
        ahead: int = AHEAD,
    ) -> None:
        if not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be an integer >= 1, got {max_workers!r}")
        self.max_workers = max_workers
        self.ahead = ahead
        self._on_done = on_done
        self._name = name
        self._ctx = multiprocessing.get_context("spawn")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._workers: set[Worker] = set()  # alive (starting, idle or busy)
        self._idle: list[Worker] = []  # ready and without a chain (a stack: reuse warm workers)
        self._queue: deque[Chain] = deque()  # chains waiting for a worker (may hold dead ones)
        self._chains: dict[Hashable, Chain] = {}  # id -> live chain (has a job not ended)
        self._queued: dict[Hashable, Chain] = {}  # key -> chain of a job not sent yet
        self._running: dict[Hashable, tuple[Worker, Sent]] = {}  # key -> job on a worker's pipe
        self._exiting: dict[BaseProcess, asyncio.TimerHandle | None] = {}  # being reaped
        self._tokens = itertools.count(1)
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
        return len(self._queued) + len(self._running) - self.busy

    @property
    def pending(self) -> int:
        """Jobs not ended: queued, sent ahead or running (``busy + queued``, without counting the
        running ones)."""
        return len(self._queued) + len(self._running)

    @property
    def workers(self) -> int:
        """Worker processes alive (starting, idle or busy)."""
        return len(self._workers)

    async def start(self) -> None:
        """Spawn every worker and wait until each has started; raises RuntimeError if they cannot."""
        if self._loop is not None:
            raise RuntimeError("WorkerPool.start() called twice")
        self._loop = asyncio.get_running_loop()
        self._started = self._loop.create_future()
        for _ in range(self.max_workers):
            self._spawn()
        try:
            await self._started
        except BaseException:
            await self.close()
            raise
        self._pump()

    def submit(self, job: Job, chain: Hashable = None) -> None:
        """Queue a job at the end of chain ``chain`` (a chain of its own when None). Never blocks."""
        self.submit_all((job,), chain)

    def submit_all(self, jobs: Iterable[Job], chain: Hashable = None) -> None:
        """Queue jobs, in order, at the end of one chain; sends them ahead in one pipe message."""
        if self._closed:
            raise RuntimeError("WorkerPool is closed")
        jobs = list(jobs)
        keys = {job.key for job in jobs}
        if len(keys) < len(jobs) or any(k in self._queued or k in self._running for k in keys):
            raise ValueError(f"a job with one of the keys {keys!r} is already queued or running")
        if self._broken is not None:
            for job in jobs:
                self._soon(self._crash_outcome(job, self._broken, 0.0))
            return
        if chain is None:
            chain = (_SOLO, next(self._solo))
        c = self._chains.get(chain)
        new = c is None
        if c is None:
            c = self._chains[chain] = Chain(chain)
        for job in jobs:
            c.jobs.append(job)
            self._queued[job.key] = c
        if c.worker is not None:
            self._feed(c.worker)
        elif new:
            self._queue.append(c)
            self._pump()

    def cancel(self, key: Hashable) -> bool:
        """Drop a job not started or kill the process running it; its Outcome has kind "cancelled".
        A job sent ahead is dropped by its worker (reported when the worker says so) unless it
        became the head first, in which case its process is killed like a running one's."""
        c = self._queued.pop(key, None)
        if c is not None:
            for job in c.jobs:
                if job.key == key:
                    c.jobs.remove(job)
                    break
            if c.next is not None and c.next[0].key == key:
                c.next = None
            self._chain_maybe_over(c)
            self._soon(cancelled_outcome(key, 0.0))
            return True
        entry = self._running.get(key)
        if entry is None:
            return False
        worker, sent = entry
        if sent.cancelling:
            return True
        if worker.head is sent:
            self._cancel_head(worker)
            return True
        sent.cancelling = True
        try:
            worker.conn.send_bytes(pickle.dumps((sent.token,), protocol=5))
        except OSError:
            pass  # the worker died: EOF on its pipe resolves the cancel
        return True

    async def close(self) -> None:
        """Kill and reap every worker process; no Outcome is reported after this starts."""
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._queued.clear()
        self._running.clear()
        self._chains.clear()
        self._idle.clear()
        if self._started is not None and not self._started.done():
            self._started.cancel()
        for worker in list(self._workers):
            self._detach(worker)
            worker.process.kill()
            self._exiting.setdefault(worker.process, None)
        procs = list(self._exiting)
        for proc in procs:
            timer = self._exiting.pop(proc)
            if timer is not None:
                timer.cancel()
            if self._loop is not None:
                self._loop.remove_reader(proc.sentinel)
            if proc.exitcode is None:
                proc.kill()
        for proc in procs:
            # After SIGKILL a process is gone within milliseconds; poll instead of blocking the loop.
            for _ in range(1000):
                if proc.exitcode is not None:
                    break
                await asyncio.sleep(0.005)
            proc.join(timeout=5)
            proc.close()

    # -- workers ------------------------------------------------------------------------------
    def _spawn(self) -> None:
        parent_conn, child_conn = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=_process.main,
            args=(child_conn,),
            name=f"{self._name}-{next(self._names)}",
            daemon=True,  # multiprocessing kills it at interpreter exit if close() never ran
        )
        for conn in (parent_conn, child_conn):
            _pipe.widen(conn.fileno(), PIPE_BUFFER)
        process.start()
        child_conn.close()
        worker = Worker(process, parent_conn)
        self._workers.add(worker)
        assert self._loop is not None
        self._loop.add_reader(worker.fd, self._on_readable, worker)

    def _detach(self, worker: Worker) -> tuple[Sent | None, list[Sent], Chain | None]:
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
            self._idle.remove(worker)
        except ValueError:
            pass
        worker.conn.close()
        worker.reader.close()
        head = worker.head
        behind = [worker.sent[t] for t in worker.order if t in worker.sent]
        if head is not None:
            behind.remove(head)
        for sent in worker.sent.values():
            self._running.pop(sent.job.key, None)
        worker.sent.clear()
        worker.order.clear()
        worker.head = None
        chain, worker.chain = worker.chain, None
        if chain is not None:
            chain.worker = None
            chain.next = None
        return head, behind, chain

    def _salvage(self, behind: list[Sent], chain: Chain | None, held: bool) -> list[Outcome]:
        """Jobs that were behind a lost head go back to the front of their chain, and the chain to
        the front of the queue (``held``: only once the dead process is reaped). Those being
        cancelled are not requeued: their cancelled Outcomes are returned."""
        cancelled = [cancelled_outcome(s.job.key, 0.0) for s in behind if s.cancelling]
        if chain is None:
            return cancelled
        back = [s.job for s in behind if not s.cancelling]
        chain.jobs.extendleft(reversed(back))
        for job in back:
            self._queued[job.key] = chain
        chain.held = held
        if not held:
            self._requeue(chain)
        return cancelled

    def _requeue(self, chain: Chain) -> None:
        chain.held = False
        if self._chains.get(chain.id) is not chain:
            return
        if not chain.jobs:
            del self._chains[chain.id]
            return
        self._queue.appendleft(chain)
        self._pump()

    def _retire(self, worker: Worker) -> tuple[Sent | None, list[Outcome]]:
        """Kill a worker whose head we give up on (timeout, cancel) and start a replacement.
        Returns the head and the Outcomes of jobs behind it whose cancel was pending."""
        head, behind, chain = self._detach(worker)
        worker.process.kill()  # SIGKILL: nothing of it runs any more
        self._when_exited(worker.process, None)
        cancelled = self._salvage(behind, chain, held=False)
        self._replace()
        return head, cancelled

    def _replace(self) -> None:
        if not self._closed and self._broken is None:
            self._spawn()

    def _when_exited(self, process: BaseProcess, then: Callable[[int | None], None] | None) -> None:
        """Reap ``process`` without blocking, then call ``then(exitcode)``."""
        assert self._loop is not None
        loop = self._loop
        if process.exitcode is not None:
            process.join()
            code = process.exitcode
            process.close()
            if then is not None:
                then(code)
            return

        def exited() -> None:
            loop.remove_reader(process.sentinel)
            timer = self._exiting.pop(process, None)
            if timer is not None:
                timer.cancel()
            process.join()
            code = process.exitcode
            process.close()
            if then is not None and not self._closed:
                then(code)

        def linger() -> None:
            # EOF without exit: the user closed our pipe or hangs in shutdown. Make sure it ends.
            self._exiting[process] = None
            if process.exitcode is None:
                process.kill()

        self._exiting[process] = loop.call_later(EXIT_GRACE, linger)
        loop.add_reader(process.sentinel, exited)

    # -- events from the loop -----------------------------------------------------------------
    def _on_readable(self, worker: Worker) -> None:
        outcomes: list[Outcome] = []
        reader = worker.reader
        reader.fill()
        lost = answered = False
        while True:
            try:
                data = reader.next()
                if data is None:
                    lost = reader.eof
                    break
                if data == _process.READY:
                    self._on_ready(worker)
                    continue
                replies = pickle.loads(data)
                answered = True
                for token, status, has_value, exc_type, message, tb_text, duration in replies:
                    # Values follow their reply as raw messages (see _process.main): no wait.
                    value = cast(bytes, reader.next(wait=True)) if has_value else None
                    sent = worker.sent.pop(token, None)
                    if sent is None:
                        log.warning("dropping a stale reply from %s", worker.process.name)
                        continue
                    worker.bytes -= sent.size
                    key = sent.job.key
                    del self._running[key]
                    if worker.head is sent:
                        worker.head = None
                    if sent.cancelling or status == _process.SKIPPED:
                        outcomes.append(cancelled_outcome(key, duration))
                    elif status == _process.OK:
                        outcomes.append(Outcome(key, True, value, "", "", "", "", duration))
                    else:
                        outcomes.append(
                            Outcome(key, False, None, exc_type, message, tb_text, "error", duration)
                        )
            except (EOFError, OSError):
                lost = True
                break
        if lost:
            if answered and worker.head is None and not worker.unsent:
                # The head's outcome came with the EOF: the job after it started and died.
                order, on_pipe = worker.order, worker.sent
                while order and order[0] not in on_pipe:
                    order.popleft()
                if order:
                    assert self._loop is not None
                    worker.head, worker.started = on_pipe[order[0]], self._loop.time()
            self._lost(worker)
        elif not answered:
            return
        elif worker.head is None:
            self._next_head(worker)
        elif worker.chain is not None and worker.chain.jobs:
            self._feed(worker)  # skipped jobs made room ahead
        for outcome in outcomes:
            self._on_done(outcome)

    def _on_ready(self, worker: Worker) -> None:
        worker.ready = True
        self._startup_failures = 0
        self._idle.append(worker)
        started = self._started
        if started is not None and not started.done():
            # Every worker said ready, idle or not: a job submitted while the others were still
            # starting may hold one for good (a long-running task), and counting idle workers
            # then never completed the start, so a chain queued meanwhile was never pumped.
            if all(w.ready for w in self._workers):
                started.set_result(None)
            return  # start() pumps once every worker is up
        self._pump()

    def _next_head(self, worker: Worker) -> None:
        """The head's outcome was read: the next job sent is running now (or is sent now)."""
        if worker.timer is not None:
            worker.timer.cancel()
            worker.timer = None
        order, sent = worker.order, worker.sent
        while order and order[0] not in sent:
            order.popleft()
        if order:
            self._make_head(worker, sent[order[0]])
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
                self._queue.append(chain)
            self._chain_maybe_over(chain)
        self._idle.append(worker)
        self._pump()

    def _others_wait(self) -> bool:
        """Chains wait for a worker: no chain keeps its worker for more than its running job."""
        queue, chains = self._queue, self._chains
        while queue:
            chain = queue[0]
            if chains.get(chain.id) is chain and chain.worker is None and not chain.held:
                if chain.jobs:
                    return True
                del chains[chain.id]
            queue.popleft()  # over, or queued twice
        return False

    def _make_head(self, worker: Worker, sent: Sent) -> None:
        assert self._loop is not None
        worker.head = sent
        worker.started = self._loop.time()
        timeout = sent.job.timeout
        if timeout is not None:
            worker.timer = self._loop.call_later(timeout, self._expire, worker, sent)

    def _chain_maybe_over(self, chain: Chain) -> None:
        if chain.worker is None and not chain.jobs and not chain.held:
            if self._chains.get(chain.id) is chain:
                del self._chains[chain.id]

    def _cancel_head(self, worker: Worker) -> None:
        assert self._loop is not None
        duration = self._loop.time() - worker.started
        head, cancelled = self._retire(worker)
        assert head is not None
        for outcome in [cancelled_outcome(head.job.key, duration), *cancelled]:
            self._soon(outcome)

    def _lost(self, worker: Worker) -> None:
        """The worker's pipe hit EOF: it died (crash, os._exit, SIGKILL, OOM)."""
        was_ready = worker.ready
        started = worker.started
        head, behind, chain = self._detach(worker)
        if not was_ready:
            self._startup_failures += 1
        cancelled = self._salvage(behind, chain, held=True)

        def report(code: int | None) -> None:
            what = exit_description(code)
            if chain is not None:
                self._requeue(chain)
            for outcome in cancelled:
                self._on_done(outcome)
            if not was_ready:
                self._startup_failed(what)
                return
            self._replace()
            if head is not None:
                assert self._loop is not None
                duration = self._loop.time() - started
                if head.cancelling:  # its cancel was asked for: that is its outcome
                    self._on_done(cancelled_outcome(head.job.key, duration))
                else:
                    self._on_done(self._crash_outcome(head.job, what, duration))

        self._when_exited(worker.process, report)

    def _startup_failed(self, what: str) -> None:
        reason = (
            f"a {self._name} process exited before it was ready ({what}); if the main script starts "
            f"work at import, guard it with `if __name__ == '__main__':`"
        )
        if self._started is not None and not self._started.done():
            self._started.set_exception(RuntimeError(reason))
            return
        if self._startup_failures < MAX_STARTUP_FAILURES:
            self._replace()
            return
        self._broken = reason
        log.error("worker pool broken: %s", reason)
        if self._workers:
            return  # the remaining workers drain the queue
        jobs = [job for chain in self._queue for job in chain.jobs]
        self._queue.clear()
        self._queued.clear()
        self._chains = {i: c for i, c in self._chains.items() if c.worker is not None}
        for job in jobs:
            self._on_done(self._crash_outcome(job, reason, 0.0))

    def _expire(self, worker: Worker, sent: Sent) -> None:
        if worker.head is not sent or worker not in self._workers:
            return
        assert self._loop is not None
        duration = self._loop.time() - worker.started
        job = sent.job
        _, cancelled = self._retire(worker)
        self._on_done(
            Outcome(
                job.key,
                False,
                None,
                "Timeout",
                f"the attempt ran longer than its timeout of {job.timeout} s and was killed",
                kind="timeout",
                duration=duration,
            )
        )
        for outcome in cancelled:
            self._on_done(outcome)

    # -- dispatch -----------------------------------------------------------------------------
    def _pump(self) -> None:
        queue, idle, chains = self._queue, self._idle, self._chains
        while idle and queue:
            chain = queue.popleft()
            if chains.get(chain.id) is not chain or chain.worker is not None or chain.held:
                continue  # over, or queued twice
            if not chain.jobs:
                del chains[chain.id]
                continue
            worker = idle.pop()
            worker.chain = chain
            chain.worker = worker
            self._feed(worker)

    def _feed(self, worker: Worker) -> None:
        """Send the worker the next jobs of its chain: one to start if it has none, and more
        behind it within ``ahead`` and AHEAD_BYTES. All in one pipe message, followed by the large
        inputs of those jobs as raw messages (see ``_process``)."""
        chain = worker.chain
        assert chain is not None
        batch: list[bytes] = []
        raw: list[pickle.PickleBuffer] = []
        fresh: list[Sent] = []
        count, size = len(worker.sent), worker.bytes
        while chain.jobs:
            job = chain.jobs[0]
            if chain.next is not None and chain.next[0] is job:
                _, token, data, buffers = chain.next
            else:
                token = next(self._tokens)
                try:
                    data, buffers = _pipe.pickle_job(token, job)
                except Exception as exc:
                    chain.jobs.popleft()
                    del self._queued[job.key]
                    self._soon(
                        Outcome(
                            job.key,
                            False,
                            None,
                            type(exc).__name__,
                            f"the job's inputs could not be pickled: {exc}",
                            kind="error",
                        )
                    )
                    continue
            job_size = (
                len(data) + sum(buf.raw().nbytes for buf in buffers) if buffers else len(data)
            )
            if count and (
                count > self.ahead or size + job_size > AHEAD_BYTES or self._others_wait()
            ):
                chain.next = (job, token, data, buffers)
                break
            chain.next = None
            chain.jobs.popleft()
            del self._queued[job.key]
            sent = Sent(job, token, job_size)
            worker.sent[token] = sent
            worker.order.append(token)
            self._running[job.key] = (worker, sent)
            batch.append(data)
            raw += buffers
            fresh.append(sent)
            count += 1
            size += job_size
        worker.bytes = size
        if not batch:
            if not worker.sent:  # every job left failed to pickle
                self._next_head(worker)
            return
        if worker.head is None:
            self._make_head(worker, fresh[0])
        send = worker.conn.send_bytes
        try:
            if raw:
                count_bytes = _process.OUT_OF_BAND_COUNT.pack(len(raw))
                send(b"".join([_process.OUT_OF_BAND, count_bytes, *batch]))
                for buf in raw:
                    send(buf)
            else:
                send(batch[0] if len(batch) == 1 else b"".join(batch))
        except OSError:
            # It died. If it had nothing before, none of these started. EOF on the pipe (next loop
            # iteration) reports it: never from inside submit().
            if worker.head is fresh[0]:
                worker.head = None
                worker.unsent = True
                if worker.timer is not None:
                    worker.timer.cancel()
                    worker.timer = None

    def _crash_outcome(self, job: Job, what: str, duration: float) -> Outcome:
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

    def _soon(self, outcome: Outcome) -> None:
        """Report from a later loop iteration (never re-enter the caller from submit/cancel)."""

        def deliver() -> None:
            if not self._closed:
                self._on_done(outcome)

        (self._loop or asyncio.get_running_loop()).call_soon(deliver)
