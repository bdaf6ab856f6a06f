# cython: annotation_typing=False
# (the annotations are for mypy; run.pxd beside it gives the compiled build its C types)
"""One run's task states and the task state machine (section 3.5 of DESIGN.md).

Design (distributed's worker_state_machine): every task state change goes through ``RunState.move``,
which checks the one table of legal moves (``TRANSITIONS``), appends to the task's history and tells a
listener (the owner keeps its books on each node's outstanding demand and its ready queue in step with
it). An illegal move raises ``InvalidTransition`` carrying the task's history. Nothing here does I/O or
reads a clock: ``now`` is an argument and only ends up in histories.

The graph (checked dependencies, inline functions resolved to ``effective_deps``, collocation groups,
ranks) is built once by ``graph.build_graph``; the dispatch carries nested ``InlineRef``s so the
consumer re-runs inline functions.

Attempts: ``attempt`` numbers dispatches (1 for the first), so a report names exactly one dispatch and a
stale one is ignored. ``failures`` counts the task's own errors (retries), ``losses`` the attempts lost
to the cluster (node lost, cancelled by the node, result copy lost); both are capped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from handoffd.errors import HandoffError
from handoffd.scheduler import history as hist
from handoffd.scheduler import run_checks, run_losses, run_snapshot
from handoffd.scheduler.durations import shape_key
from handoffd.scheduler.events import InlineRef, InputRef, ValueRef
from handoffd.scheduler.graph import Order, TaskGraph, build_graph
from handoffd.scheduler.history import DISPATCHED_TO, INPUTS_READY
from handoffd.scheduler.run_books import YIELD_EVERY, let_go
from handoffd.scheduler.run_losses import EXTRA_LOSSES  # noqa: F401 - re-exported
from handoffd.scheduler.states import (  # noqa: F401 - re-exported: the run's vocabulary
    ACTIVE,
    ASSIGNED,
    CANCELLED,
    DONE,
    FAILED,
    PENDING,
    READY,
    RUN_CANCELLED,
    RUN_DONE,
    RUN_FAILED,
    RUN_RUNNING,
    RUNNING,
    TASK_STATES,
    TERMINAL,
    TRANSITIONS,
    InvalidTransition,
)
from handoffd.spec import RunOptions, TaskSpec

# An instance made empty and a field stored as its class's own ``__init__`` would: the Python
# calls here, one C call each in the compiled build (run.pxd cimports them by these names, as
# ``plain_graph`` does; the pure build's stand in through ``globals()``).
if TYPE_CHECKING:
    _make: Callable[[type], Any]
    _store: Callable[[object, str, object], None]
globals().setdefault("_make", object.__new__)
globals().setdefault("_store", object.__setattr__)

HISTORY_LIMIT = 64
_MOVES_LIMIT = HISTORY_LIMIT * hist.STRIDE
#: A run taken over at term t numbers new attempts above t * ATTEMPT_STRIDE, so they never collide
#: with attempts the previous owner dispatched but did not replicate (attempt 1000001 = term 1, #1).
ATTEMPT_STRIDE = 1_000_000


def backoff(failures: int) -> float:
    """Delay before retry number ``failures`` (1-based): 50 ms doubling, capped at 2 s."""
    return float(min(0.05 * (2 ** max(0, failures - 1)), 2.0))


class TaskRecord:
    """One task of a run as its owner keeps it (a C class when compiled with ``run.pxd``)."""

    __slots__ = (
        "spec",
        "id",
        "position",
        "upward_rank",
        "state",
        "attempt",
        "node",
        "failures",
        "losses",
        "completions",
        "size",
        "value",
        "locations",
        "delayed",
        "last_error",
        "moves",
        "attempts",
        "order",
        "queued",
        "in_heap",
        "cost_items",
        "shape_key",
        "duration_key",
        "charge",
        "cost",
        "pin",
    )

    def __init__(
        self,
        spec: TaskSpec,
        position: int,
        upward_rank: float,
        cost_items: tuple[tuple[str, float], ...] = (),
    ) -> None:
        self.spec = spec
        self.id: str = spec.id  # (a field: every move, dispatch and report reads it)
        self.position = position  # rank in the run's ready order (priority, upward rank, size)
        self.upward_rank = upward_rank
        self.state = PENDING
        self.attempt = 0  # number of the latest dispatch; 0 = never dispatched
        # node of the latest dispatch (where it is outstanding while ACTIVE)
        self.node: str | None = None
        self.failures = 0  # own errors so far (each consumes a retry)
        self.losses = 0  # attempts lost to the cluster
        self.completions = 0  # times it reached DONE (> 1 after a lineage recompute)
        self.size = 0  # bytes of the result
        self.value: bytes | None = None  # the owner's own copy of a small result
        # Live nodes holding a copy (DONE only), each once. A tuple of strings, untracked by the
        # collector: a big run's finished tasks add nothing to its owner's full collections.
        self.locations: tuple[str, ...] = ()
        self.delayed = False  # READY but held back (retry backoff or refused dispatch)
        self.last_error: tuple[str, str, str] = ("", "", "")  # exc_type, message, traceback
        # Its transitions, flat (``history.STRIDE`` atoms a move; ``history`` reads tuples).
        self.moves: list[Any] = []
        self.attempts: list[tuple[Any, ...]] = []  # rows of atoms: see scheduler.history
        # The owner's ready queue (``ready.ReadyQueue``): its index in ``RunState.ordered``
        # (the run's placement order), whether it is queued, whether it is in the run's heap.
        self.order = 0
        self.queued = False
        self.in_heap = False
        self.cost_items = cost_items  # the spec's cost as a hashable shape
        # Its keys in the owner's learned durations, built once (see scheduler.durations).
        self.shape_key: str = shape_key(cost_items)
        self.duration_key: str = self.shape_key + spec.id
        # The work (expected seconds x share of its node) charged to its node while ACTIVE
        # (``ClusterView.work``): what is taken back when it leaves, whatever was learned since.
        self.charge = 0.0
        # The spec's cost dict and pinned node as fields: the hot paths read them a task sent.
        self.cost: dict[str, float] = spec.cost
        self.pin: str | None = spec.node

    def has_copy(self) -> bool:
        return self.value is not None or bool(self.locations)

    @property
    def history(self) -> list[tuple[float, str, str, str]]:
        """Its (time, old, new, cause) transitions, the newest ``HISTORY_LIMIT``."""
        return hist.transitions(self.moves)

    @history.setter
    def history(self, value: Iterable[tuple[float, str, str, str]]) -> None:
        self.moves = hist.flat(value)


def new_record(
    spec: TaskSpec,
    position: int,
    upward_rank: float,
    cost_items: tuple[tuple[str, float], ...],
    skey: str,
    cost: dict[str, float] | None = None,
    pinless: bool = False,
) -> TaskRecord:
    """A record as ``TaskRecord(spec, position, upward_rank, cost_items)`` builds it, its shape
    key given (one a cost shape), ``cost`` the spec's cost if read already, ``pinless``: no pin
    (``RunState.alike``: its ``node``, a class default, the slowest read, not read). Compiled, a
    C call writing C fields: a keyword call and ``__init__`` were most of a run's build."""
    rec = TaskRecord.__new__(TaskRecord)
    rec.spec = spec
    rec.id = spec.id
    rec.position = position
    rec.upward_rank = upward_rank
    rec.state = PENDING
    rec.attempt = 0
    rec.node = None
    rec.failures = 0
    rec.losses = 0
    rec.completions = 0
    rec.size = 0
    rec.value = None
    rec.locations = ()
    rec.delayed = False
    rec.last_error = ("", "", "")
    rec.moves = []
    rec.attempts = []
    rec.order = 0
    rec.queued = False
    rec.in_heap = False
    rec.cost_items = cost_items
    rec.shape_key = skey
    rec.duration_key = skey + rec.id
    rec.charge = 0.0
    rec.cost = spec.cost if cost is None else cost
    rec.pin = None if pinless else spec.node
    return rec


