"""A big submission's decode and checks, off the event loop (issue 19: no stall past ~100 ms).

An upload (``handoffd.upload``) made whole is a submission of up to ``max_tasks_per_run`` tasks:
decoding it, the intake bounds (``intake.check_submission``) and the DAG's rules with the
TaskSpecs (``validation.wire_specs``) and the run's graph (``scheduler.graph.build_graph``) took the
loop 16-21 s for 200,000 tasks. ``prepare`` does all of that in one worker thread (``Preparer``),
and builds the run itself (``RunState``: one record per task, 0.8-1 s for 200,000) with its
snapshot's big fields packed for the standbys (``protocol.snapshot.pack_parts``); the loop then
only admits the message and feeds the owner the checked specs, their graph and the untouched run
(``Owner.submit_checked``), which the scheduler takes in by slices (``scheduler.intake``). The work holds the GIL, but CPython hands
it back to the loop every switch interval (5 ms), so the daemon goes on answering meanwhile.
``prepare`` reads only its arguments (the frames, an immutable codec configuration, the limits,
the scheduler's placement order, which reads only its arguments and the fixed backend), so it
shares nothing with the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack

from handoffd import collector, intake, resources, validation
from handoffd.config import Limits
from handoffd.daemon.intake_columns import (
    column_probes,
    column_snapshot,
    plain_graph_of,
    run_alike,
    task_ids,
)
from handoffd.errors import HandoffError
from handoffd.freeing import copied, free
from handoffd.protocol import messages as m
from handoffd.protocol.columns import ColumnError
from handoffd.protocol.messages_snapshot import SNAPSHOT_HEADS_SINCE, SNAPSHOT_TAILS_SINCE
from handoffd.protocol.messages_submit import SubmitColumns, TaskColumns, as_submission
from handoffd.protocol.schema import MESSAGE_OFFSET
from handoffd.protocol.snapshot import far_specs, pack_parts, spliced_columns
from handoffd.protocol.snapshot_columns import Cut
from handoffd.scheduler.graph import Order, TaskGraph, build_graph
from handoffd.scheduler.intake import Prebuilt, probes
from handoffd.scheduler.run import RunState
from handoffd.spec import RunOptions, TaskSpec
from handoffd.upload import Whole

log = logging.getLogger("handoffd.upload")

# Tasks from which a run built here is frozen out of the collector's scans (``_collector_paused``).
BIG_RUN = 10_000


@dataclass
class Prepared:
    """What the thread made of an upload: ``decoded`` is the codec's result (None: undecodable),
    and for a submission ``specs`` (checked) or ``error`` (why it is refused)."""

    decoded: Any
    specs: tuple[TaskSpec, ...] | None = None  # (a tuple: the owner's event takes it as is)
    error: HandoffError | None = None
    graph: TaskGraph | None = None
    run: RunState | None = None  # built from ``specs`` and ``graph``, owned by no one yet

    def take_parts(self) -> list[Any]:
        """What this holds, handed out (``Preparer``'s ``_release``): ``self`` keeps nothing."""
        parts = [self.decoded, self.specs, self.graph, self.run]
        self.decoded = self.specs = self.graph = self.run = None
        return parts


def run_options(msg: m.SubmitRun | m.SubmitAndWait) -> RunOptions:
    """The options of the run ``msg`` submits (the same on and off the loop): the frozen object
    with its fields put in its ``__dict__`` at once, as ``spec.built_spec`` builds a TaskSpec
    (one per submission; the generated ``__init__`` was ~2.5x the cost)."""
    options = _new(RunOptions)
    vars(options).update(
        max_retries=msg.max_retries,
        timeout=None,
        policy=msg.policy,
        outputs=msg.outputs,
        packages=tuple(msg.packages),
    )
    return options


_new = object.__new__


def prepare(frames: list[Any] | Whole, codec: Any, limits: Limits, order: Order | None) -> Prepared:
    """Decode ``frames``, check the submission, build its run; the collector paused meanwhile
    (``_collector_paused``)."""
    with _collector_paused() as note:
        prepared = _prepare(frames, codec, limits, order)
        note(len(prepared.run.tasks) if prepared.run is not None else 0)
    return prepared


@contextlib.contextmanager
def _collector_paused() -> Iterator[Callable[[int], None]]:
    """Run the body with the cyclic garbage collector off (``collector.paused``), then freeze what
    exists when the run built has ``BIG_RUN`` tasks or more (the body notes how many). Whichever
    thread allocates runs the collections: those triggered while 200,000 records were built
    stopped the loop 100-200 ms each, and a full one afterwards scanned the ~1.2 million objects
    of such a run for 0.7-1.3 s, again and again while it ran. Frozen objects are never scanned
    (records are freed by their reference counts when the run is forgotten)."""
    tasks = [0]
    with collector.paused(lambda: tasks[-1] >= BIG_RUN):
        yield tasks.append


def _prepare(
    frames: list[Any] | Whole, codec: Any, limits: Limits, order: Order | None
) -> Prepared:
    cut: Cut | None = None
    if isinstance(frames, Whole):
        whole = frames if frames.at >= 0 else frames.checked()
        frames = whole.frames()
        cut = (whole.data, whole.at, whole.sizes)
    marks: list[int] = []
    head = unpack_head(frames[0], marks) if frames else None
    decoded = codec.decode(frames, head)
    sent: Sent | None = None
    if head is not None:  # its task rows, which the message may not keep, freed in pieces
        rows = list(head[_TASKS_AT])
        del head
        free(rows)
        sent = Sent(frames[0], marks, cut)
    if decoded is not None and type(decoded.msg) is SubmitColumns:
        try:  # (the submission it stands for: what the loop's checks and the owner read)
            decoded = decoded._replace(msg=as_submission(decoded.msg))
        except ColumnError as exc:
            log.warning("dropped an upload of run %r: %s", decoded.msg.run_id, exc)
            decoded = None
    if decoded is None or not isinstance(decoded.msg, (m.SubmitRun, m.SubmitAndWait)):
        return Prepared(decoded)
    return _guarded(decoded, decoded.msg, decoded.frames, limits, order, sent)


@dataclass(frozen=True)
class Sent:
    """A submission's head frame as it came and where each of its values starts in it (and its
    end: ``unpack_head``'s ``marks``), the values the codec read: a columns run's snapshot splices
    its arrays from it (``snapshot.spliced_columns``), and its tails from the upload's bytes
    when ``cut`` says where its frames lie in them (``snapshot.tails_of``)."""

    head: Any
    marks: list[int]
    cut: Cut | None = None


def prepare_whole(
    msg: m.SubmitRun | m.SubmitAndWait, frames: list[Any], limits: Limits, order: Order | None
) -> Prepared:
    """``prepare`` for a submission that came whole, decoded on the loop (``msg``, its
    ``frames``): checked and built the same way, ``Prepared.decoded`` None."""
    with _collector_paused() as note:
        prepared = _guarded(None, msg, frames, limits, order)
        note(len(prepared.run.tasks) if prepared.run is not None else 0)
    return prepared


def _guarded(
    decoded: Any,
    msg: Any,
    frames: list[Any],
    limits: Limits,
    order: Order | None,
    sent: Sent | None = None,
) -> Prepared:
    try:
        return _checked(decoded, msg, frames, limits, order, sent)
    except HandoffError as exc:
        return Prepared(decoded, error=exc)
    except Exception as exc:  # noqa: BLE001 - the client hears why, the daemon stays up
        log.exception("preparing the submission of run %r failed", msg.run_id)
        return Prepared(decoded, error=HandoffError(f"the daemon could not take the run: {exc!r}"))


def _checked(
    decoded: Any,
    msg: Any,
    frames: list[Any],
    limits: Limits,
    order: Order | None,
    sent: Sent | None = None,
) -> Prepared:
    try:
        # The cheap bounds first (ids, task count), then the DAG's rules, as for a whole message.
        intake.check_submission(msg.run_id, task_ids(msg.tasks), limits)
        # Plain functions: checked and their graph built in one pass (``graph.wire_graph``, or
        # from the columns they came as: ``intake_columns``).
        plain = plain_graph_of(msg, frames, order)
        if plain is not None:
            specs, graph = plain
        else:
            # A tuple made here, not on the loop (``RunSubmitted`` holds a tuple: a 1M-item copy).
            specs = tuple(validation.wire_specs(msg, frames))
            # The run's graph, as the scheduler would build it (its placement order): pure.
            graph = build_graph(specs, msg.outputs, order, acyclic=True)  # (checked just above)
        # The run, untouched: the scheduler checks it against its view and takes it in. (What
        # all its tasks share, when they came as plain columns: ``RunState.alike``.)
        alike = run_alike(msg.tasks) if plain is not None else None
        run = RunState(msg.run_id, specs, run_options(msg), order=order, graph=graph, alike=alike)
    except HandoffError as exc:
        return Prepared(decoded, error=exc)
    tasks = msg.tasks
    if plain is not None and type(tasks) is TaskColumns:
        # A plain run that came as columns: its snapshot's specs go as those columns, spliced
        # from the submission's bytes when they came with code heads; its probes read from
        # them (``column_probes``: no record looked at).
        costs = [resources.parse_cached(raw, what="cost") for raw in tasks.cost_maps]
        probed = column_probes(tasks, costs)
        if probed is None:
            probed = probes(run)
        spliced = None
        if sent is not None and sent.marks:
            spliced = spliced_columns(tasks, frames, sent.head, sent.marks, costs, sent.cut)
        if spliced is not None:
            # (what a standby must reach to read them: the tails as one blob, 7; one of 6 gets
            # them cut apart, ``snapshot.encode_run``)
            needs = SNAPSHOT_TAILS_SINCE
            parts = pack_parts(run, specs=spliced, tasks=False)  # (as built: 7 reads them so)
            run.prebuilt = Prebuilt(parts, probed, (), needs)
            return Prepared(decoded, specs=specs, graph=graph, run=run)
        columns, far = column_snapshot(tasks, specs, frames)
    else:
        columns, far = None, far_specs(specs)
        probed = probes(run)
    needs = 0 if columns is None else SNAPSHOT_HEADS_SINCE if columns.heads else 1
    run.prebuilt = Prebuilt(pack_parts(run, columns), probed, far, needs)
    return Prepared(decoded, specs=specs, graph=graph, run=run)


# Where a submission's task rows are among its head's values (the envelope, request_id, run_id).
_TASKS_AT = MESSAGE_OFFSET + 2
_SUBMISSIONS = (m.SubmitRun.TYPE, m.SubmitAndWait.TYPE)  # type: ignore[attr-defined]


def unpack_head(head: Any, marks: list[int] | None = None) -> tuple[Any, ...] | None:
    """A submission's head unpacked as ``msgpack.unpackb(head, use_list=False)`` would, its task
    rows one at a time: one ``unpackb`` holds the GIL for all of them (0.1 s for 200,000 rows,
    about 1 s for 1,000,000), the loop waiting. None (the codec unpacks it whole and judges it)
    for anything else or anything malformed. ``marks``: filled with the offset where each value
    starts, then the end (``Sent``); left as it was when None is returned."""
    unpacker = msgpack.Unpacker(use_list=False, max_buffer_size=max(len(head), 1))
    try:
        unpacker.feed(head)
        count = unpacker.read_array_header()
        values: list[Any] = []
        tell = unpacker.tell
        starts: list[int] = []
        for at in range(count):
            starts.append(tell())
            if at == _TASKS_AT and values[2] in _SUBMISSIONS:
                rows = unpacker.read_array_header()
                values.append(tuple([unpacker.unpack() for _ in range(rows)]))
            else:
                values.append(unpacker.unpack())
        if tell() != len(head) or count <= _TASKS_AT:
            return None
    except Exception:  # noqa: BLE001 - the codec's own unpacking says what is wrong
        return None
    if marks is not None:
        marks += starts
        marks.append(len(head))
    return tuple(values)


class Preparer:
    """One thread for every upload of this process (``PREPARER``), started at the first: uploads
    are rare and big, and two at once would only share the same GIL. Idle, it holds nothing."""

    def __init__(self) -> None:
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def submit(
        self,
        frames: list[Any] | Whole,
        codec: Any,
        limits: Limits,
        order: Order | None,
        done: Callable[[Prepared], None],
        checked: Callable[[str], None] | None = None,
    ) -> None:
        """Prepare ``frames`` off the loop; ``done`` runs on the loop with the result. With
        ``checked``, an upload ``Whole`` is checked first (``upload.check``) and ``checked`` runs
        on the loop with the error ("" if none) before ``done``, which a refused upload never
        gets: the client waits for that answer to its last piece, then for its submission's."""
        loop = asyncio.get_running_loop()
        tell: Callable[[str], None] | None = None
        if checked is not None:
            answer = checked

            def tell(error: str) -> None:  # (in the thread)
                loop.call_soon_threadsafe(answer, error)

        job = functools.partial(_prepare_checked, frames, codec, limits, order, tell)
        self._run(loop, job, done)

    def submit_whole(
        self,
        msg: m.SubmitRun | m.SubmitAndWait,
        frames: list[Any],
        limits: Limits,
        order: Order | None,
        done: Callable[[Prepared], None],
    ) -> None:
        """``prepare_whole`` off the loop; ``done`` runs on the loop with the result."""
        loop = asyncio.get_running_loop()
        self._run(loop, functools.partial(prepare_whole, msg, frames, limits, order), done)

    def _run(
        self,
        loop: asyncio.AbstractEventLoop,
        job: Callable[[], Prepared | None],
        done: Callable[[Prepared], None],
    ) -> None:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(1, "handoffd-upload")
        future = loop.run_in_executor(self._pool, job)
        future.add_done_callback(lambda f: self._finished(f, done))

    def _finished(
        self, future: asyncio.Future[Prepared | None], done: Callable[[Prepared], None]
    ) -> None:
        if future.cancelled():
            return
        prepared = future.result()
        if prepared is None:  # an upload refused by its check (``checked`` told)
            return
        try:
            done(prepared)
        finally:
            # What the loop no longer needs (the decoded message, the specs and graph the run
            # holds, a run refused) is freed here, in pieces: 1,000,000 task rows, frame views and
            # ranks freed at once held the loop 0.7 s when the last reference went on it.
            if self._pool is not None:
                self._pool.submit(_release, prepared.take_parts())


def _prepare_checked(
    frames: list[Any] | Whole,
    codec: Any,
    limits: Limits,
    order: Order | None,
    tell: Callable[[str], None] | None,
) -> Prepared | None:
    """``prepare`` in the upload thread, an upload's check first when ``tell`` is given (its
    error, or "", handed to the loop): None when the check refused it."""
    if tell is not None and isinstance(frames, Whole):
        try:
            frames = frames.checked()  # (cut in ``prepare``, the collector paused: 1M views)
        except ValueError as exc:
            tell(str(exc))
            return None
        tell("")
    return prepare(frames, codec, limits, order)


# Items freed at a time by ``_release``: a few ms of deallocation, then the loop may take the GIL.
RELEASE_PIECE = 1024


def _release(parts: list[Any]) -> None:
    """Drop ``parts`` (``Prepared.take_parts``) in the upload thread, their big containers' items
    ``RELEASE_PIECE`` at a time. Deallocation is one C call holding the GIL until it returns, so
    each container's items are first held in a list of our own (new references: it is never
    mutated, whoever else holds it), then the part is dropped (its containers' items outlive it
    here), then that list is cut down in pieces, the interpreter free to switch threads between
    them. Whatever is still referenced elsewhere is only decremented. The collector is paused
    meanwhile (``collector.paused``): each list of ours holds a reference per task, young, and a
    collection walks every reference of the young objects it scans (~25 ms of CPU per 1,000,000,
    several such lists: collections of 27-95 ms on the loop after a 1,000,000-task chain's
    accept); they are gone before it is back on."""
    with collector.paused():
        for _ in _pieces(parts):
            pass


def _pieces(parts: list[Any]) -> Iterator[None]:
    """``_release``'s steps: between two, at most ``RELEASE_PIECE`` items are freed, or
    ``freeing.PIECE`` copied (``_bulk``)."""
    while parts:
        held: list[list[Any]] = []
        yield from _bulk(parts.pop(), held)
        yield
        for items in held:
            while items:
                del items[-RELEASE_PIECE:]
                yield


def _bulk(part: Any, held: list[list[Any]]) -> Iterator[None]:
    """The items of ``part``'s big containers (see ``_release``) put in lists of our own, appended
    to ``held``, copied in pieces (``freeing.copied``): ``list(...)`` of one of them was one C call
    holding the GIL, 20-25 ms at a 1,000,000-task submission's release."""
    if isinstance(part, list):
        sources: tuple[Any, ...] = (part,)
    elif isinstance(part, RunState):
        sources = (part.tasks.values(),)
    elif isinstance(part, TaskGraph):
        sources = (part.regular, part.upward_rank, part.position, part.placement_order)
    elif part is not None and hasattr(part, "frames"):  # codec.Decoded
        tasks = getattr(part.msg, "tasks", ())
        if type(tasks) is TaskColumns:  # (its records are made on demand: its columns, held)
            tasks = tasks.deps
        sources = (part.frames, tasks)
    else:
        return
    for items in sources:
        into: list[Any] = []
        held.append(into)
        yield from copied(items, into)


PREPARER = Preparer()
