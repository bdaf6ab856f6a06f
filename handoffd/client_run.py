"""Run's reading side beyond its results: its output (``Run.logs``/``Run.output``), results lost
with their nodes asked for again, and the status record and error helpers ``Run`` shares with
``Client`` (``handoffd.client``, which re-exports ``RunStatus``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from handoffd import errors, values
from handoffd.protocol import messages as m
from handoffd.protocol.messages_code import GetTaskOutput, OutputEntry
from handoffd.protocol.snapshot import error_from_info

if TYPE_CHECKING:
    from handoffd.client import Client

TERMINAL = ("DONE", "FAILED", "CANCELLED")
POLL = 2.0  # seconds per long-poll request
CHUNK = 256  # results fetched per request
FOLLOW_GRACE = 30.0  # seconds a Run keeps looking for its owner (a takeover takes ~1-2 s)


@dataclass(frozen=True)
class RunStatus:
    run_id: str
    state: str  # RUNNING | DONE | FAILED | CANCELLED | UNKNOWN
    counts: dict[str, int]
    placement: dict[str, str]
    owner: str
    term: int
    standbys: tuple[str, ...]
    error: errors.HandoffError | None = field(default=None, compare=False)

    @property
    def done(self) -> bool:
        return self.state in TERMINAL


def unknown_run(run_id: str, asked: list[str]) -> str:
    return (
        f"run {run_id} is not known to the cluster (asked {', '.join(asked)}): never submitted, "
        "or forgotten after its retention time"
    )


def raise_if_failed(run_id: str, status: RunStatus) -> None:
    """A run that did not finish well has no results: say why (not "unknown function id")."""
    if status.error is not None:
        raise status.error
    if status.state == "CANCELLED":
        raise errors.RunCancelled(f"run {run_id} was cancelled: it has no results")
    if status.state == "FAILED":
        raise errors.HandoffError(f"run {run_id} failed: it has no results")


def run_status(reply: m.RunStatusReply | m.RunOutcome) -> RunStatus:
    error = error_from_info(reply.error) if reply.error is not None else None
    if isinstance(error, errors.TaskFailed) and error.traceback:
        from handoffd.packages import localize_traceback

        error.traceback = localize_traceback(error.traceback)
        # An uncaught TaskFailed then shows where the task failed, under the local traceback.
        error.add_note("remote traceback:\n" + error.traceback.rstrip())
    return RunStatus(
        reply.run_id,
        reply.state,
        dict(reply.counts),
        dict(reply.placement),
        reply.owner,
        reply.term,
        tuple(reply.standbys),
        error,
    )


def format_output(entry: OutputEntry) -> str:
    """An output entry's lines, each prefixed ``[task@node]``."""
    prefix = f"[{entry.task_id}@{entry.node}] "
    text = entry.text if entry.text.endswith("\n") else entry.text + "\n"
    return "".join(prefix + line for line in text.splitlines(keepends=True))


class RunReading:
    """``Run``'s output and lost-result methods (``Run`` inherits them)."""

    id: str
    _client: Client
    _last: RunStatus | None
    _values: dict[str, bytes]  # serialised results an outcome carried

    def wait(self, timeout: float | None = None) -> RunStatus:
        raise NotImplementedError

    def results(self) -> dict[str, Any]:
        raise NotImplementedError

    def status(self) -> RunStatus:
        raise NotImplementedError

    def _wait_until(self, deadline: float | None, timeout: float | None) -> RunStatus:
        raise NotImplementedError

    async def wait_async(self, timeout: float | None = None) -> RunStatus:
        """``wait`` without blocking the event loop."""
        return await asyncio.to_thread(self.wait, timeout)

    async def results_async(self) -> dict[str, Any]:
        """``results`` without blocking the event loop."""
        return await asyncio.to_thread(self.results)

    def _collect(self, ids: list[str]) -> dict[str, Any]:
        """Values from the outcome we hold, the rest fetched, in ``ids`` order."""
        held = self._values
        loads = values.loads
        missing = [i for i in ids if i not in held]
        if not missing:  # the usual case: the outcome carried every value
            return {i: loads(held[i]) for i in ids}
        fetched = self._fetch(missing)
        return {i: loads(held[i]) if i in held else fetched[i] for i in ids}

    def _fetch(self, ids: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for start in range(0, len(ids), CHUNK):
            chunk = tuple(ids[start : start + CHUNK])
            reply, frames = self._client._run_request(
                lambda rid, c=chunk: m.FetchResults(rid, self.id, c),
                timeout=max(self._client.timeout, 60.0),
                grace=10.0,
            )
            if reply.missing:
                reply, frames = self._refetch(chunk, reply, frames)
            for task_id, frame in zip(reply.task_ids, frames, strict=False):
                out[task_id] = values.loads(frame)
        return out

    def _refetch(
        self, chunk: tuple[str, ...], reply: Any, frames: list[bytes]
    ) -> tuple[Any, list[bytes]]:
        """Values the owner could not serve: a finished run whose copies were lost with their
        nodes reopens to recompute them (the owner did so when we asked); wait for it, ask again."""
        for _ in range(3):
            status = self.status()
            if status.state != "RUNNING":
                break
            self._wait_until(None, None)
            reply, frames = self._client._run_request(
                lambda rid, c=chunk: m.FetchResults(rid, self.id, c),
                timeout=max(self._client.timeout, 60.0),
                grace=10.0,
            )
            if not reply.missing:
                return reply, frames
        status = self._last or self.status()
        raise_if_failed(self.id, status)
        raise errors.HandoffError(
            f"results of {list(reply.missing)[:5]} of run {self.id} are not available: no such "
            "function in the run, or freed after the results were collected or retention passed"
        )

    def logs(self, task: str | None = None) -> str:
        """What the run's tasks (or ``task``) printed and logged so far, each line prefixed
        ``[task@node]``, attempts in the order they ended (kept by the owner, bounded per task)."""
        return "".join(format_output(e) for e in self.output(task, follow=False))

    def output(self, task: str | None = None, follow: bool = True) -> Iterator[OutputEntry]:
        """The run's output entries (one per attempt that printed or logged anything), as they
        come while the run goes on when ``follow``, then those left once it ended."""
        for batch in self.output_polls(task, follow):
            yield from batch

    def output_polls(
        self, task: str | None = None, follow: bool = True, poll: float = POLL
    ) -> Iterator[tuple[OutputEntry, ...]]:
        """``output``, one batch per long poll of at most ``poll`` seconds (empty when nothing
        new came meanwhile: a caller showing progress gets its turn)."""
        since = 0
        while True:
            wait = poll if follow else 0.0
            reply, _ = self._client._run_request(
                lambda rid, s=since, w=wait: GetTaskOutput(rid, self.id, task or "", s, w),
                timeout=wait + self._client.timeout,
                grace=FOLLOW_GRACE,
            )
            if reply.state == "UNKNOWN":
                raise errors.UnknownRun(unknown_run(self.id, self._client._known))
            moved = reply.next != since
            since = reply.next
            if reply.entries or (follow and reply.state not in TERMINAL):
                yield tuple(reply.entries)
            if moved and reply.entries:
                continue  # there may be more at once
            if (not follow or reply.state in TERMINAL) and not moved:
                return