def _build_records(run: RunState, graph: TaskGraph) -> None:
    """``run``'s task records from ``graph``: ``tasks`` (in ``graph.regular``'s order) and
    ``ordered`` (placement order, each record's ``order`` its index there). A C function with C
    loop counters when compiled (``__init__``'s were Python ints, a division a task)."""
    tasks = run.tasks
    records = []
    # A cost's items made once for the tasks that share its dict (``plain_graph``'s specs).
    last_cost: Any = None
    cost_items: tuple[tuple[str, float], ...] = ()
    skey = ""
    positions, ranks, regular = graph.position, graph.upward_rank, graph.regular
    every = YIELD_EVERY
    pinless = run.alike is not None
    for i in range(len(regular)):
        s = regular[i]
        cost = s.cost
        if cost is not last_cost:
            last_cost = cost
            cost_items = tuple(cost.items())
            skey = shape_key(cost_items)
        rec = new_record(s, positions[i], ranks[i], cost_items, skey, cost, pinless)
        tasks[rec.id] = rec
        records.append(rec)
        if i % every == every - 1:
            # (a big run is built in a thread: compiled, this loop never lets the GIL go)
            let_go()
    ordered = run.ordered
    placement = graph.placement_order
    for at in range(len(placement)):
        i = placement[at]
        rec = records[i]
        rec.order = at
        ordered.append(rec)
        if at % every == every - 1:
            let_go()  # (as above)


