"""The owner's side of replication: which nodes stand by for each run, and the log sent to them.

Design (DESIGN.md 3.5, primary-backup with a per-run log): before the client hears "accepted", the
owner sends each standby a snapshot of the run and waits for their acks: for every standby up to
``accept_timeout``, then for the first ack of any, up to ``accept_limit``. A standby slow to ack
stays a standby (it is alive in our view: a dead one is replaced by the next live node when
membership says so, ``members_changed``, and the accept waits for that one); only after
``accept_limit`` without any ack is the client answered with the run unreplicated (the shell logs
it). Dropping the standbys that missed ``accept_timeout`` answered clients of a loaded cluster with
no replica anywhere, and an owner killed then lost the run. With no live peer the run proceeds
unreplicated. Afterwards every state change a takeover needs
(a task into or out of DONE, into FAILED/CANCELLED; the run's end and release) is marked dirty and
sent once per loop iteration as one numbered batch. Batches carry the *current* state of the dirty
tasks, not operations, so applying a batch twice is harmless and a snapshot at ``seq`` followed by
batch ``seq + 1`` is always consistent. A change that only sends a task out (dispatched, started:
``changed(..., held_at=now)``) is *held* up to ``hold`` seconds: a short task's end comes within
that time and the task goes to the standbys once, as DONE, not twice (ASSIGNED, then DONE). What a
held change would have told a takeover, the nodes' answers tell it (``takeover.merge`` keeps what
still runs); only the history of an attempt lost with the owner in that time is missing. A standby that sees a gap asks for a snapshot; one behind
that acks nothing new for ``resend_after`` gets one unasked (then twice as long for each resent).

Standbys are chosen by rendezvous hashing of (run id, node name) over the live nodes: every node
computes the same order from the same membership view, and a node joining or leaving moves only the
runs it ranks first for. Pure: no I/O, ``now`` passed in; the shell (``daemon.replication``) executes
the instructions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from handoffd.replication import log_blocks

# A gap between two ticks of this many resend_after is our own loop held, not a standby's silence.
STALL_TICKS = 1.5
# Seconds a task's move out to a node (dispatch, start) may wait for its next move before it is
# replicated alone: longer than a short task takes from dispatch to its report on a busy owner, so
# most tasks are replicated once (when done), short against the time a takeover takes.
HOLD = 0.05
# Seconds a submission waits at most for a first standby's ack before its client is answered
# anyway (the run then unreplicated until a standby acks): under the client's own 30 s, so the
# client hears the truth from the owner (its log says so) rather than a timeout.
ACCEPT_LIMIT = 20.0
# A standby still without an ack when its client was answered is resent the snapshot only after
# ``resend_after * 2 ** SLOW_FIRST`` more seconds without one (as if resent twice already).
SLOW_FIRST = 2


def each_move(changes: Iterable[tuple[str, Any, bool]]) -> Iterator[tuple[str, str, bool]]:
    """The scheduler's moves (``tasks_changed``'s entries) one by one, a block's in its order."""
    for run_id, task_id, held in changes:
        if type(task_id) is list:
            for one in task_id:
                yield run_id, one, held
        else:
            yield run_id, task_id, held


def standby_order(run_id: str, names: Iterable[str]) -> list[str]:
    """``names`` in the run's deterministic rendezvous order (highest hash first)."""

    def score(name: str) -> bytes:
        return hashlib.blake2b(f"{run_id}\x00{name}".encode(), digest_size=8).digest()

    return sorted(set(names), key=lambda n: (score(n), n), reverse=True)


@dataclass(frozen=True)
class SendSnapshot:
    """Send ``node`` the run's full state as of log ``seq``."""

    run_id: str
    node: str
    seq: int
    standbys: tuple[str, ...]


@dataclass(frozen=True)
class SendLog:
    """Send batch ``seq`` (the current state of ``task_ids`` and of the run) to ``nodes``."""

    run_id: str
    seq: int
    nodes: tuple[str, ...]
    standbys: tuple[str, ...]
    task_ids: tuple[str, ...]


@dataclass(frozen=True)
class Drop:
    """``node`` is no longer a standby of the run: it should forget its replica."""

    run_id: str
    node: str


