"""A takeover's heavy work, off the event loop: the replica unpacked and rebuilt
(``Replica.run_data``), then merged with the nodes' answers into the ``RunState`` the owner adopts
(``build_run``: ``RunState.from_snapshot`` with the owner's order, ``takeover.merge_run``).

For a 200,000-task run that was 8.3 s of the new owner's loop (bench_loop_stall ``takeover``):
no ping answered, no client served, meanwhile. The work is pure (data in, a new run out), so it
runs in one thread of its own; only adopting the run (``RunOwner.restore_run``: the scheduler's
books, the ready queue, the first placement) stays on the loop. The compiled parts it calls let
the GIL go every ``scheduler.run_books.YIELD_EVERY`` records and ``decode_run`` unpacks in short C calls,
so the loop is never kept waiting long for the GIL either.

``Offload`` runs a function and hands the outcome to a callback on the loop: threaded in a daemon,
at once (inline) where the shell is driven synchronously (tests with a fake port), so the same
shell code runs either way.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import time
from collections.abc import Callable, Mapping
from itertools import islice
from typing import Any

from handoffd import collector
from handoffd.daemon.upload_intake import BIG_RUN
from handoffd.freeing import PIECE
from handoffd.protocol.snapshot import encode_run, far_specs, free_in_pieces
from handoffd.replication import takeover
from handoffd.replication.standby import Replica
from handoffd.scheduler.run import RunState
from handoffd.scheduler.takeover import Adoptable, prepare

Done = Callable[[Any, "BaseException | None"], None]  # (result, error): error None if it worked


class Offload:
    """``threaded``: one worker thread (started at the first job), outcomes delivered on the
    running event loop; else each job runs at once and ``done`` is called before ``run`` returns."""

    def __init__(self, threaded: bool = False) -> None:
        self.threaded = threaded
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = False

    def run(self, fn: Callable[[], Any], done: Done) -> None:
        if not self.threaded:
            try:
                result = fn()
            except Exception as exc:  # noqa: BLE001 - handed to ``done``, which says what failed
                done(None, exc)
                return
            done(result, None)
            return
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(1, "handoffd-takeover")
        future = asyncio.get_running_loop().run_in_executor(self._pool, fn)

        def finished(f: asyncio.Future[Any]) -> None:
            if f.cancelled() or self._closed:
                return
            error = f.exception()
            done(None if error is not None else f.result(), error)

        future.add_done_callback(finished)

    def close(self) -> None:
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class ReplicaRebuild:
    """One replica being rebuilt into the run its tasks' states make (``RunState.from_snapshot``
    with the owner's ``order``: all of the build that does not depend on the nodes' answers):
    ``then`` callbacks run (on the loop) once ``run`` or ``error`` is set. ``replica`` must not
    change meanwhile (``frozen``)."""

    def __init__(
        self, offload: Offload, replica: Replica, order: Any = None, freeze: bool = False
    ) -> None:
        self.term, self.seq = replica.term, replica.seq
        self.run: RunState | None = None
        self.error: BaseException | None = None
        self.done = False
        self.seconds = 0.0  # the rebuild's own time in the thread (for the takeover's log line)
        self._then: list[Callable[[], None]] = []
        # ``freeze``: the replica is still the store's, changed by log batches; it is copied
        # (``frozen``) by the thread, not on the loop.
        offload.run(
            lambda: timed(_rebuilt, frozen(replica) if freeze else replica, order), self._finished
        )

    def _finished(self, out: Any, error: BaseException | None) -> None:
        if error is None:
            self.seconds, out = out
        self.run, self.error, self.done = out, error, True
        then, self._then = self._then, []
        for callback in then:
            callback()

    def then(self, callback: Callable[[], None]) -> None:
        if self.done:
            callback()
        else:
            self._then.append(callback)


def timed(fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    """(seconds ``fn(*args)`` took, its result): what a takeover's log line says of each step."""
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def _rebuilt(replica: Replica, order: Any) -> RunState:
    out: list[RunState] = []
    # The collector off meanwhile (``collector.paused``), what was built frozen if big: during a
    # 200,000-task takeover, full collections over the replica's ~1.5 million objects, run by the
    # thread that allocates holding the GIL, held the loop 0.5-1.7 s, several times.
    with collector.paused(lambda: bool(out) and len(out[0].tasks) >= BIG_RUN):
        data = replica.run_data()
        out.append(RunState.from_snapshot(data, order=order))
        # The replica's plain data is garbage once the run is built: freed in pieces, not as
        # one dict of 200,000 dicts (one C call, 130-290 ms with the loop waiting for the GIL).
        free_in_pieces([list(data.pop("specs", ())), list(data.pop("tasks", {}).values())])
    return out[0]


