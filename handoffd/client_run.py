"""Run's reading side beyond its results: its output (``Run.logs``/``Run.output``), results lost
with their nodes asked for again, and the status record and error helpers ``Run`` shares with
``Client`` (``handoffd.client``, which re-exports ``RunStatus``)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from handoffd import client_results, errors, values
from handoffd.protocol import codec, outcome_block
from handoffd.protocol import messages as m
from handoffd.protocol.messages_code import GetTaskOutput, OutputEntry
from handoffd.protocol.snapshot import error_from_info

if TYPE_CHECKING:
    from handoffd.client import Client

TERMINAL = ("DONE", "FAILED", "CANCELLED")
POLL = 2.0  # seconds per long-poll request
CHUNK = 256  # results fetched per request
FOLLOW_GRACE = 30.0  # seconds a Run keeps looking for its owner (a takeover takes ~1-2 s)
WAIT_BYTES = 1 << 20  # result bytes Run.wait() takes inline (results() may never be called)


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
    # The owner is not ALIVE to the node that answered: the state, counts and term are the run's
    # as last replicated to it (its placement is empty), ``owner`` the old owner, ``next_owner``
    # the standby expected to take over ("" unknown). Only ``status()`` answers such a status;
    # waits and results follow the run to its new owner.
    changing: bool = False
    next_owner: str = ""

    @property
    def done(self) -> bool:
        return self.state in TERMINAL


def unknown_run(run_id: str, asked: list[str]) -> str:
    return (
        f"run {run_id} is not known to the cluster (asked {', '.join(asked)}): never submitted, "
        "forgotten after its retention time, or lost with its owner and every standby holding it"
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
        getattr(reply, "changing", False),
        getattr(reply, "next_owner", ""),
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
    _held: dict[str, bytes]  # serialised results outcomes carried (see ``_values``)
    # The first outcome's (ids, values) as it came, until something needs them by id: the
    # usual results() asks for them in the same order and reads them in one pass (``_collect``).
    # A block outcome's values are cut from its frame in one call (``outcome_block.cut``).
    _carried: tuple[tuple[str, ...], Sequence[Any]] | None

    @property
    def _values(self) -> dict[str, bytes]:
        """Serialised results the outcomes carried, by function id."""
        carried = self._carried
        if carried is not None:
            self._carried = None
            self._held = dict(zip(*carried, strict=True))  # (empty before: ``_take``)
        return self._held

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
        import asyncio  # here: a client that never awaits does not load asyncio

        return await asyncio.to_thread(self.wait, timeout)

    async def results_async(self) -> dict[str, Any]:
        """``results`` without blocking the event loop."""
        import asyncio  # here: a client that never awaits does not load asyncio

        return await asyncio.to_thread(self.results)

    def _collect(self, ids: list[str]) -> dict[str, Any]:
        """Values from the outcome we hold, the rest fetched, in ``ids`` order."""
        loads = values.loads
        carried = self._carried
        if carried is not None and tuple(ids) == carried[0]:
            # Asked in the order the outcome carried them (``execute``'s results: the owner
            # sends the submission's order): loaded in one pass, no dict of the bytes by id.
            return dict(zip(ids, map(loads, carried[1]), strict=True))
        held = self._values
        missing = [i for i in ids if i not in held]
        if not missing:  # the usual case: the outcome carried every value
            return {i: loads(held[i]) for i in ids}
        fetched = self._fetch(missing)
        return {i: loads(held[i]) if i in held else fetched[i] for i in ids}

    def _fetch(self, ids: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for start in range(0, len(ids), CHUNK):
            chunk = tuple(ids[start : start + CHUNK])
            reply, frames = self._ask_results(chunk)
            for task_id, frame in zip(reply.task_ids, frames, strict=False):
                out[task_id] = values.loads(frame)
            for task_id in reply.far:  # too big to come whole: read in chunks
                out[task_id] = self._read_far(task_id)
        return out

    def _ask_results(self, ids: tuple[str, ...]) -> tuple[Any, list[bytes]]:
        """``FetchResults`` of ``ids`` from the run's owner (values past our chunk size come
        by reference, ``Results.far``), lost ones asked again (``_refetch``)."""
        reply, frames = self._client._run_request(
            lambda rid, c=ids: m.FetchResults(rid, self.id, c, client_results.CHUNK_BYTES),
            timeout=max(self._client.timeout, 60.0),
            grace=10.0,
        )
        if reply.missing:
            reply, frames = self._refetch(ids, reply, frames)
        return reply, frames

    def _read_far(self, task_id: str) -> Any:
        """A result the owner listed in ``Results.far``, read in chunks; read again from chunk 0
        (after asking the owner again) if a read fails on the way."""
        client = self._client
        timeout = max(client.timeout, 60.0)
        error = ""
        for attempt in range(client_results.ATTEMPTS):
            if attempt:
                reply, frames = self._ask_results((task_id,))
                if task_id in reply.task_ids:
                    return values.loads(frames[reply.task_ids.index(task_id)])
                if task_id not in reply.far:
                    break
            try:
                return client_results.read(
                    client, self.id, task_id, client.max_result_bytes, timeout
                )
            except (client_results.Again, errors.ConnectionError) as exc:
                error = str(exc)
        raise errors.HandoffError(
            f"the result of {task_id!r} of run {self.id} could not be read in chunks "
            f"({client_results.ATTEMPTS} attempts): {error or 'the owner no longer lists it'}"
        )

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
                lambda rid, c=chunk: m.FetchResults(rid, self.id, c, client_results.CHUNK_BYTES),
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
        """What the run's tasks (or ``task``) printed and logged so far, running ones included,
        each line prefixed ``[task@node]``, in the order the owner got it (kept by the owner,
        bounded per task)."""
        return "".join(format_output(e) for e in self.output(task, follow=False))

    def output(self, task: str | None = None, follow: bool = True) -> Iterator[OutputEntry]:
        """The run's output entries (new lines of a running attempt about every half second, the
        rest when it ends), as they come while the run goes on when ``follow``, then those left
        once it ended."""
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


def submitted_ids(tasks: Any, outputs: tuple[str, ...] | None) -> tuple[str, ...]:
    """The ids whose values a complete outcome of this submission carries, in its order (the
    owner's rule, ``results.outcome_values``): the outputs, else every function sent (columns'
    ids, or the rows' first field)."""
    if outputs is not None:
        return outputs
    ids = getattr(tasks, "ids", None)
    if ids is not None:
        return tuple(ids)
    return tuple(row[0] for row in tasks)


class Run(RunReading):
    """A submitted run. Methods block; values are fetched from wherever they live."""

    def __init__(
        self,
        client: Client,
        run_id: str,
        owner: str,
        function_ids: list[str] | None,
        outputs: tuple[str, ...] | None,
    ) -> None:
        self._client = client
        self.id = run_id
        self.owner = owner
        self._ids = function_ids
        self._outputs = outputs
        self._deadline: float | None = None
        self._last: RunStatus | None = None
        self._exists = True  # known to exist: while no node knows it, an owner is taking over
        self._held: dict[str, bytes] = {}  # serialised results outcomes carried (``_values``)
        self._carried: tuple[tuple[str, ...], Sequence[Any]] | None = None
        # The ids a block outcome's values belong to, in order: the submission's outputs, else
        # every function it sent (``submitted_ids``); None for a run this client did not submit.
        self._block_ids: tuple[str, ...] | None = None
        self._released = False  # the owner freed the results after sending them all to us
        self._missing_package = False  # the owner lacked a code package we did not resend
        # serialize task id -> its consumer (handoffd.Argument): such a failure is the consumer's
        self._hook_consumers: dict[str, str] = {}

    def status(self) -> RunStatus:
        grace = FOLLOW_GRACE if self._exists else 0.0
        self._last = self._client._status(self.id, 0.0, grace=grace, changing_ok=True)
        return self._last

    def wait(self, timeout: float | None = None) -> RunStatus:
        """Block until the run ends; raise its error (TaskFailed, RunCancelled, ...) if it failed."""
        deadline = time.monotonic() + timeout if timeout is not None else self._deadline
        return self._wait_until(deadline, timeout)

    def _wait_until(self, deadline: float | None, timeout: float | None) -> RunStatus:
        while True:
            wait = POLL
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    raise errors.Timeout(
                        f"run {self.id} did not finish within {timeout}s (it goes on)"
                    )
            reply, frames = self._client._run_request(
                lambda rid, w=wait: m.WaitRun(rid, self.id, w, WAIT_BYTES, False),
                timeout=wait + self._client.timeout,
            )
            self._take(reply, frames)
            status = self._last
            assert status is not None
            if status.state == "UNKNOWN":
                raise errors.UnknownRun(unknown_run(self.id, self._client._known))
            if status.done:
                if status.error is not None:
                    from handoffd.arguments import as_consumer_failure

                    raise as_consumer_failure(status.error, self._hook_consumers)
                return status

    def _take(self, reply: m.RunOutcome, frames: list[bytes]) -> None:
        """Keep an outcome: the status, and the results it carried."""
        self._last = run_status(reply)
        ids = reply.task_ids
        sizes = reply.block_sizes
        if sizes:  # every value submitted for, as one block (protocol 7)
            try:
                block = outcome_block.cut(sizes, reply.block_ids, frames, self._block_ids)
            except outcome_block.BlockError as exc:
                raise errors.HandoffError(f"run {self.id}: {exc}") from exc
            assert self._block_ids is not None  # (cut checked it)
            if self._carried is None and not self._held:
                self._carried = (self._block_ids, block)
            else:
                self._values.update(zip(self._block_ids, block, strict=True))
        elif ids:
            if self._carried is None and not self._held and len(frames) == len(ids):
                self._carried = (tuple(ids), frames)  # (read by id only if asked so)
            else:
                self._values.update(zip(ids, frames, strict=False))
        self._released = self._released or reply.released

    def results(self) -> dict[str, Any]:
        """{function id: value} of every non-inline function (or the submission's ``outputs``)."""
        last = self._last
        status = last if last is not None and last.done and not last.changing else self.wait()
        raise_if_failed(self.id, status)
        ids = list(self._outputs) if self._outputs is not None else self._ids
        if ids is None:
            ids = list(status.placement)
        return self._collect(ids)

    def result(self, function_id: str) -> Any:
        if self._last is None or not self._last.done or self._last.changing:
            self.wait()
        assert self._last is not None
        raise_if_failed(self.id, self._last)
        return self._collect([function_id])[function_id]

    def placement(self) -> dict[str, str]:
        """{function id: node name} of the final attempts."""
        grace = FOLLOW_GRACE if self._exists else 0.0
        return dict(self._client._status(self.id, 0.0, grace=grace).placement)  # (the owner's)

    def tasks(self) -> list[dict[str, Any]]:
        """Every task's history, from the run's owner: id, state, node, attempts, started,
        finished, duration_s, error, and each attempt (``history``: node, worker pid, times,
        bytes, error) and state transition (``transitions``). Times are wall-clock seconds."""
        return self._client.task_history(self.id)["tasks"]  # type: ignore[no-any-return]

    def cancel(self) -> RunStatus:
        """Cancel the run (a finished run stays as it ended); returns its status after that."""
        reply, _ = self._client._run_request(lambda rid: m.CancelRun(rid, self.id))
        if reply.state == "UNKNOWN":
            raise errors.UnknownRun(unknown_run(self.id, self._client._known))
        self._last = run_status(reply)
        return self._last

    def release(self) -> None:
        """Tell the owner the results were collected, so every node frees them now."""
        try:
            self._client._run_request(lambda rid: m.FreeRunRequest(rid, self.id), grace=0.0)
        except errors.HandoffError:
            pass

    def _release_nowait(self) -> None:
        """``release`` without waiting for the answer (``execute``'s last step, one round trip
        less per run): the owner frees the values when it reads the request, and its reply is
        skipped as a late one by our next request (or drained by ``close``). If the request is
        lost (the owner just died), result retention frees them."""
        client = self._client
        if client._conn is None:
            return
        request = m.FreeRunRequest(next(client._ids), self.id)
        try:
            client._conn.send(codec.encode(request, sender=client._name))
        except errors.ConnectionError:
            return
        client._unanswered = True

    def __repr__(self) -> str:
        return f"Run({self.id!r}, owner={self.owner!r})"