@dataclass(frozen=True)
class Accept:
    """Answer the client now: every standby acked the initial snapshot, or some did (``standbys``,
    those that did) and the wait for the others is over (``ReplicationLog._maybe_accept``)."""

    run_id: str
    standbys: tuple[str, ...]


@dataclass
class _Primary:
    run_id: str
    standbys: list[str]  # takeover order
    seq: int = 0  # last batch sent
    acked: dict[str, int] = field(default_factory=dict)  # standby -> highest seq applied
    sent_at: dict[str, float] = field(default_factory=dict)  # standby -> last snapshot sent
    # standby behind the last seq -> (the seq it had acked, since when, snapshots resent since):
    # no further ack for resend_after * 2 ** resent: resend (``ReplicationLog.tick``)
    awaiting: dict[str, tuple[int, float, int]] = field(default_factory=dict)
    accepting_until: float | None = None  # waiting for every standby's first ack until then
    accept_by: float = 0.0  # ... and for any standby's until then (``accept_limit``)
    # tasks changed since their last batch -> None (dirty: goes with the next flush) or the time
    # it is held from (``changed(held_at=...)``, a task already here keeping its value); the held
    # ones in time order (``log_blocks``), the batch in the dict's order
    changes: dict[str, float | None] = field(default_factory=dict)
    run_dirty: bool = False


