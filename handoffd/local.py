"""run_local: execute a DAG on this machine with a WorkerPool, no daemon.

Design note: a private asyncio loop drives one WorkerPool. Ready functions wait in a heap ordered by
priority, then upward rank (longest chain still ahead), then insertion order; the pool is fed at most
one spare job per worker, so that order holds for everything else. Inline functions are never jobs: each consumer's job
carries them as "inline" inputs and re-runs them in its own process. A function is ready when every
regular function it needs, directly or through inline functions, has a result. Failed attempts are
retried after an exponential backoff; a final failure cancels the running siblings, starts nothing
more and raises TaskFailed.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
import sys
import threading
from typing import Any

from handoffd import values
from handoffd.arguments import as_consumer_failure
from handoffd.dag import DAG
from handoffd.errors import TaskFailed
from handoffd.spec import TaskSpec
from handoffd.worker.pool import Job, Outcome, WorkerPool

BACKOFF_BASE = 0.05  # seconds before the first retry; doubles per attempt
BACKOFF_CAP = 2.0


def run_local(dag: DAG, max_workers: int | None = None, max_retries: int = 3) -> dict[str, Any]:
    """Run every function of ``dag`` in local worker processes; return {id: value} (inline excluded)."""
    if not isinstance(dag, DAG):
        raise TypeError(f"run_local expects a handoffd.DAG, got {type(dag).__name__}")
    if max_workers is not None and (not isinstance(max_workers, int) or max_workers < 1):
        raise ValueError(f"max_workers must be an integer >= 1 or None, got {max_workers!r}")
    # The client's and the owner's rules (handoffd.validation); an empty DAG runs nothing.
    # (with serialization hooks, the DAG with its hook functions: handoffd.arguments)
    submitted = dag.submitted()
    specs = submitted.to_specs(max_retries=max_retries)
    ranks = submitted.upward_ranks()
    run = _LocalRun(specs, ranks, max_workers or os.cpu_count() or 1, max_retries)
    try:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raw = asyncio.run(run.execute())
        else:
            raw = _in_thread(run)  # called from async code (e.g. a notebook): don't nest loops
    except TaskFailed as exc:  # a serialize hook's task failed: its consumer's failure
        raise as_consumer_failure(exc, dag.hook_consumers) from None
    return {fn.id: values.loads(raw[fn.id]) for fn in dag if fn.id in raw}


def _in_thread(run: _LocalRun) -> dict[str, bytes]:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(run.execute())
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="handoffd-run-local")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


class _LocalRun:
    def __init__(
        self, specs: list[TaskSpec], ranks: dict[str, float], max_workers: int, max_retries: int
    ) -> None:
        self.specs = {s.id: s for s in specs}
        self.ranks = ranks
        self.max_retries = max_retries
        # Regular functions each one waits for, directly or through inline dependencies.
        waits: dict[str, set[str]] = {}
        for spec in specs:  # topological order: dependencies first
            need: set[str] = set()
            for dep in spec.deps:
                if self.specs[dep].inline:
                    need |= waits[dep]
                else:
                    need.add(dep)
            waits[spec.id] = need
        self.regular = [s.id for s in specs if not s.inline]
        self.missing = {fid: len(waits[fid]) for fid in self.regular}  # results still awaited
        self.consumers: dict[str, list[str]] = {fid: [] for fid in self.regular}
        for fid in self.regular:
            for dep in waits[fid]:
                self.consumers[dep].append(fid)
        self.workers = max(1, min(max_workers, len(self.regular)))
        # Jobs handed to the pool at once: one spare per worker, so a worker's next job is sent the
        # moment its result arrives (no idle round trip), while the rest wait here in priority order.
        self.depth = 2 * self.workers
        self.results: dict[str, bytes] = {}
        self.attempts: dict[str, int] = dict.fromkeys(self.regular, 0)
        self.running: set[str] = set()
        self.ready: list[tuple[int, float, int, str]] = []
        self.order = itertools.count()
        self.inline_inputs: dict[str, tuple[Any, ...]] = {}
        self.retry_timers: dict[str, asyncio.TimerHandle] = {}
        self.failure: TaskFailed | None = None
        self.pool: WorkerPool | None = None
        self.finished: asyncio.Future[None] | None = None

    async def execute(self) -> dict[str, bytes]:
        if not self.regular:
            return {}
        loop = asyncio.get_running_loop()
        self.finished = loop.create_future()
        self.pool = WorkerPool(
            self.workers, self._on_done, name="handoffd-local", on_output=self._print_output
        )
        try:
            await self.pool.start()
            for fid in self.regular:
                if self.missing[fid] == 0:
                    self._push(fid)
            self._fill()
            await self.finished
        finally:
            for timer in self.retry_timers.values():
                timer.cancel()
            await self.pool.close()
        if self.failure is not None:
            raise self.failure
        return self.results

    def _push(self, fid: str) -> None:
        spec = self.specs[fid]
        heapq.heappush(self.ready, (-spec.priority, -self.ranks[fid], next(self.order), fid))

    def _fill(self) -> None:
        pool = self.pool
        assert pool is not None
        while self.ready and self.failure is None and pool.pending < self.depth:
            fid = heapq.heappop(self.ready)[3]
            spec = self.specs[fid]
            self.attempts[fid] += 1
            self.running.add(fid)
            pool.submit(
                Job(fid, spec.payload, self._inputs(spec), spec.argument_inclusion, spec.timeout)
            )

    def _inputs(self, spec: TaskSpec) -> list[Any]:
        out: list[Any] = []
        for dep in spec.deps:
            if self.specs[dep].inline:
                out.append(self._inline_input(dep))
            else:
                out.append(("value", self.results[dep]))
        return out

    def _inline_input(self, fid: str) -> tuple[Any, ...]:
        # Built once: by the time any consumer runs, everything the inline function needs is done.
        cached = self.inline_inputs.get(fid)
        if cached is None:
            spec = self.specs[fid]
            cached = ("inline", spec.payload, spec.argument_inclusion, self._inputs(spec))
            self.inline_inputs[fid] = cached
        return cached

    def _print_output(self, fid: Any, text: str) -> None:
        """What a task printed and logged (captured in the worker), live or with its outcome."""
        prefix = f"[{fid}] "
        text = text if text.endswith("\n") else text + "\n"
        sys.stdout.write("".join(prefix + line for line in text.splitlines(keepends=True)))
        sys.stdout.flush()  # seen as it comes, also through a pipe

    def _on_done(self, outcome: Outcome) -> None:
        fid = outcome.key
        if outcome.output:  # what the task printed and did not send live
            self._print_output(fid, outcome.output)
        assert isinstance(fid, str)
        self.running.discard(fid)
        if self.failure is not None or outcome.kind == "cancelled":
            return
        if outcome.ok:
            assert outcome.value is not None
            self.results[fid] = outcome.value
            for consumer in self.consumers[fid]:
                self.missing[consumer] -= 1
                if self.missing[consumer] == 0:
                    self._push(consumer)
            if len(self.results) == len(self.regular):
                self._finish()
                return
            self._fill()
            return
        spec = self.specs[fid]
        limit = self.max_retries if spec.max_retries is None else spec.max_retries
        attempts = self.attempts[fid]
        if attempts <= limit:
            delay = min(BACKOFF_BASE * 2 ** (attempts - 1), BACKOFF_CAP)
            loop = asyncio.get_running_loop()
            self.retry_timers[fid] = loop.call_later(delay, self._retry, fid)
            self._fill()
            return
        self.failure = TaskFailed(
            fid, attempts, outcome.exc_type, outcome.message, outcome.traceback
        )
        assert self.pool is not None
        for other in list(self.running):
            self.pool.cancel(other)
        self._finish()

    def _retry(self, fid: str) -> None:
        self.retry_timers.pop(fid, None)
        if self.failure is None:
            self._push(fid)
            self._fill()

    def _finish(self) -> None:
        if self.finished is not None and not self.finished.done():
            self.finished.set_result(None)
