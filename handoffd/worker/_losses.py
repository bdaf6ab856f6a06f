"""Losing a WorkerPool's worker: a crash or death (EOF on its pipe), a timeout, a cancel of its
running job, its job over its memory ceiling, a replacement that dies before it is ready. The
jobs behind a lost head go back to the front of their chain, and their chain to the front of the
queue (see ``pool``'s docstring); ``Losses`` is a base of ``WorkerPool``, which sets every
attribute declared here."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from multiprocessing.process import BaseProcess

from handoffd.worker import _watch
from handoffd.worker._procs import kill_group
from handoffd.worker._queues import WaitingChains
from handoffd.worker._records import (
    Chain,
    Job,
    Outcome,
    Worker,
    cancelled_outcome,
    crash_outcome,
    exit_description,
    memory_outcome,
    timeout_outcome,
)

log = logging.getLogger("handoffd.worker")

# Replacement workers that die before saying "ready" this many times in a row break the pool
# (e.g. the main module cannot be imported in a fresh interpreter): fail jobs instead of spinning.
MAX_STARTUP_FAILURES = 3


class Losses:
    """The worker-loss part of ``WorkerPool``."""

    _name: str
    _devices: str | None
    _loop: asyncio.AbstractEventLoop | None
    _on_done: Callable[[Outcome], None]
    _workers: set[Worker]
    _chains: dict[Hashable, Chain]
    _waiting: WaitingChains
    _jobs: dict[Hashable, Chain]
    _startup_failures: int
    _broken: str | None
    _started: asyncio.Future[None] | None
    _detach: Callable[[Worker], tuple[Job | None, list[Job], Chain | None]]
    _replace: Callable[[str | None], None]
    _when_exited: Callable[[BaseProcess, Callable[[int | None], None] | None], None]
    _pump: Callable[[], None]
    _closed: bool

    def _soon(self, outcome: Outcome) -> None:
        """Report from a later loop iteration (never re-enter the caller from submit/cancel)."""

        def deliver() -> None:
            if not self._closed:
                self._on_done(outcome)

        (self._loop or asyncio.get_running_loop()).call_soon(deliver)

    def _salvage(self, behind: list[Job], chain: Chain | None, held: bool) -> list[Outcome]:
        """Jobs that were behind a lost head go back to the front of their chain, and the chain to
        the front of the queue (``held``: only once the dead process is reaped). Those being
        cancelled are not requeued: their cancelled Outcomes are returned."""
        cancelled = [cancelled_outcome(job.key, 0.0) for job in behind if job.cancelling]
        if chain is None:
            return cancelled
        back = [job for job in behind if not job.cancelling]
        chain.jobs.extendleft(reversed(back))
        for job in back:
            self._jobs[job.key] = chain
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
        self._waiting.push_front(chain)
        self._pump()

    def _retire(self, worker: Worker) -> tuple[Job | None, list[Outcome]]:
        """Kill a worker whose head we give up on (timeout, cancel) and start a replacement.
        Returns the head and the Outcomes of jobs behind it whose cancel was pending."""
        head, behind, chain = self._detach(worker)
        kill_group(worker.process)  # SIGKILL: nothing of it or of its children runs any more
        self._when_exited(worker.process, None)
        cancelled = self._salvage(behind, chain, held=False)
        self._replace(worker.devices)
        return head, cancelled

    def _cancel_head(self, worker: Worker) -> None:
        assert self._loop is not None
        duration = self._loop.time() - worker.started
        head, cancelled = self._retire(worker)
        assert head is not None
        for outcome in [cancelled_outcome(head.key, duration), *cancelled]:
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
            self._replace(worker.devices)
            if head is not None:
                assert self._loop is not None
                duration = self._loop.time() - started
                if head.cancelling:  # its cancel was asked for: that is its outcome
                    self._on_done(cancelled_outcome(head.key, duration))
                else:
                    self._on_done(crash_outcome(head, what, duration))

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
            self._replace(self._devices)
            return
        self._broken = reason
        log.error("worker pool broken: %s", reason)
        if self._workers:
            return  # the remaining workers drain the queue
        jobs = self._waiting.take_all()
        self._jobs.clear()  # (no worker is left: no job is on a pipe)
        for chain_id, chain in list(self._chains.items()):
            if chain.worker is None:
                del self._chains[chain_id]
        for job in jobs:
            self._on_done(crash_outcome(job, reason, 0.0))

    def _expire(self, worker: Worker, job: Job) -> None:
        if worker.head is not job or worker not in self._workers:
            return
        assert self._loop is not None
        duration = self._loop.time() - worker.started
        pid = worker.process.pid or 0  # (the process object is closed once retired)
        _, cancelled = self._retire(worker)
        self._on_done(timeout_outcome(job, duration, pid))
        for outcome in cancelled:
            self._on_done(outcome)

    def _over_memory(self, worker: Worker, used: int) -> None:
        """The memory watch found the worker's job over its ceiling: kill it, report it."""
        head, limit = worker.head, worker.limit
        assert head is not None and limit is not None and self._loop is not None
        duration = self._loop.time() - worker.started
        _, cancelled = self._retire(worker)
        log.warning(
            "killed %s: job %r held %.0f MB, its ceiling is %g MB",
            worker.process.name,
            head.key,
            used / _watch.MB,
            limit,
        )
        for outcome in [memory_outcome(head, limit, used, duration), *cancelled]:
            self._on_done(outcome)