class ReplicationLog:
    """Standby sets and replication logs of the runs this node owns."""

    def __init__(
        self,
        node_name: str,
        replicas: int,
        *,
        accept_timeout: float = 2.0,
        accept_limit: float = ACCEPT_LIMIT,
        resend_after: float = 1.0,
        hold: float = HOLD,
    ) -> None:
        self.node_name = node_name
        self.replicas = replicas
        self.accept_timeout = accept_timeout
        self.accept_limit = accept_limit
        self.resend_after = resend_after
        self.hold = hold
        self._runs: dict[str, _Primary] = {}
        # The same dict, read by the shell (``daemon.replication``) before it calls in: a run not
        # in it (a short run answered before its replication delay, never tracked) has nothing
        # here to change, untrack or look up, and most one-task calls are such runs.
        self.tracking: Mapping[str, object] = self._runs
        # Runs stay tracked after they end, so flush() and tick() walk only these (insertion-ordered
        # sets), not every run ever owned: runs with unsent changes, and runs tick() must look at
        # (accepting, or some standby short of the last seq or awaited). Outside ``_watch`` tick()
        # would do nothing for a run.
        self._dirty: dict[str, None] = {}
        self._watch: dict[str, None] = {}
        # runs that may hold changes: every run that does (one whose held ones went is dropped
        # when ``due`` or a release finds it holds none)
        self._holding: dict[str, None] = {}
        self._last_tick: float | None = None

    def standbys(self, run_id: str) -> tuple[str, ...]:
        primary = self._runs.get(run_id)
        return tuple(primary.standbys) if primary is not None else ()

    def tracked(self, run_id: str) -> bool:
        return run_id in self._runs

    def choose(self, run_id: str, alive: Iterable[str]) -> list[str]:
        peers = [n for n in alive if n != self.node_name]
        return standby_order(run_id, peers)[: self.replicas]

    def track(self, run_id: str, alive: Iterable[str], now: float, *, accept: bool) -> list[object]:
        """Start replicating a run we now own; with ``accept`` an ``Accept`` follows the acks."""
        primary = _Primary(run_id, self.choose(run_id, alive))
        self._runs[run_id] = primary
        self._watch[run_id] = None
        out: list[object] = [self._snapshot(primary, n, now) for n in primary.standbys]
        if accept:
            if primary.standbys:
                primary.accepting_until = now + self.accept_timeout
                primary.accept_by = now + self.accept_limit
            else:
                out.append(Accept(run_id, ()))
        return out

    def untrack(self, run_id: str) -> list[object]:
        primary = self._runs.pop(run_id, None)
        if primary is None:  # (``_dirty``, ``_watch`` and ``_holding`` name tracked runs only)
            return []
        self._dirty.pop(run_id, None)
        self._watch.pop(run_id, None)
        self._holding.pop(run_id, None)
        return [Drop(run_id, n) for n in primary.standbys]

    def changed(
        self, run_id: str, task_id: str | None = None, held_at: float | None = None
    ) -> bool:
        """A task (or, with None, the run itself) changed in a way standbys must learn; False
        (nothing to do) when the run is not tracked. ``held_at`` (now): the task only went out to
        a node; it goes with the first flush ``hold`` seconds later, or with the next flush after
        a change without ``held_at``, whichever comes first (``due``)."""
        primary = self._runs.get(run_id)
        if primary is None:
            return False
        if task_id is None:
            primary.run_dirty = True
        elif held_at is not None:
            if task_id not in primary.changes:
                primary.changes[task_id] = held_at
                self._holding[run_id] = None
            return True
        else:
            primary.changes[task_id] = None
        self._dirty[run_id] = None
        return True

    def tasks_changed(self, changes: list[tuple[str, Any, bool]], now: float) -> list[bool]:
        """``changed`` for each (run_id, task_id, held) of one scheduler batch in order, held ones
        at ``now``; returns the kinds (True: held) that hit a tracked run, in the order each first
        did: all a flush's timing depends on (a repeat of a kind changes no timer). An entry whose
        ``task_id`` is a list is a block (a dispatch block's or a success table's moves, one run
        and kind: ``OwnerBooks``): its ids are applied by one dict call each, and the batch in
        one compiled loop (``log_blocks.feed``), not a Python step a move or block."""
        return log_blocks.feed(self._runs, changes, now, self._holding, self._dirty)

    def due(self) -> float | None:
        """When the oldest held change must be flushed (None: none held)."""
        first = None
        for run_id in list(self._holding):
            since = log_blocks.first_held(self._runs[run_id].changes)
            if since is None:
                del self._holding[run_id]  # (its held changes went dirty or out)
            elif first is None or since < first:
                first = since
        return None if first is None else first + self.hold

    def flush(self, limit: int | None = None, now: float | None = None) -> list[object]:
        """One batch per run with changes since the last flush, of at most ``limit`` tasks (None:
        all) in the order of the run's ``changes`` (a task dirty from held where it was held, one
        dirty from nothing last): what is left stays dirty for the next flush
        (``pending``). A batch carries every
        listed task's current state and the run's, so splitting a flush is as good as waiting.
        Held changes go when ``hold`` old by ``now`` (None: all of them go now)."""
        out: list[object] = []
        runs, self._dirty = self._dirty, {}
        holding = self._holding
        cutoff = None if now is None else now - self.hold
        for run_id in holding:  # (after the dirty runs: theirs become dirty in this flush)
            if run_id not in runs:
                # (a run with no dirty task whose oldest held one is not due has nothing to go:
                # its walk would copy every held one for nothing, a flush every 10 ms)
                since = log_blocks.first_held(self._runs[run_id].changes)
                if since is None or cutoff is None or not since > cutoff:
                    runs[run_id] = None
        for run_id in runs:
            primary = self._runs[run_id]
            tasks, primary.changes, left = log_blocks.take(primary.changes, limit, cutoff)
            if left & 1:
                self._dirty[run_id] = None
            if not left & 2:
                holding.pop(run_id, None)
            if not tasks and not primary.run_dirty:
                continue
            primary.seq += 1
            self._watch[run_id] = None
            primary.run_dirty = False
            if primary.standbys:
                standbys = tuple(primary.standbys)
                out.append(SendLog(primary.run_id, primary.seq, standbys, standbys, tasks))
        return out

    def pending(self) -> bool:
        """Changes wait for a flush (left by a ``limit``)."""
        return bool(self._dirty)

    def on_ack(
        self, run_id: str, node: str, seq: int, need_snapshot: bool, now: float
    ) -> list[object]:
        primary = self._runs.get(run_id)
        if primary is None or node not in primary.standbys:
            return []
        if need_snapshot:
            return [self._snapshot(primary, node, now)]
        primary.acked[node] = max(primary.acked.get(node, -1), seq)
        return self._maybe_accept(primary, now)

    def members_changed(self, alive: Iterable[str], now: float) -> list[object]:
        """Re-choose standbys: newcomers get a snapshot, those left out are told to drop."""
        alive = list(alive)
        out: list[object] = []
        for primary in self._runs.values():
            wanted = self.choose(primary.run_id, alive)
            if wanted == primary.standbys:
                continue
            live = set(alive)
            for gone in primary.standbys:
                if gone not in wanted:
                    primary.acked.pop(gone, None)
                    primary.sent_at.pop(gone, None)
                    primary.awaiting.pop(gone, None)
                    if gone in live:
                        out.append(Drop(primary.run_id, gone))
            new = [n for n in wanted if n not in primary.standbys]
            primary.standbys = wanted
            self._watch[primary.run_id] = None
            out += [self._snapshot(primary, n, now) for n in new]
            out += self._maybe_accept(primary, now)
        return out

    def tick(self, now: float) -> list[object]:
        """Drop standbys that missed the accept deadline; resend snapshots to laggards."""
        out: list[object] = []
        # After a tick that came STALL_TICKS resend_after late (our own loop held: one resend's
        # encoding takes seconds for a big run) every standby's silence is timed anew: its acks
        # were waiting to be read, and the other standbys were resent the run too.
        last, self._last_tick = self._last_tick, now
        if not self._watch:  # (the rule between runs, and for short runs: none tracked)
            return out
        held = last is not None and now - last >= STALL_TICKS * self.resend_after
        for run_id in list(self._watch):
            primary = self._runs[run_id]
            if primary.accepting_until is not None:
                # Until the client is answered, no resends: a big run's snapshot (30 MB for
                # 200,000 tasks) takes a loaded standby more than resend_after to take, and a
                # copy resent meanwhile queued ahead of the batches that follow it.
                out += self._maybe_accept(primary, now)
                continue
            for node in primary.standbys:
                acked = primary.acked.get(node, -1)
                mark = primary.awaiting.get(node)
                if acked >= primary.seq:
                    primary.awaiting.pop(node, None)
                elif mark is None or acked > mark[0]:
                    # Behind but moving: batches arrive in order and a gap is asked for by the
                    # standby itself, so only a standby whose acks stopped is resent a snapshot.
                    # One merely slow (a big run's batches on a loaded machine) was resent one
                    # every second, each a whole run encoded on the loop (2-3 s for 200,000
                    # tasks) and applied again on the standby, which put it further behind.
                    # (the resends so far still count until it has caught up: its ack of a
                    # resent snapshot is progress, and was the only progress it made)
                    primary.awaiting[node] = (acked, now, mark[2] if mark is not None else 0)
                elif held:
                    primary.awaiting[node] = (acked, now, mark[2])
                elif now - mark[1] >= self.resend_after * (1 << min(mark[2], 6)):
                    # Still no ack: another snapshot, waiting twice as long for each one resent
                    # (a standby applying a big one takes longer than resend_after).
                    primary.awaiting[node] = (acked, now, mark[2] + 1)
                    out.append(self._snapshot(primary, node, now))
            if (
                primary.accepting_until is None
                and not primary.awaiting
                and all(primary.acked.get(n, -1) >= primary.seq for n in primary.standbys)
            ):
                del self._watch[run_id]  # caught up: nothing for tick() until the next change
        return out

    def _snapshot(self, primary: _Primary, node: str, now: float) -> SendSnapshot:
        primary.sent_at[node] = now
        return SendSnapshot(primary.run_id, node, primary.seq, tuple(primary.standbys))

    def _maybe_accept(self, primary: _Primary, now: float) -> list[object]:
        """``Accept`` once every standby acked, or (``now`` past ``accept_timeout``) any one of
        them, or (past ``accept_limit``) none: the standbys stay as they are."""
        until = primary.accepting_until
        if until is None:
            return []
        acked = tuple(n for n in primary.standbys if primary.acked.get(n, -1) >= 0)
        if len(acked) == len(primary.standbys) or now >= (until if acked else primary.accept_by):
            primary.accepting_until = None
            for node in primary.standbys:
                if node not in acked:
                    # Still taking the first snapshot (seconds for a big one on a loaded
                    # machine): a copy resent in a second would only queue behind it.
                    primary.awaiting[node] = (-1, now, SLOW_FIRST)
            return [Accept(primary.run_id, acked)]
        return []