def packed(run: Any, columns: int = 0) -> bytes:
    """``encode_run(run, chunked=True, columns=columns)``, for the thread: its rows are garbage
    once packed."""
    with collector.paused():
        return encode_run(run, chunked=True, columns=columns)


#: Tasks out or done at most, for a big run's first snapshot to go as built (``as_built``): they
#: follow it in the next log batch (one batch: ``replication.FLUSH_LIMIT``).
AS_BUILT_MOVED = 1024


def as_built(run: Any, columns: int) -> bool:
    """The run's snapshot may splice its tasks as its intake packed them (``encode_run``'s
    ``as_built``, on the loop: one join) if the tasks its owner has dispatched (``run.placed``:
    every task with a node, ``run_checks``) then follow in the next log batch: a task never
    dispatched is as built but for PENDING -> READY, which no standby is told of (a takeover's
    merge settles each PENDING task READY or not: ``replication.takeover``), unless it failed or
    was cancelled without a dispatch (then pack them all). ``columns``: the standby's
    ``reads_columns`` (the specs must splice too, or they are packed as rows on the loop).

    A big run's first snapshot packed task by task in the offload thread (~10,000 field checks
    in Python) held the GIL against the owner's loop in the run's first tens of ms."""
    prebuilt = run.prebuilt
    if prebuilt is None or prebuilt.packed is None or run.state != "RUNNING":
        return False
    if prebuilt.columns and columns < prebuilt.columns:
        return False
    tally = run.tally
    return (
        tally.get("FAILED", 0) == 0
        and tally.get("CANCELLED", 0) == 0
        and len(run.placed) <= AS_BUILT_MOVED
    )


def packed_far(run: Any, columns: int = 0) -> tuple[bytes, tuple[Any, ...]]:
    """``packed(run, columns)`` and the specs whose payloads it leaves out: its intake's
    (``Prebuilt.far``: the specs never change), else ``far_specs``, a walk over every spec."""
    prebuilt = run.prebuilt
    far = prebuilt.far if prebuilt is not None else None
    return packed(run, columns), far if far is not None else far_specs(run.specs)


def frozen(replica: Replica) -> Replica:
    """A copy that log batches arriving meanwhile do not change (they replace ``deltas`` entries
    and ``values`` entries of the replica kept in the store): what a rebuild started during the
    grace reads. Made in the rebuild's thread (``ReplicaRebuild(freeze=True)``), ``PIECE``
    entries per C call: ``dict(...)`` of a 200,000-task run's deltas held the GIL for all of them.
    A batch applied meanwhile may leave the copy torn (or end it: the dict changed size, the
    rebuild fails), but it moves the replica's ``seq`` past the one the rebuild was started at,
    so the takeover never uses such a rebuild (``replication_takeover._current``)."""
    return dataclasses.replace(
        replica,
        # (the batches first: one the loop folds into deltas meanwhile is then in both, and
        # applying it again before the later ones leaves the same newest delta and value)
        batches=list(replica.batches),
        deltas=_copied(replica.deltas),
        values=_copied(replica.values),
    )


def _copied(items: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rest = iter(items.items())
    while True:
        before = len(out)
        out.update(islice(rest, PIECE))
        if len(out) - before < PIECE:
            return out


def build_run(
    data: dict[str, Any], holdings: Mapping[str, takeover.Holdings], order: Any
) -> Adoptable:
    """The run a takeover adopts: ``RunState.from_snapshot(takeover.merge(data, holdings),
    order=order)``, built once instead of twice (``data`` is left as it was), and ``prepare``d
    for adoption (its ready heap and the walks over its tasks: ``scheduler.takeover``)."""
    return ready_run(RunState.from_snapshot(data, order=order), holdings)


def ready_run(run: RunState, holdings: Mapping[str, takeover.Holdings]) -> Adoptable:
    """The rest of ``build_run`` once the replica was rebuilt (``ReplicaRebuild``, started when
    its owner was first suspected): merged with the nodes' answers and prepared (``run`` is
    changed in place)."""
    with collector.paused(lambda: len(run.tasks) >= BIG_RUN):
        return prepare(takeover.merge_run(run, holdings))
