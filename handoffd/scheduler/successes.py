# cython: annotation_typing=False
# (the annotations are for mypy; successes.pxd beside it gives the compiled build its C types)
"""A success report table applied in one compiled pass: the owner's most common event.

``OwnerScheduler._on_all_succeeded`` hands a ``TasksSucceeded`` of a live, running run from a live
node here when the run has no plain ``listener`` (tests) and the owner is its mover. ``apply`` walks
the columns once: each row answers its dispatch, is checked against the task's state, attempt and
node (a stale or unknown row is skipped, as ``OwnerScheduler._current`` skips it), and an accepted
row is ``finish``ed: ``RunState.succeeded`` with the ``ASSIGNED``/``RUNNING`` -> ``DONE`` move of
``RunState.move`` written out for the one case (the transition table's check is known to pass), so
a row costs one C call instead of four layers (report, current, accept, succeeded, move). What
every row shares is read once a table, and the table's DONE moves reach the run's tally and the
owner's counters as counts at its end (``_count``); the owner's books and the learned durations
of its rows are written by its ``Table`` once for the rows gathered (``Table.flush``).

``RunState.succeeded`` stays the reference (and the path of an adopted result and of the rows after
a run ends); tests/unit/test_scheduler_successes.py applies random report tables both ways and
compares every task, the owner's books and the instructions.
"""

from __future__ import annotations

from typing import Any

from handoffd.scheduler import history as hist
from handoffd.scheduler.history import INPUTS_READY
from handoffd.scheduler.owner_books import OwnerBooks
from handoffd.scheduler.run import _MOVES_LIMIT, RunState, TaskRecord
from handoffd.scheduler.states import ASSIGNED, DONE, PENDING, RUN_DONE, RUN_RUNNING, RUNNING


def apply(
    run: RunState,
    view: Any,
    node: str,
    ids: Any,
    tries: Any,
    sizes: Any,
    values: Any,
    took: Any,
    now: float,
    cancels: list[tuple[str, str, int]],
    pids: Any = None,
    began: Any = None,
    ended: Any = None,
    bytes_in: Any = None,
    delays: Any = None,
) -> tuple[int, bool]:
    """Apply the rows of a success report of ``run`` from ``node`` in order, as
    ``OwnerScheduler._succeeded`` would one by one, up to the row after which the run is no longer
    running. Returns (rows taken, whether a row answered a dispatch still unanswered); the
    dispatches to cancel are added to ``cancels``. ``pids``, ``began``, ``ended``, ``bytes_in``:
    the report's columns of what only the executing node knows (``TasksSucceeded``'s), or None
    when the owner's shell wrote them in the history already (``history.observe_done``). With
    them every row of a known task is observed here, in report order: each accepted one's
    attempt row built once with its close (``history.done``), any other (another attempt, a task
    no longer out, a duplicate, a row after the run's end) observed at its place
    (``history.observe_row``); and ``delays`` (a list, or None) gets each row's time from its
    attempt's dispatch to its start (``record_delay``), as the shell's
    ``history.dispatch_delays`` counted them."""
    run_id = run.run_id
    tasks = run.tasks
    n = len(ids)
    # The columns as lists (a report's are; any other sequence copied once): a row's items read
    # by index in C, not by the generic item look-up.
    id_col = ids if type(ids) is list else list(ids)
    try_col = tries if type(tries) is list else list(tries)
    size_col = sizes if type(sizes) is list else list(sizes)
    value_col = values if type(values) is list else list(values)
    took_col = took if type(took) is list else list(took)
    report = pids is not None
    timed = report and delays is not None
    durations = view.durations
    # What is the same for every row of the table, read once (the per-row ``finish`` of before
    # read or built each of them again): the node's unanswered dispatches (none: no row can
    # answer one, so no key is built), the run's options, the times as objects, the cause.
    pending = view.unacked.get(node)
    outputs = run.options.outputs is not None
    at: Any = now
    wall: Any = now + run.wall_offset
    cause: Any = None
    cause_of: Any = None
    # A run whose tasks need none (``plain_graph.free_links``: its consumers are its
    # dependencies, the one dict, every task's none) has no consumer to look up a row.
    linked = run.consumers is not run.effective_deps
    # The run's tally and the owner's counters take the table's DONE moves as counts, written at
    # the end (nothing the pass calls reads them; a listener might, so with one each row's go at
    # once, as ``RunState.move`` writes them).
    at_once = run.listener is not None
    # The owner's books of the table's successes (``OwnerBooks.succeeded_on``) and the durations
    # they teach, once for the rows taken since they were last written: ``finish`` gathers them
    # in ``table`` instead of a move's books and a duration call a row (a plain listener's moves
    # go one by one, as ``RunState.move`` tells them).
    table: Table | None = None
    if not at_once and isinstance(run.mover, OwnerBooks):
        table = Table(run, node, run.mover, durations)
    # Every accepted row's copy is ``node``'s: one tuple a table, not one a row (a tuple is
    # never changed in place: a record given another copy or freed gets a new one).
    where = (node,)
    c = run.counters
    tally = run.tally
    from_assigned = 0
    from_running = 0
    answered = False
    i = 0
    try:
        while i < n:
            k = i
            task_id = id_col[k]
            attempt = try_col[k]
            i += 1
            if pending and view.answered(node, (run_id, task_id, attempt)) is not None:
                answered = True
            rec = tasks.get(task_id)
            if rec is None:
                continue
            if timed:
                record_delay(rec.attempts, attempt, began[k], delays)
            old = rec.state
            if rec.attempt != attempt or rec.node != node or (old != ASSIGNED and old != RUNNING):
                if report:  # (stale, another attempt, a duplicate: observed at its place)
                    hist.observe_row(
                        rec.attempts,
                        attempt,
                        node,
                        pids[k],
                        began[k],
                        ended[k],
                        bytes_in[k],
                        size_col[k],
                    )
                continue
            if old == ASSIGNED:
                if at_once:
                    _count(tally, c, 1, 0)
                else:
                    from_assigned += 1
            elif at_once:
                _count(tally, c, 0, 1)
            else:
                from_running += 1
            if table is not None:
                table.learned(rec, took_col[k])
            else:
                durations.observe_keys(rec.duration_key, rec.shape_key, took_col[k])
            if cause_of is None or cause_of != rec.attempt:
                cause = f"succeeded on {node} attempt {rec.attempt}"
                cause_of = rec.attempt
            if report:  # (the report's columns and the close in one row: ``finish`` leaves it)
                hist.done(
                    rec.attempts,
                    attempt,
                    node,
                    pids[k],
                    began[k],
                    ended[k],
                    bytes_in[k],
                    size_col[k],
                    wall,
                    cause,
                )
            finish(
                run,
                rec,
                old,
                where,
                size_col[k],
                value_col[k],
                at,
                wall,
                cause,
                outputs,
                cancels,
                table,
                not report,
                linked,
            )
            if run.state != RUN_RUNNING:
                break
    finally:
        if report:  # (the rows after the run's end: observed, before they go one by one)
            observe(run, node, ids, tries, sizes, pids, began, ended, bytes_in, delays, i)
        _count(tally, c, from_assigned, from_running)
        if table is not None:
            table.flush()
    return i, answered