Listener = Callable[["RunState", TaskRecord, str, str], None]
_NO_TALLY = dict.fromkeys(TASK_STATES, 0)


class MoveListener:
    """Told of each task move of the runs it is the ``mover`` of (the owner's scheduler): a C base
    class when compiled, so a run tells its owner of a move with one C call, no Python call."""

    def moved(self, run: RunState, rec: TaskRecord, old: str, new: str) -> None:
        """``rec`` of ``run`` went from ``old`` to ``new`` (after the run's own books)."""


class RunState:
    """The task states of one run over its graph; the owner drives it and keeps its books in step
    through ``mover`` (or a plain ``listener`` callable: tests)."""

    def __init__(
        self,
        run_id: str,
        specs: Iterable[TaskSpec],
        options: RunOptions,
        *,
        seq: int = 0,
        term: int = 0,
        order: Order | None = None,
        graph: TaskGraph | None = None,  # built already (off the loop) from these specs
        alike: tuple[int, str] | None = None,
    ) -> None:
        self.run_id = run_id
        self.options = options
        self.seq = seq  # submission order on this owner: ties between runs go to the older
        self.term = term
        self.state = RUN_RUNNING
        self.error: HandoffError | None = None
        self.released = False  # the client has all it wants: lost copies are no longer recomputed
        self.attempt_floor = 0  # new attempts are numbered above this (term * ATTEMPT_STRIDE)
        self.holders: set[str] = set()  # live nodes whose store may hold results of this run
        self.listener: Listener | None = None
        self.mover: MoveListener | None = None  # (told before ``listener``; the owner uses this)
        # Wall clock = now + wall_offset (the owner sets it); submitted/finished are wall clock.
        self.wall_offset = 0.0
        self.submitted = 0.0
        self.finished = 0.0
        # Moves by new state, plus retried/lost and dispatches per policy: the owner's counters
        # (shared by its runs, read by /metrics; a key is there once counted); None outside an owner.
        self.counters: dict[str, int] | None = None
        self._policy_key = "policy:" + options.policy
        self.specs: list[TaskSpec] = list(specs)
        if graph is None:
            graph = build_graph(self.specs, options.outputs, order)
        # The graph, fixed for the run's life (``graph.TaskGraph``).
        self.inline = graph.inline
        self.effective_deps = graph.effective_deps
        self.consumers = graph.consumers
        self.group_members = graph.group_members
        self.group_of = graph.group_of
        self.group_pin = graph.group_pin
        self.wanted = graph.wanted
        self.group_node: dict[str, str | None] = dict(graph.group_pin)  # where each group runs
        # The (priority, argument inclusion) of every task, none needing another, pinned or
        # timed (``intake_columns.run_alike``; ``Placed.add_all``); None: each spec says.
        self.alike = alike
        self.tasks: dict[str, TaskRecord] = {}
        self.ordered: list[TaskRecord] = []
        _build_records(self, graph)
        self.remaining = len(self.tasks)  # regular tasks not DONE
        # Regular tasks per state, and each task's latest dispatch's node, kept as they move.
        self.tally: dict[str, int] = dict(_NO_TALLY)  # (a copy: fromkeys set each key)
        self.tally[PENDING] = len(self.tasks)
        self.placed: dict[str, str] = {}
        # Consumers not DONE per task, kept only when values may be freed (outputs given).
        self.unfinished: dict[str, int] = (
            {tid: len(users) for tid, users in self.consumers.items()}
            if options.outputs is not None
            else {}
        )
        # ``ordered``: the tasks in placement order; the owner's ready queue keeps indices into it,
        # so comparing two tasks is comparing ints: ``ready_line`` from ``ready_at`` on, ascending
        # (what came in order), and the heap ``ready_heap`` (what did not): ``ready._entry_push``.
        self.ready_heap: list[int] = []
        self.ready_line: list[int] = []
        self.ready_at = 0
        # How many of ``ordered`` were taken in (``take_in``): those past it wait PENDING.
        self.intake = 0
        # What was worked out off the loop for its intake (``intake.Prebuilt``); None: not.
        self.prebuilt: Any = None
        # Values nobody needs any more, not yet deleted on their holders: (task id, holders).
        self.freed: list[tuple[str, tuple[str, ...]]] = []
        # Once ended: why, and the first of ``ordered`` not closed yet (its length: none left).
        self.end_reason = ""
        self.closing = len(self.ordered)

    def group_cost(
        self, task_id: str, states: tuple[str, ...] = (PENDING, READY)
    ) -> dict[str, float]:
        """Summed cost of the task's collocation group members in ``states`` (the task itself always)."""
        gid = self.group_of.get(task_id)
        members = self.group_members[gid] if gid is not None else [task_id]
        total: dict[str, float] = {}
        for m in members:
            rec = self.tasks[m]
            if m == task_id or rec.state in states:
                for kind, qty in rec.spec.cost.items():
                    total[kind] = total.get(kind, 0.0) + qty
        return total

    def pin_of(self, task_id: str) -> str | None:
        """The node this task must run on: its own pin, its group's pin or its group's chosen node."""
        pin = self.tasks[task_id].spec.node
        if pin is not None:
            return pin
        gid = self.group_of.get(task_id)
        return self.group_node.get(gid) if gid is not None else None

    def max_retries(self, rec: TaskRecord) -> int:
        r = rec.spec.max_retries
        return self.options.max_retries if r is None else r

    # -- moves ---------------------------------------------------------------------------------

    def move(
        self,
        rec: TaskRecord,
        new: str,
        now: float,
        cause: Any,
        delayed: bool = False,
        a: Any = None,
        b: Any = None,
    ) -> None:
        """``cause``: its text, or a ``history`` code whose text is built from ``a`` and ``b``
        only when read (``history.cause_text``)."""
        old = rec.state
        if new not in TRANSITIONS[old]:
            raise InvalidTransition(self.run_id, rec.id, old, new, rec.history)
        rec.state = new
        rec.delayed = delayed and new == READY
        self.tally[old] -= 1
        self.tally[new] += 1
        moves = rec.moves
        moves.extend((now, old, new, cause, a, b))
        if len(moves) > _MOVES_LIMIT:
            del moves[: len(moves) - _MOVES_LIMIT]
        c = self.counters
        if c is not None:
            # (a plain dict, not a Counter: its item reads and writes are Python-level calls)
            c[new] = c.get(new, 0) + 1
        # (string compares, not tuple searches: a state is one of the interned constants)
        was_out = old == ASSIGNED or old == RUNNING  # (``ACTIVE``)
        if was_out or new == RUNNING:
            # (a start only stamps the attempt: no cause text needed)
            text = "" if new == RUNNING or a is None else hist.cause_text(cause, a, b)
            at = now + self.wall_offset
            hist.moved(rec.attempts, rec.attempt, rec.node, old, new, at, text or cause)
            if c is not None and was_out and (new == READY or new == PENDING):
                key = "retried" if rec.delayed else "lost"
                c[key] = c.get(key, 0) + 1
        if old == DONE:
            self.remaining += 1
            if self.unfinished:
                for dep in self.effective_deps[rec.id]:
                    self.unfinished[dep] += 1
        if new == DONE:
            self.remaining -= 1
            if self.unfinished:
                for dep in self.effective_deps[rec.id]:
                    self.unfinished[dep] -= 1
        if self.mover is not None:
            self.mover.moved(self, rec, old, new)
        if self.listener is not None:
            self.listener(self, rec, old, new)

    def start(self, now: float, limit: int | None = None) -> bool:
        """Move the tasks without dependencies to READY (the run was just accepted), the first
        ``limit`` of ``ordered`` only when given (0: none yet); True if ``take_in`` must go on."""
        self.submitted = now + self.wall_offset
        if not self.ordered:
            self.state = RUN_DONE
            self.finished = self.submitted
        return self.take_in(now, limit)

    def take_in(self, now: float, limit: int | None = None) -> bool:
        """The next ``limit`` tasks of ``ordered`` (all when None) past ``intake``: those without
        dependencies to READY, in placement order. True while some are left: a big run enters the
        ready queue in slices, the owner's loop free in between (issue 19: no stall)."""
        ordered, deps = self.ordered, self.effective_deps
        end = len(ordered) if limit is None else min(len(ordered), self.intake + limit)
        for at in range(self.intake, end):
            rec = ordered[at]
            if rec.state == PENDING and not deps[rec.id]:
                self.move(rec, READY, now, "submitted")
        self.intake = end
        return end < len(ordered)

    def untouched(self) -> bool:
        """Nothing taken in or ended yet: every task as built (``prebuilt`` still holds)."""
        return self.intake == 0 and self.state == RUN_RUNNING

    def inputs_ready(self, task_id: str) -> bool:
        # (loops, not generator expressions: a compiled cpdef method may hold no closure)
        for d in self.effective_deps[task_id]:
            drec = self.tasks[d]
            if drec.state != DONE or not drec.has_copy():
                return False
        return True

    def make_ready(
        self, rec: TaskRecord, now: float, cause: Any, delayed: bool = False, a: Any = None
    ) -> list[tuple[str, str, int]]:
        """Move ``rec`` to READY (PENDING while an input is unfinished) and recompute any input whose
        copies were all lost, which sends ``rec`` back to PENDING (``cause``, ``a``: as ``move``'s).

        Returns the (node, task_id, attempt) dispatches to cancel as a side effect.
        """
        deps = [self.tasks[d] for d in self.effective_deps[rec.id]]
        target = READY
        for drec in deps:
            if drec.state != DONE:
                target = PENDING
                break
        if rec.state != target:
            self.move(rec, target, now, cause, delayed, a)
        cancels: list[tuple[str, str, int]] = []
        for drec in deps:
            if drec.state == DONE and not drec.has_copy():
                cancels.extend(self._recompute(drec, now))
        return cancels

    def assign(self, rec: TaskRecord, node: str, now: float) -> None:
        rec.attempt = max(rec.attempt, self.attempt_floor) + 1
        rec.node = node
        self.placed[rec.id] = node
        gid = self.group_of.get(rec.id)
        if gid is not None:
            self.group_node[gid] = node
        hist.opened(rec.attempts, rec.attempt, node, now + self.wall_offset)
        c = self.counters
        if c is not None:
            c[self._policy_key] = c.get(self._policy_key, 0) + 1
        self.move(rec, ASSIGNED, now, DISPATCHED_TO, False, node, rec.attempt)

    def succeeded(
        self, rec: TaskRecord, node: str, size: int, value: bytes | None, now: float
    ) -> list[tuple[str, str, int]]:
        rec.size = int(size)
        rec.value = value
        rec.locations = (node,)
        rec.completions += 1
        self.move(rec, DONE, now, f"succeeded on {node} attempt {rec.attempt}")
        if self.options.outputs is not None:  # (else every task is an output: nothing is freed)
            self._free_unneeded(rec)
        cancels: list[tuple[str, str, int]] = []
        for consumer in self.consumers[rec.id]:
            crec = self.tasks[consumer]
            if crec.state == PENDING and self._inputs_done(consumer):
                cancels.extend(self.make_ready(crec, now, INPUTS_READY, False, rec.id))
        if self.remaining == 0 and self.state == RUN_RUNNING:
            self.state = RUN_DONE
            self.finished = now + self.wall_offset
        return cancels

    def _inputs_done(self, task_id: str) -> bool:
        for d in self.effective_deps[task_id]:
            if self.tasks[d].state != DONE:
                return False
        return True

    def _free_unneeded(self, rec: TaskRecord) -> None:
        """``rec`` just finished: each input (and ``rec`` itself) that is no requested output and
        whose consumers are all DONE is needed by nobody any more. Its copies are dropped here and
        queued in ``freed`` for the owner to delete on their holders. ``_needed`` is then False;
        should a consumer be sent back (lineage recompute of its own lost value), ``make_ready``
        recomputes the freed input first."""
        for tid in (*self.effective_deps[rec.id], rec.id):
            drec = self.tasks[tid]
            if tid in self.wanted or drec.state != DONE or not drec.has_copy():
                continue
            if self.unfinished[tid] == 0:
                if drec.locations:
                    self.freed.append((tid, tuple(sorted(drec.locations))))
                drec.locations = ()
                drec.value = None

    def take_freed(self) -> list[tuple[str, tuple[str, ...]]]:
        """The (task id, holders) freed since the last call (see ``_free_unneeded``)."""
        freed, self.freed = self.freed, []
        return freed

    def end(
        self,
        state: str,
        error: HandoffError | None,
        now: float,
        culprit: str | None = None,
        active: Iterable[str] | None = None,
    ) -> list[tuple[str, str, int]]:
        """Fail or cancel the run: ``culprit`` FAILED, every unfinished task CANCELLED (``close``).
        ``active``: the ids of its ASSIGNED/RUNNING tasks (the owner's books hold them): those
        and the culprit move now, the rest waits for ``close`` (by slices: it held the loop ~0.9 s
        for 1,000,000); None: all now. Returns the active dispatches to cancel on their nodes."""
        self.state = state
        self.error = error
        self.finished = now + self.wall_offset
        self.end_reason = f"run {state.lower()}" + (f" ({culprit})" if culprit else "")
        self.closing = 0
        cancels: list[tuple[str, str, int]] = []
        for task_id in ([culprit] if culprit else []) + list(active or ()):
            rec = self.tasks.get(task_id)
            if rec is None or rec.state in (DONE, FAILED, CANCELLED):
                continue
            if rec.state in ACTIVE and rec.node is not None:
                cancels.append((rec.node, rec.id, rec.attempt))
            self.move(rec, FAILED if rec.id == culprit else CANCELLED, now, self.end_reason)
        if active is None:
            cancels += self.close(now)
        return cancels

    def close(self, now: float, limit: int | None = None) -> list[tuple[str, str, int]]:
        """Cancel the next ``limit`` (None: all) unfinished tasks of ``ordered`` past ``closing``
        of a run that ended (``end``); ``closing`` is then ``len(ordered)``. Returns dispatches
        to cancel on their nodes."""
        ordered = self.ordered
        stop = len(ordered) if limit is None else min(len(ordered), self.closing + limit)
        cancels: list[tuple[str, str, int]] = []
        reason = self.end_reason
        c = self.counters
        tally = self.tally
        for at in range(self.closing, stop):
            rec = ordered[at]
            old = rec.state
            if old in (DONE, FAILED, CANCELLED):
                continue
            if old in ACTIVE:  # (not in ``end``'s list: its moves reach the listener as ever)
                if rec.node is not None:
                    cancels.append((rec.node, rec.id, rec.attempt))
                self.move(rec, CANCELLED, now, reason)
                continue
            # Never out (PENDING, READY): no listener, whose only work for such a move is the
            # ready queue (the owner drops the run's entries itself) and the replication log (a
            # standby cancels them itself on the run's end: Replica.run_data).
            rec.state = CANCELLED
            rec.delayed = False
            moves = rec.moves
            moves.extend((now, old, CANCELLED, reason, None, None))
            if len(moves) > _MOVES_LIMIT:
                del moves[: len(moves) - _MOVES_LIMIT]
            tally[old] -= 1
            tally[CANCELLED] += 1
            if c is not None:
                c[CANCELLED] = c.get(CANCELLED, 0) + 1
        self.closing = stop
        return cancels

    # -- losses (``run_losses``) ------------------------------------------------------------------

    def add_copies(self, task_ids: list[str], node: str) -> list[str]:
        return run_losses.add_copies(self, task_ids, node)  # type: ignore[no-any-return]

    def node_lost(
        self, node: str, now: float
    ) -> tuple[list[tuple[str, str, int]], TaskRecord | None]:
        return run_losses.node_lost(self, node, now)  # type: ignore[no-any-return]

    def recompute_needed(self, now: float, among: Any = None) -> list[tuple[str, str, int]]:
        return run_losses.recompute_needed(self, now, among)  # type: ignore[no-any-return]

    def _needed(self, rec: TaskRecord) -> bool:
        return run_losses._needed(self, rec)  # type: ignore[no-any-return]

    def recompute_lost(self, task_ids: tuple[str, ...], now: float) -> list[tuple[str, str, int]]:
        return run_losses.recompute_lost(self, task_ids, now)  # type: ignore[no-any-return]

    def _recompute(self, rec: TaskRecord, now: float) -> list[tuple[str, str, int]]:
        """Lineage: a DONE task lost its only copy while needed; run it again (and what it needs)."""
        cancels: list[tuple[str, str, int]] = []
        if self.state == RUN_DONE:
            self.state = RUN_RUNNING  # an unreleased output was lost: the run reopens
        rec.losses += 1
        rec.locations = ()
        self.move(rec, PENDING, now, "result lost: recompute")
        for consumer in self.consumers[rec.id]:
            crec = self.tasks[consumer]
            if crec.state == READY:
                self.move(crec, PENDING, now, f"input {rec.id} lost")
            elif crec.state == ASSIGNED and crec.node is not None:
                cancels.append((crec.node, crec.id, crec.attempt))
                self.move(crec, PENDING, now, f"input {rec.id} lost before start")
        cancels.extend(self.make_ready(rec, now, "inputs ready for recompute"))
        return cancels

    # -- dispatch contents -----------------------------------------------------------------------

    def input_refs(self, task_id: str) -> tuple[InputRef, ...]:
        spec = self.tasks[task_id].spec if task_id in self.tasks else self.inline[task_id]
        return tuple([self._ref(dep) for dep in spec.deps])

    def _ref(self, dep: str) -> InputRef:
        if dep in self.inline:
            spec = self.inline[dep]
            return InlineRef(dep, spec.payload, spec.argument_inclusion, self.input_refs(dep))
        rec = self.tasks[dep]
        locations = rec.locations
        if type(locations) is not tuple or len(locations) > 1:
            locations = tuple(sorted(locations))  # (one or none: in order already, no copy)
        # Its slots stored as its ``__init__`` stores them, without the Python call.
        ref = _make(ValueRef)  # noqa: F821
        _store(ref, "task_id", dep)  # noqa: F821
        _store(ref, "locations", locations)  # noqa: F821
        _store(ref, "value", rec.value)  # noqa: F821
        return ref

    def input_bytes(self, task_id: str, alive: Callable[[str], bool]) -> dict[str, float]:
        """Bytes of the task's inputs held per live node (those a consumer there would not
        fetch); the placement core's ``prefer`` picks its preferred node from them."""
        held: dict[str, float] = {}
        for dep in self.effective_deps[task_id]:
            drec = self.tasks[dep]
            if drec.value is not None or drec.size <= 0:
                continue
            for where in drec.locations:
                if alive(where):
                    held[where] = held.get(where, 0) + drec.size
        return held

    # -- queries -------------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        out = dict(self.tally)
        if self.closing < len(self.ordered):  # ended, still closing: what is open is cancelled
            out[CANCELLED] += out[PENDING] + out[READY]
            out[PENDING] = out[READY] = 0
        return out

    def placement(self) -> dict[str, str]:
        return dict(self.placed)

    # -- invariants ----------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise AssertionError when an invariant is broken (called by tests after every event)."""
        run_checks.validate_run(self)

    # -- replication -------------------------------------------------------------------------------

    def snapshot(self, history: bool = True) -> dict[str, Any]:
        """The run as plain data (msgpack-able) for standby owners; ``history=False`` leaves
        every task's history empty (what a standby is sent) instead of building it."""
        return run_snapshot.snapshot(self, history)

    @classmethod
    def from_snapshot(
        cls,
        data: dict[str, Any],
        *,
        order: Callable[..., tuple[list[int], list[float]]] | None = None,
    ) -> RunState:
        return run_snapshot.restore(cls, data, order)  # type: ignore[no-any-return]
