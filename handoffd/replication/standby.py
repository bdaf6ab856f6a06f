"""The standby's side: replicas of other owners' runs, the terms seen, and when to take over.

A replica is the run's snapshot as received (the ``RunSnapshot`` frame), the newest
log delta per task since then, the log position ``seq`` it reflects, the owner and the takeover
order of standbys. The standby needs the run's content only to take over, so nothing is unpacked or
applied on arrival: ``Replica.run_data`` rebuilds the run as plain data (what
``OwnerScheduler.restore_run`` takes) when it is needed, equal to applying every batch in order to
the unpacked snapshot (task fields are state-based: the newest delta per task wins, except a DONE
delta without a value, which keeps the value before it). Log batches apply in order; a batch after
a gap is refused with a request for a snapshot (catch-up).

Terms and fencing: ``terms[run]`` is the highest term this node has seen for the run from anyone.
Anything from a lower term is ignored (and answered with the higher term, so a deposed owner steps
down). Learning a higher term from another owner *supersedes* our replica (``new_owner``): it is
kept, now naming the new owner, until the new owner's own state reaches us (its snapshot at its
term replaces it) or it tells us to drop it (it chose other standbys). Until then it is still ours
to take over: dropping it at once lost the run when the new owner died before its first snapshot
reached us (seconds for a big run), although we held all of it.

Takeover rule (one table, ``takeover_due``): the owner is DEAD or LEFT in our view, and every standby
ahead of us in the order is DEAD or LEFT (or unknown) in our view. A SUSPECT is not dead: waiting for
the verdict is what prevents two standbys on the same side from both taking over. A superseded
replica keeps its order (the old owner's): the new owner picked its standbys by the same rendezvous
order (``replication.log.standby_order``) over the nodes alive then, so the order of the nodes
alive is the same in both. Its takeover goes two terms above the new owner's
(``Replica.base_term``): a node that does hold the new owner's state and takes over from it does so
one term above, and two takeovers never share a term (the higher deposes the lower).

Two claims at one term (race19): with inconsistent views of membership (a partition, a false
suspicion) two standbys can each see themselves as the first live one and take the run over at
the same term. Claims are ordered by (term, owner name) (``outranks``): at a tie the higher name
keeps the run and the lower yields (``claims[run]``: the name that holds the highest term seen).
A yielding claimant's snapshot, log batch or drop at that term is refused, and a replica of the
lower claimant is superseded by the higher one, as by a higher term.

Bounded (claims19, issue 19 item 4): any peer can name a run in a log batch or a drop, and every
run this node ever heard of used to keep its entry in ``terms``/``claims``. An entry goes when
its run is forgotten (``forget``: the owner here forgot it; a finished run's replica dropped: its
owner released it), and the entries of runs held here as no replica are kept at most ``limit``:
past it the oldest go (first seen or last raised), never those of a replica held or of a run the
shell keeps (``keep``: owned, being taken over), and ``on_pruned`` says how many went (the shell
logs it: a deposed owner of such a run is no longer refused here). Pure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgpack

from handoffd.protocol.columns import ColumnError, split_frames
from handoffd.protocol.log_columns import read_columns
from handoffd.protocol.messages import ALIVE, SUSPECT, ErrorInfo, ReplicateLog, TaskDelta
from handoffd.protocol.messages_chunks import FarPayload
from handoffd.protocol.rows import CheckedRows, Row, read_packed
from handoffd.protocol.schema import Invalid, struct_record
from handoffd.protocol.snapshot import SnapshotError, attempt_row, decode_run, info_to_data

# (scheduler.run's RUN_FAILED/RUN_CANCELLED and DONE/FAILED/CANCELLED, spelled out: the
# replica's data is plain strings.)
_RUN_ENDED: Final = ("FAILED", "CANCELLED")
_TASK_CLOSED: Final = ("DONE", "FAILED", "CANCELLED")

KEEP: Final = object()  # a delta's value effect: leave the value as it was before the delta

# A task's newest delta is kept as one packed row (``Replica.put``), not as the message's
# objects: a replica of 200,000 tasks kept ~1 million objects the cyclic collector tracks (the
# delta, its tuples, its attempts), each walked by every full collection of the standby, with
# the loop waiting. Bytes are not tracked, and a dict holding only strings, bytes and None is not
# either, so a replica's deltas add nothing to the collector's walks however many there are.
_pack = msgpack.Packer(use_bin_type=True, autoreset=True).pack
# A delta row's fields (``protocol.rows``: TaskDelta's fields in declaration order).
_FIELDS = [f.name for f in dataclasses.fields(TaskDelta)]
_TASK_ID, _STATE, _ATTEMPT, _NODE, _SIZE, _LOCATIONS = (
    _FIELDS.index(n) for n in ("task_id", "state", "attempt", "node", "size", "locations")
)
_FAILURES, _LOSSES, _COMPLETIONS, _FRAME, _ATTEMPTS = (
    _FIELDS.index(n) for n in ("failures", "losses", "completions", "frame", "attempts")
)
_DELTA = struct_record(TaskDelta)

# A log batch kept as it came (``Replica.batches``): its task deltas packed, unchecked (the rows
# as ``Codec(packed=...)`` kept them, or ``ReplicateLog.columns``), its ``frame_sizes``, its
# frames as received (checked: ``columns.check_frames``) and whether the deltas are columns.
Batch = tuple[bytes, bytes, tuple[Any, ...], bool]


def batch_rows(packed: bytes, columns: bool) -> CheckedRows:
    """A kept batch's deltas as checked rows, from either form (``protocol.log_columns``:
    the same rows); raises ``Invalid`` or ``ColumnError`` if malformed."""
    return read_columns(packed) if columns else read_packed(_DELTA, packed)


#: Bytes of batches a replica keeps packed before it folds the oldest into ``deltas`` (or
#: ``FOLD_SNAPSHOTS`` times its snapshot's, if more): what the standby holds beyond one row per task stays bounded, and
#: the folding, one batch per batch received past it, costs what taking each in did before.
FOLD_BYTES = 1 << 20
FOLD_SNAPSHOTS = 2
#: A fold frees memory only where its rows replace a task's delta already folded: a row of a task
#: new to ``deltas`` becomes a dict entry that holds more than its packed bytes did, and a run of
#: one delta a task (W1's: DONE) would pay the fold a task for nothing, then drop it all at its
#: release. So a fold whose rows are mostly new tasks doubles the replica's limit, one whose rows
#: mostly replace halves it again, between the base above and ``1 << FOLD_GROWTH`` times it.
FOLD_GROWTH = 4
_NO_ROWS: Final = b"\x90"  # an empty array: the rows field of a batch sent as columns, packed


def put_rows(
    deltas: dict[str, bytes], values: dict[str, bytes | None], rows: Any, frames: Sequence[Any]
) -> None:
    """Keep each of ``rows`` (a batch's deltas as rows, in order) as its task's newest delta, with
    the task's value after it: None unless DONE, a DONE delta's frame, or (no frame) as before."""
    nframes = len(frames)
    for row in rows:
        task_id = row[_TASK_ID]
        deltas[task_id] = _pack(
            (
                row[_STATE],
                row[_ATTEMPT],
                row[_NODE],
                row[_SIZE],
                row[_LOCATIONS],
                row[_FAILURES],
                row[_LOSSES],
                row[_COMPLETIONS],
                row[_ATTEMPTS],
            )
        )
        at = row[_FRAME]
        if row[_STATE] != "DONE":
            values[task_id] = None
        elif 0 <= at < nframes:
            values[task_id] = bytes(frames[at])


def newest_rows(batches: Any, values: dict[str, bytes | None]) -> dict[str, Row]:
    """Each task's newest row of ``batches`` (``Replica.batches``, oldest first), read with the
    checks of ``fold`` but not packed again: for a reader that takes the rows at once
    (``Replica.run_data``, ``replica_status.count``); ``values`` updated as ``put_rows`` would.
    Raises ``Invalid`` or ``ColumnError`` as ``fold``."""
    newest: dict[str, Row] = {}
    for packed, sizes, frames, columns in batches:
        rows = batch_rows(packed, columns)
        frames = split_frames(sizes, list(frames), "ReplicateLog")
        nframes = len(frames)
        for row in rows:
            task_id = row[_TASK_ID]
            newest[task_id] = row
            if row[_STATE] != "DONE":
                values[task_id] = None
            elif 0 <= (at := row[_FRAME]) < nframes:
                values[task_id] = bytes(frames[at])
    return newest


def fold(deltas: dict[str, bytes], values: dict[str, bytes | None], batches: Any) -> int:
    """Apply ``batches`` (``Replica.batches``, oldest first) to ``deltas`` and ``values`` as each
    would have been applied on arrival (``put_rows``); raises ``Invalid`` or ``ColumnError`` if
    one is malformed (its decode would have dropped it). Returns how many rows they held."""
    count = 0
    for packed, sizes, frames, columns in batches:
        rows = batch_rows(packed, columns)
        put_rows(deltas, values, rows, split_frames(sizes, list(frames), "ReplicateLog"))
        count += len(rows)
    return count


@dataclass
class Replica:
    run_id: str
    term: int  # the owner's term
    seq: int  # last log batch applied
    owner: str
    owner_address: str
    standbys: tuple[str, ...]  # takeover order (we are one of them)
    # RunState.snapshot() as encoded, histories stripped (a view of the message when received)
    snapshot: bytes | memoryview = field(repr=False)
    # since the snapshot: task id -> its newest delta packed (``put``), and task id -> the value
    # after it (bytes or None; absent: as in the snapshot, KEEP)
    deltas: dict[str, bytes] = field(default_factory=dict, repr=False)
    values: dict[str, bytes | None] = field(default_factory=dict, repr=False)
    # the batches received since, kept as they came (``keep``): ``deltas`` and ``values`` with
    # them folded in, in order, are the replica's (``settled``); and their size in bytes
    batches: list[Batch] = field(default_factory=list, repr=False)
    kept_bytes: int = 0
    fold_shift: int = 0  # the fold limit is the base's ``1 << fold_shift`` times (``keep``)
    run_fields: tuple[str, bool, ErrorInfo | None] | None = None  # newest (state, released, error)
    # The payloads the snapshot left out (``ReplicaPayloads``) and where the ones pulled here are
    # read from (task id -> the payload, None if not held): put back by ``run_data``.
    far: tuple[FarPayload, ...] = ()
    payload: Callable[[str], Any] | None = field(default=None, repr=False, compare=False)
    # The term of the newer owner ``owner`` now names, whose own state has not reached us yet
    # (``StandbyStore.new_owner``); 0: the replica is the owner's own, at ``term``.
    superseded: int = 0

    def base_term(self) -> int:
        """The term a takeover of this replica goes one above: the replica's own, or one above
        the newer owner's when superseded (see the module's docstring)."""
        return self.superseded + 1 if self.superseded else self.term

    def run_data(self) -> dict[str, Any]:
        """The run as plain data (``RunState.snapshot`` format): the snapshot with the log
        applied. A fresh copy on each call (decodes the snapshot: for takeovers, not per message);
        raises ``SnapshotError`` if the owner sent an invalid one."""
        data: dict[str, Any] = decode_run(self.snapshot)
        if self.far:
            self._fill_payloads(data)
        records = data["tasks"]
        # The batches kept packed are read as rows and each task's newest row applied as it is,
        # not folded into ``deltas`` first (``settled``): that packed every row once more and
        # unpacked it again here.
        batches = list(self.batches)  # (first: see replication_rebuild.frozen)
        values = self.values
        newest: dict[str, Row] = {}
        if batches:
            values = dict(values)
            try:
                newest = newest_rows(batches, values)
            except (Invalid, ColumnError) as exc:
                raise SnapshotError(f"run {self.run_id}: a malformed log batch: {exc}") from None
        for task_id, row in self.deltas.items():
            rec = records.get(task_id)
            if rec is None or task_id in newest:
                continue
            (
                rec["state"],
                rec["attempt"],
                rec["node"],
                rec["size"],
                rec["locations"],
                rec["failures"],
                rec["losses"],
                rec["completions"],
                attempts,
            ) = msgpack.unpackb(row, raw=False)
            if attempts:
                rec["attempts"] = attempts
            value = values.get(task_id, KEEP)
            if value is not KEEP:
                rec["value"] = value
        for task_id, new in newest.items():
            rec = records.get(task_id)
            if rec is None:
                continue
            # (the types the packed delta's unpackb gives: lists for its arrays)
            rec["state"] = new[_STATE]
            rec["attempt"] = new[_ATTEMPT]
            rec["node"] = new[_NODE]
            rec["size"] = new[_SIZE]
            rec["locations"] = list(new[_LOCATIONS])
            rec["failures"] = new[_FAILURES]
            rec["losses"] = new[_LOSSES]
            rec["completions"] = new[_COMPLETIONS]
            attempts = new[_ATTEMPTS]
            if attempts:
                rec["attempts"] = [list(a) for a in attempts]
            value = values.get(task_id, KEEP)
            if value is not KEEP:
                rec["value"] = value
        if self.run_fields is not None:
            state, released, error = self.run_fields
            data["state"] = state
            data["released"] = released
            data["error"] = info_to_data(error)
            if state in _RUN_ENDED:
                # The owner sends no row for a task its run's end cancelled before it ever went
                # out (RunState.end): each task still open here is one of those (every move out
                # and back is logged), so it is cancelled here as it was on the owner.
                for rec in records.values():
                    if rec["state"] not in _TASK_CLOSED:
                        rec["state"] = "CANCELLED"
        return data

    def settled(self) -> tuple[dict[str, bytes], dict[str, bytes | None]]:
        """(deltas, values) with the batches kept packed folded in: the replica's own dicts if
        there are none, else new ones (the replica is left as it is: a rebuild's thread may call
        this while the loop keeps batches). Raises ``SnapshotError`` if a batch is malformed."""
        batches = list(self.batches)  # (first: see replication_rebuild.frozen)
        if not batches:
            return self.deltas, self.values
        deltas, values = dict(self.deltas), dict(self.values)
        try:
            fold(deltas, values, batches)
        except (Invalid, ColumnError) as exc:
            raise SnapshotError(f"run {self.run_id}: a malformed log batch: {exc}") from None
        return deltas, values

    def keep(self, batch: Batch) -> bool:
        """Keep a batch as it came (``StandbyStore.on_log``); past ``FOLD_BYTES`` (or twice the
        snapshot), times what the folds so far said (``FOLD_GROWTH``), fold the oldest into
        ``deltas``. False if one folded is malformed."""
        self.batches.append(batch)
        self.kept_bytes += len(batch[0]) + sum(map(len, batch[2]))
        base = max(FOLD_BYTES, FOLD_SNAPSHOTS * len(self.snapshot))
        deltas = self.deltas
        try:
            while self.kept_bytes > base << self.fold_shift and self.batches:
                oldest = self.batches[0]
                before = len(deltas)
                rows = fold(deltas, self.values, (oldest,))
                del self.batches[0]
                self.kept_bytes -= len(oldest[0]) + sum(map(len, oldest[2]))
                if 2 * (len(deltas) - before) > rows:  # mostly new tasks: it freed nothing
                    self.fold_shift = min(self.fold_shift + 1, FOLD_GROWTH)
                elif self.fold_shift:
                    self.fold_shift -= 1
        except (Invalid, ColumnError):
            return False
        return True

    def settle(self) -> None:
        """Fold every batch kept into ``deltas`` (on the loop, before a delta is put directly);
        raises ``SnapshotError`` as ``settled``."""
        self.deltas, self.values = self.settled()
        self.batches, self.kept_bytes = [], 0

    def put(self, d: TaskDelta, value: Any = KEEP) -> None:
        """Keep ``d`` as its task's newest delta, with the task's value after it (bytes or None;
        ``KEEP``: the value it had before, in an earlier delta or the snapshot)."""
        self.deltas[d.task_id] = _pack(
            (
                d.state,
                d.attempt,
                d.node,
                d.size,
                d.locations,
                d.failures,
                d.losses,
                d.completions,
                [attempt_row(a) for a in d.attempts],
            )
        )
        if value is not KEEP:
            self.values[d.task_id] = value

    def put_row(self, row: Row, value: Any = KEEP) -> None:
        """``put`` of a delta decoded as a row (``protocol.rows``): the same packed bytes."""
        values: dict[str, bytes | None] = {}
        put_rows(self.deltas, values, (row,), ())
        if value is not KEEP:
            self.values[row[_TASK_ID]] = value

    def _fill_payloads(self, data: dict[str, Any]) -> None:
        """Put the payloads pulled here back in the specs the snapshot left them out of; the
        ids of those not held go to ``data["missing_payloads"]`` (their tasks cannot run)."""
        far = {f.task_id for f in self.far}
        missing = []
        for spec in data["specs"]:
            if spec["id"] not in far or spec["payload"]:
                continue
            value = self.payload(spec["id"]) if self.payload is not None else None
            if value is None:
                missing.append(spec["id"])
            else:  # (an assembled value is an mmap: a view packs and pickles like bytes)
                spec["payload"] = value if isinstance(value, bytes) else memoryview(value)
        if missing:
            data["missing_payloads"] = missing

    def missing_payloads(self, held: Callable[[str], bool]) -> list[str]:
        """The ids of the far payloads not held here (``held(task_id)``; code packages, named
        with no task id, are the node's code dir's)."""
        return [f.task_id for f in self.far if f.task_id and not held(f.task_id)]


@dataclass(frozen=True)
class StandbyAck:
    """Tell the owner we applied up to ``seq`` (``need_snapshot``: we saw a gap)."""

    run_id: str
    owner_address: str
    term: int
    seq: int
    need_snapshot: bool


#: Entries of ``terms``/``claims`` kept for runs held as no replica (the module's docstring).
MAX_TERMS: Final = 20_000


def outranks(term: int, owner: str, other_term: int, other_owner: str) -> bool:
    """A claim on a run at (``term``, ``owner``) beats one at (``other_term``, ``other_owner``):
    the total order two takeovers at one term settle by (the module's docstring)."""
    return (term, owner) > (other_term, other_owner)


class StandbyStore:
    def __init__(self, node_name: str, limit: int = MAX_TERMS) -> None:
        self.node_name = node_name
        self.replicas: dict[str, Replica] = {}
        # run -> highest term seen (fencing), oldest first (first seen or last raised)
        self.terms: dict[str, int] = {}
        self.claims: dict[str, str] = {}  # run -> who claims it at that term ("" unknown)
        self.limit = max(1, limit)
        self._prune_at = 0  # 0: at ``limit`` (raised past what ``keep`` holds: stays amortized)
        self.keep: Callable[[str], bool] = lambda run_id: False  # runs the shell still fences
        self.on_pruned: Callable[[int, int], None] = lambda dropped, left: None
        self.pruned = 0  # entries dropped by the limit so far

    def term(self, run_id: str) -> int:
        return self.terms.get(run_id, 0)

    def claimant(self, run_id: str) -> str:
        """Who holds the run at the highest term seen ("": not known)."""
        return self.claims.get(run_id, "")

    def loses(self, run_id: str, term: int, owner: str) -> bool:
        """``owner``'s claim at ``term`` is below one seen: a lower term, or the same term and a
        claimant that outranks it (a tie of two takeovers)."""
        seen = self.terms.get(run_id, 0)
        if term != seen:
            return term < seen
        known = self.claims.get(run_id, "")
        return bool(owner and known and known != owner and known > owner)

    def seen_term(self, run_id: str, term: int, owner: str = "") -> bool:
        """Record a term seen for the run (from ``owner`` if known); True if it is the highest so
        far (ties count, unless a higher claimant holds that term: ``loses``)."""
        if self.loses(run_id, term, owner):
            return False
        seen = self.terms.get(run_id)
        if seen is None:
            if len(self.terms) >= (self._prune_at or self.limit):
                self._prune()
        elif term > seen:
            del self.terms[run_id]  # (to the end: the oldest entries are pruned first)
        if seen is None or term > seen or owner:
            self.claims[run_id] = owner
        self.terms[run_id] = term
        return True

    def forget(self, run_id: str) -> None:
        """The run is gone for good (its owner here forgot it, or its finished replica was
        dropped): its entries go, unless we hold a replica of it."""
        if run_id not in self.replicas:
            self.terms.pop(run_id, None)
            self.claims.pop(run_id, None)

    def _prune(self) -> None:
        """Down to 3/4 of ``limit`` (oldest first), but replicas held and runs kept."""
        over = len(self.terms) - self.limit * 3 // 4
        dropped = 0
        replicas, keep = self.replicas, self.keep
        for run_id in list(self.terms):
            if dropped >= over:
                break
            if run_id in replicas or keep(run_id):
                continue
            del self.terms[run_id]
            self.claims.pop(run_id, None)
            dropped += 1
        self._prune_at = max(self.limit, len(self.terms) + self.limit // 4)
        self.pruned += dropped
        if dropped:
            self.on_pruned(dropped, len(self.terms))

    def on_snapshot(
        self,
        run_id: str,
        term: int,
        seq: int,
        owner: str,
        owner_address: str,
        standbys: Sequence[str],
        snapshot: bytes | memoryview,
    ) -> StandbyAck:
        """Keep ``snapshot`` (the packed run, as received) as the replica at log position ``seq``."""
        if not self.seen_term(run_id, term, owner):
            return StandbyAck(run_id, owner_address, self.term(run_id), seq, False)  # stale owner
        old = self.replicas.get(run_id)
        if old is not None and old.term == term and (old.owner != owner or old.superseded):
            old = None  # the other claimant's at this term, which yields to this one
        if old is not None and old.term == term and old.seq > seq:
            return StandbyAck(
                run_id, owner_address, term, old.seq, False
            )  # an older snapshot overtook
        replica = self.replicas[run_id] = Replica(
            run_id, term, seq, owner, owner_address, tuple(standbys), snapshot
        )
        if old is not None and old.term == term:  # (its ReplicaPayloads follows: the same list)
            replica.far, replica.payload = old.far, old.payload
        return StandbyAck(run_id, owner_address, term, seq, False)

    def on_log(
        self,
        msg: ReplicateLog,
        owner_address: str,
        frames: Sequence[Any],
        owner: str = "",
        joined: bool = False,
    ) -> StandbyAck | None:
        """Apply batch ``msg.seq`` (sent by ``owner``, if known); a delta's value travels in
        ``frames[delta.frame]`` (``joined``: ``frames`` as received, ``msg.frame_sizes`` says how
        they split, checked by the caller: ``columns.check_frames``). Deltas that came packed
        (``Codec(packed=...)``: bytes) are kept so, with the frames, until needed
        (``Replica.keep``); rows and structs (another sender's shape) are applied at once."""
        run_id, term, seq = msg.run_id, msg.term, msg.seq
        if not self.seen_term(run_id, term, owner):
            return StandbyAck(run_id, owner_address, self.term(run_id), seq, False)
        replica = self.replicas.get(run_id)
        if replica is not None and (replica.superseded or (owner and replica.owner != owner)):
            replica = None  # another claimant's replica (a superseded one): not this log's base
        if replica is None or replica.term != term or seq > replica.seq + 1:
            have = replica.seq if replica is not None and replica.term == term else -1
            return StandbyAck(run_id, owner_address, term, have, True)
        if seq <= replica.seq:
            return StandbyAck(run_id, owner_address, term, replica.seq, False)  # a duplicate
        tasks: Any = msg.tasks
        columns = msg.columns  # (protocol 8: the deltas as columns, ``tasks`` then empty)
        if columns and not (tasks == _NO_ROWS or not tasks):
            raise ColumnError("ReplicateLog: deltas both as rows and as columns")
        if columns or type(tasks) is bytes:  # (the node's codec keeps rows packed: protocol.rows)
            sizes = msg.frame_sizes if joined else b""
            kept = tuple(f if type(f) is bytes else bytes(f) for f in frames)
            batch = (columns, sizes, kept, True) if columns else (tasks, sizes, kept, False)
            if not replica.keep(batch):
                del self.replicas[run_id]  # a malformed batch folded: start again from a snapshot
                return StandbyAck(run_id, owner_address, term, -1, True)
            tasks = ()
        else:
            if replica.batches:
                try:
                    replica.settle()
                except SnapshotError:
                    del self.replicas[run_id]
                    return StandbyAck(run_id, owner_address, term, -1, True)
            if joined:
                frames = split_frames(msg.frame_sizes, list(frames), "ReplicateLog")
        nframes = len(frames)
        if type(tasks) is CheckedRows:  # (a codec that reads them as rows: protocol.rows)
            put_rows(replica.deltas, replica.values, tasks, frames)
            tasks = ()
        put = replica.put
        for d in tasks:
            if d.state != "DONE":
                put(d, None)
            elif 0 <= d.frame < nframes:
                put(d, bytes(frames[d.frame]))
            else:  # (the value it had before this delta)
                put(d)
        replica.run_fields = (msg.run_state, msg.released, msg.error)
        replica.seq = seq
        replica.standbys = tuple(msg.standbys)
        return StandbyAck(run_id, owner_address, term, seq, False)

    def drop(self, run_id: str, term: int, owner: str = "") -> None:
        """The owner at ``term`` (``owner``, if known) no longer wants us as a standby. A deposed
        owner's word (below the newer owner that superseded the replica, or the claimant that
        yielded at its term) says nothing about the newer one's."""
        replica = self.replicas.get(run_id)
        if replica is None or replica.term > term or replica.superseded > term:
            return
        if owner and replica.term == term and replica.owner != owner:
            return
        del self.replicas[run_id]
        fields = replica.run_fields
        if fields is not None and fields[0] != "RUNNING" and not replica.superseded:
            self.forget(run_id)  # finished and released by its owner: nothing left to fence

    def new_owner(self, run_id: str, term: int, owner: str, owner_address: str = "") -> bool:
        """Another node says it owns the run at ``term``; False if that term is stale. A replica
        of an older term is superseded, not dropped (the module's docstring)."""
        if not self.seen_term(run_id, term, owner):
            return False
        replica = self.replicas.get(run_id)
        if (
            replica is not None
            and (replica.term < term or (replica.term == term and replica.owner < owner))
            and owner != self.node_name
            and term >= replica.superseded
        ):
            replica.superseded = term
            replica.owner = owner
            if owner_address:  # (where our acks and payload pulls go from now on)
                replica.owner_address = owner_address
        return True

    def takeover_due(
        self, status_of: Callable[[str], int | None], orphaned: Container[str] = ()
    ) -> list[str]:
        """Runs we must take over now, given each member's status in our view (None: unknown);
        ``orphaned``: runs whose owner's process is gone though its name lives on (a restart)."""
        due = []
        for run_id, replica in self.replicas.items():
            if _live(status_of(replica.owner)) and run_id not in orphaned:
                continue
            if self.node_name not in replica.standbys:
                continue
            ahead = replica.standbys[: replica.standbys.index(self.node_name)]
            if not any(_live(status_of(n)) for n in ahead):
                due.append(run_id)
        return sorted(due)

    def take(self, run_id: str) -> Replica | None:
        """Remove and return the replica we are taking over (its term + 1 becomes the run's)."""
        replica = self.replicas.pop(run_id, None)
        if replica is not None:
            self.seen_term(run_id, replica.term + 1, self.node_name)
        return replica


def _live(status: int | None) -> bool:
    return status in (ALIVE, SUSPECT)