def record_delay(trail: list[Any], attempt: Any, began: float, delays: list[float]) -> None:
    """The time from ``attempt``'s dispatch to its start ``began`` (when both are known) to
    ``delays``, read before the report's row is written: counted when ``trail``'s newest row is
    that attempt's (``history.dispatch_delays``' rule; a report of an attempt the trail lacks
    appends a row without a dispatch time, so a later report of the task in the same table,
    met after it, counts none, as that rule's set of such tasks said)."""
    n = len(trail)
    if n:
        last = trail[n - 1]
        first = last[0]
        if first is attempt or first == attempt:  # (a small int is one object: no compare)
            was = last[3]
            if began and was:  # (``max(0.0, ...)``, NaN too, without its call)
                took = began - was
                delays.append(took if took > 0.0 else 0.0)


def observe(
    run: RunState,
    node: str,
    ids: Any,
    tries: Any,
    sizes: Any,
    pids: Any,
    began: Any,
    ended: Any,
    bytes_in: Any,
    delays: Any = None,
    start: int = 0,
) -> None:
    """Each row's report columns from ``start`` on in its task's history
    (``history.observe_row``), in report order, unknown tasks skipped, and its dispatch delay to
    ``delays`` (a list, or None: ``record_delay``): a table with its report columns that ``apply``
    does not take (the run not running or not ours to move, the node dead), before its rows go
    one by one, and the rows ``apply`` leaves after the run's end."""
    tasks = run.tasks
    timed = delays is not None
    for k in range(start, len(ids)):
        rec = tasks.get(ids[k])
        if rec is not None:
            trail = rec.attempts
            if timed:
                record_delay(trail, tries[k], began[k], delays)
            hist.observe_row(
                trail, tries[k], node, pids[k], began[k], ended[k], bytes_in[k], sizes[k]
            )


