"""A pool of spawned worker processes driven from the caller's asyncio loop.

Design note: each worker is a ``spawn``-ed process (no inherited sockets, threads or zeroconf state)
connected by one duplex pipe. The pool registers every pipe with ``loop.add_reader``: one loop wake-up
serves every worker whose result is ready, and no thread, Future or Task exists per job. A worker holds
at most one job, so a crash, timeout or cancel loses exactly that job. Jobs and results travel with plain
``pickle`` (the payload is already cloudpickled bytes). A dead worker is noticed by EOF on its pipe; its
exit code comes from the process sentinel, also watched by the loop, so nothing here ever blocks.

Invariants: every submitted job gets exactly one Outcome through ``on_done`` (called on the loop, never
from inside ``submit``/``cancel``) unless ``close()`` runs first; ``close()`` reports nothing. A job key
is unique among queued and running jobs.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import pickle
import signal
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from handoffd.worker import _process

log = logging.getLogger("handoffd.worker")

# Replacement workers that die before saying "ready" this many times in a row break the pool
# (e.g. the main module cannot be imported in a fresh interpreter): fail jobs instead of spinning.
MAX_STARTUP_FAILURES = 3
# After EOF on a worker's pipe, how long its process may linger before we kill it.
EXIT_GRACE = 1.0


@dataclass
class Job:
    key: Hashable  # caller's id for the job
    payload: bytes  # TaskSpec.payload
    inputs: list[Any]  # invoke.resolve() input descriptors
    argument_inclusion: str = "variadic"
    timeout: float | None = None  # seconds; the process running it is killed when it expires
    env: dict[str, str] | None = None  # set for this call only, e.g. {"CUDA_VISIBLE_DEVICES": "0"}


@dataclass
class Outcome:
    key: Hashable
    ok: bool
    value: bytes | None  # values.dumps(result) when ok
    exc_type: str = ""
    message: str = ""
    traceback: str = ""
    kind: str = ""  # "" when ok, else "error" | "timeout" | "crash" | "cancelled"
    duration: float = 0.0  # seconds the attempt ran (measured in the worker when it finished)


class _Worker:
    __slots__ = ("process", "conn", "fd", "ready", "job", "token", "started", "timer")

    def __init__(self, process: BaseProcess, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.fd = conn.fileno()
        self.ready = False  # said "ready" at least once
        self.job: Job | None = None  # the job it is running; None when idle or starting
        self.token = 0  # matches a reply to the dispatch that caused it
        self.started = 0.0  # loop time when the current job was sent
        self.timer: asyncio.TimerHandle | None = None  # the current job's timeout


def _exit_description(code: int | None) -> str:
    if code is None:
        return "exit code unknown"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class WorkerPool:
    """Runs Jobs in up to ``max_workers`` reused processes; results come back through ``on_done``."""

    def __init__(
        self, max_workers: int, on_done: Callable[[Outcome], None], *, name: str = "worker"
    ) -> None:
        if not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be an integer >= 1, got {max_workers!r}")
        self.max_workers = max_workers
        self._on_done = on_done
        self._name = name
        self._ctx = multiprocessing.get_context("spawn")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._workers: set[_Worker] = set()  # alive (starting, idle or busy)
        self._idle: list[_Worker] = []  # ready and without a job (a stack: reuse warm workers)
        self._queue: deque[Job] = deque()  # FIFO; may hold cancelled jobs (skipped lazily)
        self._queued: dict[Hashable, Job] = {}  # key -> job still waiting (the truth for the queue)
        self._running: dict[Hashable, _Worker] = {}  # key -> worker running it
        self._exiting: dict[BaseProcess, asyncio.TimerHandle | None] = {}  # being reaped
        self._tokens = itertools.count(1)
        self._names = itertools.count(1)
        self._startup_failures = 0
        self._broken: str | None = None  # why no more workers are started
        self._started: asyncio.Future[None] | None = None
        self._closed = False

    # -- public -----------------------------------------------------------------------------
    @property
    def busy(self) -> int:
        """Jobs running now."""
        return len(self._running)

    @property
    def queued(self) -> int:
        """Jobs waiting for a free worker."""
        return len(self._queued)

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

    def submit(self, job: Job) -> None:
        """Queue a job (runs at once if a worker is idle). Never blocks."""
        if self._closed:
            raise RuntimeError("WorkerPool is closed")
        key = job.key
        if key in self._queued or key in self._running:
            raise ValueError(f"a job with key {key!r} is already queued or running")
        if self._broken is not None:
            self._soon(self._crash_outcome(job, self._broken, 0.0))
            return
        if self._idle and not self._queued:
            self._dispatch(self._idle.pop(), job)
        else:
            self._queue.append(job)
            self._queued[key] = job
            if self._idle:
                self._pump()

    def cancel(self, key: Hashable) -> bool:
        """Drop a queued job or kill the process running it; its Outcome has kind "cancelled"."""
        job = self._queued.pop(key, None)
        duration = 0.0
        if job is None:
            worker = self._running.get(key)
            if worker is None:
                return False
            job = worker.job
            assert job is not None
            assert self._loop is not None
            duration = self._loop.time() - worker.started
            self._retire(worker)
        self._soon(
            Outcome(
                job.key,
                False,
                None,
                "Cancelled",
                "the job was cancelled",
                kind="cancelled",
                duration=duration,
            )
        )
        return True

    async def close(self) -> None:
        """Kill and reap every worker process; no Outcome is reported after this starts."""
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._queued.clear()
        self._running.clear()
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
        process.start()
        child_conn.close()
        worker = _Worker(process, parent_conn)
        self._workers.add(worker)
        assert self._loop is not None
        self._loop.add_reader(worker.fd, self._on_readable, worker)

    def _detach(self, worker: _Worker) -> None:
        """Forget a worker: no more reads, no timer, not idle; its job (if any) is the caller's."""
        if worker not in self._workers:
            return
        self._workers.discard(worker)
        assert self._loop is not None
        self._loop.remove_reader(worker.fd)
        if worker.timer is not None:
            worker.timer.cancel()
            worker.timer = None
        if worker.job is not None and self._running.get(worker.job.key) is worker:
            del self._running[worker.job.key]
        try:
            self._idle.remove(worker)
        except ValueError:
            pass
        worker.conn.close()

    def _retire(self, worker: _Worker) -> None:
        """Kill a worker whose job we give up on (timeout, cancel) and start a replacement."""
        self._detach(worker)
        worker.process.kill()
        self._when_exited(worker.process, None)
        self._replace()

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
    def _on_readable(self, worker: _Worker) -> None:
        try:
            data = worker.conn.recv_bytes()
        except (EOFError, OSError):
            self._lost(worker)
            return
        if data == _process.READY:
            worker.ready = True
            self._startup_failures = 0
            self._idle.append(worker)
            started = self._started
            if started is not None and not started.done():
                if len(self._idle) == len(self._workers):
                    started.set_result(None)
                return  # start() pumps once every worker is up
            self._pump()
            return
        token, ok, has_value, exc_type, message, tb_text, duration = pickle.loads(data)
        value: bytes | None = None
        if has_value:
            # Sent right behind the reply (see _process.main), so this read does not wait.
            try:
                value = worker.conn.recv_bytes()
            except (EOFError, OSError):
                self._lost(worker)
                return
        job = worker.job
        if job is None or token != worker.token:
            log.warning("dropping a stale reply from %s", worker.process.name)
            return
        if worker.timer is not None:
            worker.timer.cancel()
            worker.timer = None
        worker.job = None
        del self._running[job.key]
        self._idle.append(worker)
        outcome = Outcome(
            job.key, ok, value, exc_type, message, tb_text, "" if ok else "error", duration
        )
        self._pump()  # the next job starts before the callback runs
        self._on_done(outcome)

    def _lost(self, worker: _Worker) -> None:
        """The worker's pipe hit EOF: it died (crash, os._exit, SIGKILL, OOM)."""
        job = worker.job
        was_ready = worker.ready
        started = worker.started
        self._detach(worker)
        if not was_ready:
            self._startup_failures += 1

        def report(code: int | None) -> None:
            what = _exit_description(code)
            if not was_ready:
                self._startup_failed(what)
                return
            self._replace()
            if job is not None:
                assert self._loop is not None
                self._on_done(self._crash_outcome(job, what, self._loop.time() - started))

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
        jobs = [job for job in self._queue if self._queued.get(job.key) is job]
        self._queue.clear()
        self._queued.clear()
        for job in jobs:
            self._on_done(self._crash_outcome(job, reason, 0.0))

    def _expire(self, worker: _Worker, token: int) -> None:
        job = worker.job
        if job is None or worker.token != token or worker not in self._workers:
            return
        assert self._loop is not None
        duration = self._loop.time() - worker.started
        self._retire(worker)
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

    # -- dispatch -----------------------------------------------------------------------------
    def _pump(self) -> None:
        queue, queued, idle = self._queue, self._queued, self._idle
        while idle and queue:
            job = queue.popleft()
            if queued.get(job.key) is not job:
                continue  # cancelled while queued
            del queued[job.key]
            self._dispatch(idle.pop(), job)

    def _dispatch(self, worker: _Worker, job: Job) -> None:
        token = next(self._tokens)
        try:
            message = pickle.dumps(
                (token, job.payload, job.inputs, job.argument_inclusion, job.env), protocol=5
            )
        except Exception as exc:
            self._idle.append(worker)
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
            return
        assert self._loop is not None
        worker.token = token
        worker.job = job
        worker.started = self._loop.time()
        self._running[job.key] = worker
        try:
            worker.conn.send_bytes(message)
        except OSError:
            # Died while idle: the job never started, so it goes back to the front of the queue.
            worker.job = None
            del self._running[job.key]
            self._queue.appendleft(job)
            self._queued[job.key] = job
            self._lost(worker)
            return
        if job.timeout is not None:
            worker.timer = self._loop.call_later(job.timeout, self._expire, worker, token)

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