class Table:
    """What a success table's accepted rows leave to be written once (``flush``), in row order:
    the owner's books of their DONE moves (``OwnerBooks.succeeded_on``: the replication feed,
    the node's demand, the lost messages' watch) and what they teach the learned durations
    (``Durations.observe_block``, a block a run of rows of one cost shape). ``flush`` runs before
    anything of the table reads them: before a consumer turns ready (its placement check reads
    the books) and at the table's end."""

    def __init__(self, run: RunState, node: str, books: OwnerBooks, durations: Any) -> None:
        self.run = run
        self.node = node
        self.books = books
        self.durations = durations
        self.done: list[TaskRecord] = []  # (records whose books are not written yet)
        self.shape: str | None = None  # (the cost shape of ``keys``)
        self.keys: list[str] = []  # (their function keys and seconds, not learned yet)
        self.secs: list[float] = []

    def learned(self, rec: TaskRecord, seconds: float) -> None:
        """``rec``'s attempt ran ``seconds`` (``Durations.observe_keys``, at the next flush)."""
        shape = rec.shape_key
        if shape is not self.shape:  # (an equal string of another object: a block more, same sums)
            if self.keys:
                self._learn()
            self.shape = shape
        self.keys.append(rec.duration_key)
        self.secs.append(seconds)

    def _learn(self) -> None:
        assert self.shape is not None
        self.durations.observe_block(self.keys, self.shape, self.secs)
        self.keys = []
        self.secs = []

    def flush(self) -> None:
        """Write what the rows since the last flush left."""
        if self.keys:
            self._learn()
        if self.done:
            self.books.succeeded_on(self.run, self.node, self.done)
            self.done = []


def _count(tally: dict[str, int], c: dict[str, int] | None, assigned: int, running: int) -> None:
    """``assigned`` ASSIGNED -> DONE and ``running`` RUNNING -> DONE moves in the tally and the
    owner's counters."""
    done = assigned + running
    if not done:
        return
    if assigned:
        tally[ASSIGNED] -= assigned
    if running:
        tally[RUNNING] -= running
    tally[DONE] += done
    if c is not None:
        c[DONE] = c.get(DONE, 0) + done


def finish(
    run: RunState,
    rec: TaskRecord,
    old: str,
    where: tuple[str],
    size: int,
    value: bytes | None,
    at: float,
    wall: float,
    cause: str,
    outputs: bool,
    cancels: list[tuple[str, str, int]],
    table: Table | None = None,
    close: bool = True,
    linked: bool = True,
) -> None:
    """``run.succeeded(rec, ...)`` for ``rec`` out (``old``: ASSIGNED or RUNNING) on the node
    ``where[0]`` at ``at`` (``wall`` on the wall clock), but the tally and counters (``apply``
    counts them). ``table``: ``rec`` is added to its records for its mover's books, written by
    its ``flush``, instead of told to them now; flushed here only before a consumer turns ready.
    ``close``: False when the caller closed the attempt's row already (``history.done``).
    ``linked``: False when no task of the run needs another (no consumer to look up)."""
    rec.size = int(size)
    rec.value = value
    rec.locations = where
    rec.completions += 1
    # The move (``RunState.move`` for old in ACTIVE, new DONE, no cause code): its six fields
    # appended one by one (a tuple a row to extend by was built and freed for nothing).
    rec.state = DONE
    rec.delayed = False
    moves = rec.moves
    moves.append(at)
    moves.append(old)
    moves.append(DONE)
    moves.append(cause)
    moves.append(None)
    moves.append(None)
    if len(moves) > _MOVES_LIMIT:
        del moves[: len(moves) - _MOVES_LIMIT]
    if close:
        hist.succeeded(rec.attempts, rec.attempt, where[0], wall, cause)
    run.remaining -= 1
    unfinished = run.unfinished
    if unfinished:
        for dep in run.effective_deps[rec.id]:
            unfinished[dep] -= 1
    if table is not None:
        table.done.append(rec)
    else:
        if run.mover is not None:
            run.mover.moved(run, rec, old, DONE)
        if run.listener is not None:
            run.listener(run, rec, old, DONE)
    # The rest of ``RunState.succeeded``.
    if outputs:
        run._free_unneeded(rec)
    if linked:
        tasks = run.tasks
        for consumer in run.consumers[rec.id]:
            crec = tasks[consumer]
            if crec.state == PENDING and run._inputs_done(consumer):
                if table is not None:
                    table.flush()
                cancels.extend(run.make_ready(crec, at, INPUTS_READY, False, rec.id))
    if run.remaining == 0 and run.state == RUN_RUNNING:
        run.state = RUN_DONE
        run.finished = wall
