"""Replication and takeover I/O shell: runs the pure ``ReplicationLog`` (runs we own),
``StandbyStore`` (runs we stand by for) and ``TakeoverMachine`` (when and how to take a run over) on
the daemon's loop, through its port (``daemon.ports``) and one clock; a takeover's rebuild and merge
(``takeover.merge_run``) run off the loop (``daemon.replication_rebuild``).

Owner side: a submission is answered only once its standbys (after ``accept_timeout``, one of
them: ``ReplicationLog._maybe_accept``) acked the snapshot; task moves the scheduler reports
through ``on_change`` are flushed as one log batch per loop iteration; how a snapshot is packed
and sent: ``daemon.replication_snapshots``.
Standby side: replicas are kept as received (snapshot bytes and the newest delta per task), and the
run is rebuilt from them only on a takeover; when membership declares the owner DEAD and we are the
first live standby, we take over at term + 1 (the steps and their reasons: ``TakeoverMachine``): ask
every live node (ourselves included) what it holds and runs for the run (``ReconcileRun``; that also
points their reports to us and fences the old term), merge, have the owner's shell restore it
(``RunOwner.restore_run``), and start replicating to our own standbys. An owner's probe for a
lost report (``ProbeHoldings``) and its word to a node back from the dead (``FollowOwner``) are
handled here too: all three make the node follow the sender at its term (``Follower``, the
executor).
Fencing: a higher term seen in any reply about a run we own makes us step down (DESIGN.md 3.5).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from handoffd.daemon.code import CodeStore
from handoffd.daemon.leases import LeaseIO
from handoffd.daemon.ports import Follower, MembersPort, NoFollower, NoOwner, RunOwner, Timer
from handoffd.daemon.replication_claims import OwnerClaims
from handoffd.daemon.replication_clients import ClientRedirects
from handoffd.daemon.replication_payloads import OwnerPayloads, PayloadPulls
from handoffd.daemon.replication_rebuild import Offload, ReplicaRebuild, as_built
from handoffd.daemon.replication_snapshots import SnapshotSends
from handoffd.daemon.replication_takeover import HeldReports, Restoring, TakeoverSteps, Taking
from handoffd.protocol import messages as m
from handoffd.protocol.columns import check_frames, join_frames
from handoffd.protocol.log_columns import pack_columns, reads_log_columns
from handoffd.protocol.messages_chunks import PayloadsHeld, ReplicaPayloads, ValueChunk
from handoffd.protocol.messages_lease import LeasesRenewed, RenewLeases
from handoffd.protocol.messages_snapshot import reads_columns
from handoffd.protocol.schema import WireRows
from handoffd.protocol.snapshot import error_to_info
from handoffd.replication import log as rlog
from handoffd.replication import takeover_machine as tm
from handoffd.replication.standby import StandbyAck, StandbyStore
from handoffd.scheduler.owner import OwnerScheduler
from handoffd.store.store import ResultStore

log = logging.getLogger("handoffd.replication")

RECONCILE_TIMEOUT = tm.ANSWER_TIMEOUT  # seconds a new owner waits for nodes' holdings
# While changes keep coming, log batches go out at most this often (the first change after a quiet
# spell goes out at once, on the next loop iteration): one batch per loop iteration was one message,
# one decode and one ack per few tasks on a busy owner. A takeover re-runs what the standby did not
# hear of yet, so this only widens what a takeover may redo, never what it may lose.
FLUSH_INTERVAL = 0.01
# Tasks per log batch: a run's end (every task out on the nodes cancelled) or a busy spell made
# batches of thousands of deltas, encoded on the loop in one go (0.1-0.3 s); the rest follows in
# the next batches, one loop iteration apart.
FLUSH_LIMIT = 1024
# Tasks from which a run's snapshot is packed in a thread (``_pack_off_loop``): a 200,000-task
# run's took the owner's loop 0.87 s per re-send. Smaller ones are packed at once, as before.
PACK_OFF_LOOP = 4096
# A task's move into these is held for its next move (``ReplicationLog.changed``'s ``held_at``).
_HELD_STATES = frozenset(("ASSIGNED", "RUNNING"))
_ENDED = frozenset(("DONE", "FAILED", "CANCELLED"))  # a run's states once it ended
_NO_ROWS = WireRows(())  # a batch sent as columns: its rows field empty


class ReplicationIO(OwnerClaims, ClientRedirects, TakeoverSteps, SnapshotSends):
    """``scheduler``: the owner's, read here (terms, run state for snapshots and log batches);
    runs enter or leave it only through ``owner`` (``RunOwner``). ``grace``: how long a DEAD
    verdict must hold before we take over (``TakeoverMachine``)."""

    def __init__(
        self,
        port: MembersPort,
        scheduler: OwnerScheduler,
        *,
        replicas: int,
        grace: float,
        answer_timeout: float = RECONCILE_TIMEOUT,
        lease: float | None = None,
        offload: Offload | None = None,
    ) -> None:
        self.port = port
        self.scheduler = scheduler
        self.owner: RunOwner = NoOwner()  # daemon.node.wire sets the owner's shell
        self.follower: Follower = NoFollower()  # daemon.node.wire sets the executor
        self.log = rlog.ReplicationLog(port.name, replicas)
        # The runs the log tracks (its own dict): a short run's calls here (a one-task call's
        # moves, its end and release) find it absent and return at once (``ReplicationLog``).
        self._tracking = self.log.tracking
        self.standby = StandbyStore(port.name)
        self._bound_claims()
        self.code: CodeStore | None = None  # the node's code packages (set by the node)
        self.store: ResultStore | None = None  # the node's result store (``attach``)
        # Big task payloads (``protocol.snapshot.far_payload``): owner side, run -> those its
        # snapshots leave out, kept in our store; standby side, our pulls of them; run ->
        # standby -> how many it still lacks (``PayloadsHeld``: 0 is a full replica).
        self.far = OwnerPayloads(port)
        self.payloads = PayloadPulls(port)
        self.payloads.on_complete = lambda run_id: self._prebuilt.pop(run_id, None)
        self._packages_sent: set[tuple[str, str]] = set()  # (standby, sha) it was sent
        self.takeovers = tm.TakeoverMachine(port.name, grace, answer_timeout)
        self._accepts: dict[str, Callable[[], None]] = {}  # run -> answer the client
        self._taking: dict[str, Taking] = {}
        self._restoring: dict[str, Restoring] = {}  # runs merged and built off the loop
        # Where a takeover's rebuild and merge run (``daemon.replication_rebuild``): a thread in a
        # daemon (``daemon.node``), at once by default (a shell driven by a fake port).
        self.offload = offload if offload is not None else Offload()
        self._confirm_handle: Timer | None = None  # pending takeover confirmation
        # run -> its replica's rebuild, started while the takeover's grace runs
        self._prebuilt: dict[str, ReplicaRebuild] = {}
        # run -> what executing nodes sent about it while we take it over (``held``)
        self._reports: dict[str, HeldReports] = {}
        self._moved: dict[str, tuple[int, str, str]] = {}  # run -> (term, owner, address) we know
        # (run, standby) -> log batches held while its snapshot is packed off the loop: they go
        # out after it, in order (``_pack_off_loop``)
        self._held: dict[tuple[str, str], list[tuple[Any, list[bytes], int]]] = {}
        self._flush_scheduled = False
        self._flush_handle: Timer | None = None
        self._last_flush = float("-inf")  # port.now() of the last flush
        self._flush_at = float("-inf")  # when the scheduled flush runs (-inf: at once)
        # standby side: the newest ack per (owner address, run), sent once per loop iteration
        self._acks: dict[tuple[str, str], StandbyAck] = {}
        self._acks_scheduled = False
        self.takeover_seconds: dict[str, float] = {}  # run -> nodes asked to first dispatch
        self.minority = False  # fenced (daemon/fencing.py): no takeover meanwhile
        self.refusal: str | None = None  # ... and why (a client asking about our runs is told)
        self._orphaned: set[str] = set()  # replicas whose owner restarted (its process is gone)
        # Send our DEAD verdict straight to the accused (daemon.node sets it: membership's
        # HeardFrom). A live owner refutes within a round trip, inside the takeover's grace.
        self.tell_accused: Callable[[str], object] = lambda name: None
        # a run's new dispatches wait while a standby has not answered for ``lease`` s (None: never)
        self.leases = LeaseIO(port, scheduler, self.log, self.standby, lease, self)

    def attach(
        self, code: CodeStore | None, store: ResultStore, limits: Any, fetcher: Any = None
    ) -> None:
        """The node's code packages and result store (the big payloads kept and pulled there),
        its limits (chunks of a pull fit its ``max_frame_bytes``), and its package fetcher
        (``daemon.code.PackageFetcher``: a standby fetches a run's big packages with it)."""
        self.code, self.store = code, store
        self.payloads.configure(store, limits.max_frame_bytes, limits.max_value_bytes)
        self.payloads.code = code
        self.payloads.fetch_code = fetcher.when_present if fetcher is not None else None

    # -- owner side ----------------------------------------------------------------------------

    def _alive(self) -> list[str]:
        return [s.name for s in self.port.members() if s.status == m.ALIVE]

    def run_accepted(self, run_id: str, answer: Callable[[], None]) -> None:
        """The scheduler accepted a run: replicate it, then ``answer`` the client."""
        self._accepts[run_id] = answer
        self._execute(self.log.track(run_id, self._alive(), self.port.now(), accept=True))
        self.leases.watch(run_id)

    def standbys(self, run_id: str) -> tuple[str, ...]:
        return self.log.standbys(run_id) if run_id in self._tracking else ()

    def run_changed(self, run_id: str) -> None:
        # (a short run is never replicated, so not tracked: daemon.owner_waits)
        if run_id in self._tracking and self.log.changed(run_id, None):
            self._flush_soon()

    def task_changed(self, run_id: str, task_id: str) -> None:
        """The scheduler's ``on_change`` (``daemon.node.wire``): a task move a standby must know.
        Called about twice per task: a move out to a node (dispatch, start) is held for the
        task's end (``rlog.HOLD``), so a short task is replicated once. A run the log does not
        track (a short run held back: ``daemon.owner_waits``) is nothing to look up."""
        if not self.log.tracked(run_id):
            return
        run = self.scheduler.run_state(run_id)
        rec = run.tasks.get(task_id) if run is not None else None
        if rec is not None and rec.state in _HELD_STATES:
            now = self.port.now()
            if self.log.changed(run_id, task_id, now) and not self._flush_scheduled:
                self._schedule_flush(now + self.log.hold - FLUSH_INTERVAL)
        elif self.log.changed(run_id, task_id):
            self._flush_soon()

    def tasks_changed(self, changes: list[tuple[str, Any, bool]]) -> None:
        """The scheduler's ``on_changes``: ``task_changed`` for each move of one batch, (run_id,
        task_id or a block's ids, out to a node) in order, with the same log and flush timer as
        one by one."""
        if not self._tracking:  # (no run replicated: a short run's moves have nowhere to go)
            return
        now = self.port.now()
        for held in self.log.tasks_changed(changes, now):
            if not held:
                self._flush_soon()
            elif not self._flush_scheduled:
                self._schedule_flush(now + self.log.hold - FLUSH_INTERVAL)

    def _flush_soon(self) -> None:
        """A change to send with the next flush: FLUSH_INTERVAL after the last one."""
        if not self._flush_scheduled or self._flush_at > self._last_flush + FLUSH_INTERVAL:
            self._schedule_flush(self._last_flush + FLUSH_INTERVAL)

    def _schedule_flush(self, at: float) -> None:
        """Flush at ``at`` (port time), or sooner if one is already due sooner."""
        if self._flush_scheduled:
            if at >= self._flush_at:
                return
            if self._flush_handle is not None:  # (one due for held changes: this comes sooner)
                self._flush_handle.cancel()
        self._flush_scheduled = True
        delay = at - self.port.now()
        if delay <= 0:
            self._flush_at = float("-inf")
            self._flush_handle = None
            self.port.call_soon(self._flush)
        else:
            self._flush_at = at
            self._flush_handle = self.port.call_later(delay, self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._flush_handle = None
        now = self._last_flush = self.port.now()
        # Held changes due before the next flush could go ride with this one: on a busy owner
        # they go with the batches of tasks done, not in batches of their own.
        self._execute(self.log.flush(FLUSH_LIMIT, now + FLUSH_INTERVAL))
        if self.log.pending():
            self._schedule_flush(now)  # (at once)
        else:
            due = self.log.due()
            if due is not None:
                self._schedule_flush(due - FLUSH_INTERVAL)

    def _execute(self, instructions: list[object]) -> None:
        if not instructions:  # (the rule on a tick, and for a run never tracked)
            return
        frames: dict[tuple[str, int], bytes] = {}  # (run, reads_columns) -> its snapshot frame
        off_loop: dict[str, list[rlog.SendSnapshot]] = {}  # run -> its snapshots packed apart
        moved: set[str] = set()  # runs sent as built: their dispatched tasks go in a batch after
        for ins in instructions:
            if isinstance(ins, rlog.SendSnapshot):
                run = self.scheduler.run_state(ins.run_id)
                columns = reads_columns(self.port.member(ins.node))
                if (ins.run_id, ins.node) in self._held:
                    pass  # one is being packed: it and the batches held after it will do
                elif run is not None and self._off_loop(run, columns) and as_built(run, columns):
                    self._send_snapshot(ins, frames, as_built=True)
                    moved.add(ins.run_id)
                elif run is not None and self._off_loop(run, columns):
                    # Its batches are held from now on, as later ones of this loop turn.
                    off_loop.setdefault(ins.run_id, []).append(ins)
                    self._held[(ins.run_id, ins.node)] = []
                else:
                    self._send_snapshot(ins, frames)
            elif isinstance(ins, rlog.SendLog):
                self._send_log(ins)
            elif isinstance(ins, rlog.Drop):
                address = self.port.address_of(ins.node)
                term = self.scheduler.term_of(ins.run_id) or 0
                if address:
                    self.port.send(address, m.DropReplica(ins.run_id, term), term=term)
            elif isinstance(ins, rlog.Accept):
                answer = self._accepts.pop(ins.run_id, None)
                if answer is not None:
                    standbys = functools.partial(self.log.standbys, ins.run_id)
                    self.far.accepted(ins, standbys, answer, self.log.accept_limit)
                    run = self.scheduler.run_state(ins.run_id)
                    if run is not None and run.state in _ENDED:  # (it ended before the acks)
                        self.far.ended(ins.run_id)
        for run_id, sends in off_loop.items():
            self._pack_off_loop(run_id, sends)
        for run_id in moved:  # (after the snapshot's ``seq``: in the next batch, whole)
            run = self.scheduler.run_state(run_id)
            if run is not None and self.log.tasks_changed(
                [(run_id, task_id, False) for task_id in run.placed], self.port.now()
            ):
                self._flush_soon()

    @staticmethod
    def _off_loop(run: Any, columns: int) -> bool:
        """A big run's snapshot is packed in a thread, unless it is spliced from the bytes its
        intake packed (``encode_run``: a just-accepted run, cheap on the loop) in a form the
        standby reads (``columns``: its ``reads_columns``; below ``Prebuilt.columns`` its specs,
        and tasks, would be packed again)."""
        if len(run.tasks) < PACK_OFF_LOOP:
            return False
        prebuilt = run.prebuilt
        if prebuilt is None or not run.untouched():
            return True
        return bool(prebuilt.columns) and columns < prebuilt.columns

    def complete_standbys(self, run_id: str) -> tuple[str, ...]:
        """The run's standbys that hold all of it, its big payloads too (``OwnerPayloads``)."""
        return self.far.complete(run_id, self.log.standbys(run_id))

    def _send_log(self, ins: rlog.SendLog) -> None:
        run = self.scheduler.run_state(ins.run_id)
        if run is None:
            return
        # A standby of protocol 8 is sent the batch as columns (``log_columns``: a few objects a
        # batch, where a row was ~26 a task), packed once for all of them; any other the rows.
        # When every standby reads columns (the rule), the scheduler packs them straight from
        # its records (``delta_columns``: no row a task); else the rows come in wire form from
        # the compiled scheduler (``delta_rows``), packed unchecked by the codec (``WireRows``:
        # checking each delta's fields cost more than packing them), and as columns from them
        # for the standbys that read those.
        member = self.port.member
        readers = [reads_log_columns(member(name)) for name in ins.nodes]
        packed: bytes | None = None
        deltas: Any = ()
        if readers and all(readers):
            columns = self.scheduler.delta_columns(ins.run_id, ins.task_ids)
            if columns is None:
                return
            packed, frames = columns
        if packed is None:  # (a standby of 7, or a batch columns cannot carry)
            batch = self.scheduler.delta_rows(ins.run_id, ins.task_ids)
            if batch is None:
                return
            deltas, frames = batch
            packed = pack_columns(deltas) if any(readers) else None
        frame_sizes, frames = join_frames(frames)  # small values: one frame (issue 13)
        forms: dict[bool, m.ReplicateLog] = {}
        for name, reads in zip(ins.nodes, readers, strict=True):
            form = reads and packed is not None
            msg = forms.get(form)
            if msg is None:
                msg = forms[form] = m.ReplicateLog(
                    ins.run_id,
                    run.term,
                    ins.seq,
                    ins.standbys,
                    _NO_ROWS if form else WireRows(deltas),
                    run.state,
                    run.released,
                    error_to_info(run.error),
                    frame_sizes,
                    packed if form and packed is not None else b"",
                )
            held = self._held.get((ins.run_id, name))
            if held is not None:  # its snapshot is being packed: this batch goes after it
                held.append((msg, frames, run.term))
                continue
            address = self.port.address_of(name)
            if address:  # (the node encodes a message once for all the nodes it goes to)
                self.port.send(address, msg, frames, term=run.term)

    def run_ended(self, run_id: str) -> None:
        """The run ended (done, failed or cancelled): the client's "accepted", if still waiting
        for its standbys to pull its big payloads, is answered now (``OwnerPayloads.ended``)."""
        self.far.ended(run_id)

    def released(self, run_id: str) -> None:
        """A finished run's results were released: a takeover would have nothing left to do (the
        client has what it wanted), so the standbys drop their replicas now, not after the owner's
        FORGET_AFTER_S: no log batch and ack for the release, no DropReplica later. Our status
        answers stay; a client asking a standby finds us by rotating through the nodes it knows."""
        # (a run not tracked, a short run's rule, has nothing to drop and no lease: a lease is
        # watched only for a tracked run, ``LeaseIO.watch``, and unwatched wherever one is
        # untracked)
        if run_id not in self._accepts and run_id in self._tracking:
            # (else the client has not heard 'accepted' yet: later)
            self._execute(self.log.untrack(run_id))
            self.leases.unwatch(run_id)

    def forget(self, run_id: str) -> None:
        """The run was released and aged out: stop tracking it and tell its standbys to drop it."""
        self.far.forget(run_id)
        self._execute(self.log.untrack(run_id))
        self.leases.unwatch(run_id)
        self._moved.pop(run_id, None)
        self.standby.forget(run_id)

    def member_changed(self, change: Any, rechoose: bool = True) -> None:
        """``rechoose`` False: the caller calls ``members_changed`` once after a batch of changes
        (re-choosing standbys scans every member: once per change was O(members^2) for a
        push-pull that brought thousands)."""
        if rechoose:
            self.members_changed()
        if change.new == m.SUSPECT:
            self.suspected(change.name)
        elif change.new == m.ALIVE:  # (refuted, or back): nothing of its runs is ours to take
            self._drop_prebuilt(lambda run_id: self._owner_of(run_id) != change.name)
        if change.new in (m.DEAD, m.LEFT):
            if change.new == m.DEAD and any(
                r.owner == change.name for r in self.standby.replicas.values()
            ):
                # Our verdict may be stale (we were the one cut off, now healed): the owner it
                # accuses hears it at once and refutes before the grace ends, instead of at the
                # next push-pull, after we deposed it with an old replica.
                self.tell_accused(change.name)
            self._takeover(tm.OwnersDead(self._candidates()))
            self._takeover(tm.MemberGone(change.name))
        elif change.new == m.ALIVE and change.old in (m.DEAD, m.LEFT):
            # Back from the dead (a healed partition): tell it which runs we own at a higher
            # term, so a deposed owner there steps down and its executor reports to us.
            for run_id in self.scheduler.runs():
                term = self.scheduler.term_of(run_id) or 0
                if term > 0:
                    self.port.send(
                        change.member.address,
                        m.FollowOwner(run_id, term, self.port.name, self.port.address),
                        term=term,
                    )

    def owner_restarted(self, name: str) -> None:
        """``name`` is a new process (``NodeRestarted``): the runs its old one owned are as if
        their owner were DEAD (the new one knows nothing of them): take over those due to us."""
        runs = {r for r, replica in self.standby.replicas.items() if replica.owner == name}
        self._orphaned = {r for r in self._orphaned | runs if r in self.standby.replicas}
        if runs:
            log.warning(
                "%s restarted: its %d run(s) replicated here lost their owner", name, len(runs)
            )
            self._takeover(tm.OwnersDead(self._candidates()))

    def members_changed(self) -> None:
        """Re-choose the standbys of the runs we own among the members alive now."""
        self._execute(self.log.members_changed(self._alive(), self.port.now()))
        self.leases.rewatch()

    def close(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._confirm_handle is not None:
            self._confirm_handle.cancel()
            self._confirm_handle = None
        for job in self._taking.values():
            if job.timer is not None:
                job.timer.cancel()
        self._prebuilt.clear()
        self._restoring.clear()
        self._reports.clear()
        self._held.clear()
        self.payloads.close()
        self.offload.close()
        if self._replica_status is not None:
            self._replica_status.close()

    def tick(self, now: float) -> None:
        self._execute(self.leases.ticked(self.log.tick(now)))
        self._sweep_payloads()

    def _sweep_payloads(self) -> None:
        """Pulls of payloads go on while their replica does: one dropped or replaced by another
        owner's drops them; one we take over or own keeps them (its run needs them) and stops."""
        for run_id in self.payloads.runs():
            replica = self.standby.replicas.get(run_id)
            if replica is not None:
                continue
            if self.taking_over(run_id) or self.scheduler.term_of(run_id) is not None:
                self.payloads.stop(run_id)
            else:
                self.payloads.forget(run_id)

    def on_chunk(self, msg: m.ValuesFetched | ValueChunk, frames: list[Any]) -> bool:
        """A chunk of a payload we pull as a standby; False if not ours."""
        return isinstance(msg, ValueChunk) and self.payloads.on_chunk(msg, frames)

    # -- standby side --------------------------------------------------------------------------

    def handle(self, msg: Any, frames: list[bytes], envelope: Any) -> None:
        sender = envelope.sender if envelope is not None else self.port.name
        if isinstance(msg, m.ReplicateRun):
            if not frames or not self._claimed(msg.run_id, msg.term, msg.owner, msg.owner_address):
                return
            ack = self.standby.on_snapshot(
                msg.run_id,
                msg.term,
                msg.seq,
                msg.owner,
                msg.owner_address,
                msg.standbys,
                # Kept packed, unpacked only if we ever take over, and not copied: a big frame
                # is a read-only view of the message as received (a copy of a 200,000-task
                # run's ~30 MB held the loop 0.1 s).
                frames[0] if isinstance(frames[0], (bytes, memoryview)) else bytes(frames[0]),
            )
            self.follower.learn_owner(msg.run_id, msg.term, msg.owner_address, msg.owner)
            if self.code is not None:
                for data in frames[1:]:  # the run's code packages (content-addressed)
                    try:
                        self.code.put(bytes(data))
                    except OSError as exc:
                        log.warning("code package of run %s not stored: %s", msg.run_id, exc)
            if ack.owner_address:
                # At once, not with the loop turn's batch of acks: the owner's answer to the client
                # waits for it (acks are cumulative, so a later batched one is harmless).
                self._acks.pop((ack.owner_address, ack.run_id), None)
                self._send_ack(ack)
        elif isinstance(msg, m.ReplicateLog):
            replica = self.standby.replicas.get(msg.run_id)
            owner_address = replica.owner_address if replica else self.port.address_of(sender)
            owner = envelope.sender if envelope is not None else ""
            if replica is not None and owner and replica.owner != owner:
                owner_address = self.port.address_of(owner) or owner_address
            if not self._claimed(msg.run_id, msg.term, owner, owner_address or ""):
                return
            check_frames(msg.frame_sizes, frames, "ReplicateLog")  # (split if needed: keep)
            had = msg.run_id in self.standby.replicas
            ack2 = self.standby.on_log(msg, owner_address or "", frames, owner, joined=True)
            if ack2 is not None:
                if had and ack2.seq == -1 and msg.run_id not in self.standby.replicas:
                    log.warning(
                        "run %s: a malformed log batch from %s (batch %d or one before it); "
                        "the replica is dropped and a snapshot asked for",
                        msg.run_id,
                        sender,
                        msg.seq,
                        extra={"run": msg.run_id, "term": msg.term},
                    )
                self._ack(ack2)
        elif isinstance(msg, m.ReplicaAcked):
            if self.fenced(msg.run_id, envelope.term if envelope is not None else 0):
                return
            self._execute(
                self.log.on_ack(msg.run_id, sender, msg.seq, msg.need_snapshot, self.port.now())
            )
            self.leases.acked(msg.run_id, sender, msg.term)
        elif isinstance(msg, m.DropReplica):
            self.standby.drop(msg.run_id, msg.term, envelope.sender if envelope else "")
            self._sweep_payloads()
        elif isinstance(msg, ReplicaPayloads):
            replica = self.standby.replicas.get(msg.run_id)
            if replica is not None and replica.term == msg.term:
                replica.far = msg.far
                replica.payload = self.payloads.payload(msg.run_id)
                self.payloads.want(msg, replica.owner_address)
        elif isinstance(msg, PayloadsHeld):
            if self.scheduler.term_of(msg.run_id) == msg.term:
                self.far.held(msg, sender)
        elif isinstance(msg, m.ReconcileRun):
            self._on_reconcile(msg)
        elif isinstance(msg, m.RunHoldings):
            self._on_holdings(msg, sender)
        elif isinstance(msg, m.ProbeHoldings):
            self._on_probe(msg)
        elif isinstance(msg, m.FollowOwner):
            if self._follow(msg.run_id, msg.term, msg.owner, msg.owner_address):
                self.follower.learn_owner(msg.run_id, msg.term, msg.owner_address, msg.owner)
        elif isinstance(msg, (RenewLeases, LeasesRenewed)):
            self.leases.handle(msg, sender)

    def _ack(self, ack: StandbyAck) -> None:
        """Acks are cumulative: only the newest per owner and run goes out, once per loop
        iteration (a drained socket can hold many log batches of the same run)."""
        if not ack.owner_address:
            return
        self._acks[(ack.owner_address, ack.run_id)] = ack
        if not self._acks_scheduled:
            self._acks_scheduled = True
            self.port.call_soon(self._send_acks)

    def _send_acks(self) -> None:
        self._acks_scheduled = False
        acks, self._acks = self._acks, {}
        for ack in acks.values():
            self._send_ack(ack)

    def _send_ack(self, ack: StandbyAck) -> None:
        self.port.send(
            ack.owner_address,
            m.ReplicaAcked(ack.run_id, ack.term, ack.seq, ack.need_snapshot),
            term=ack.term,
        )

    # -- takeover (decisions: TakeoverMachine) -------------------------------------------------

    def _owner_of(self, run_id: str) -> str | None:
        replica = self.standby.replicas.get(run_id)
        return replica.owner if replica is not None else None

    def _status_of(self, name: str) -> int | None:
        if name == self.port.name:
            return m.ALIVE
        member = self.port.member(name)
        return member.status if member is not None else None

    def taking_over(self, run_id: str) -> bool:
        """Asking the nodes, or building the run off the loop: ours in a moment."""
        return self.takeovers.taking_over(run_id) or run_id in self._restoring

    def _candidates(self) -> tuple[tm.Candidate, ...]:
        """The replicas due for a takeover now (``StandbyStore.takeover_due``), but runs we own."""
        if self.minority:  # the owner may be alive on the majority side: not ours to judge
            return ()
        replicas = self.standby.replicas
        return tuple(
            tm.Candidate(run_id, replicas[run_id].base_term())
            for run_id in self.standby.takeover_due(self._status_of, self._orphaned)
            if self.scheduler.term_of(run_id) is None
        )

    def _takeover(self, event: tm.TakeoverEvent) -> None:
        for ins in self.takeovers.handle(event, self.port.now()):
            if isinstance(ins, tm.AskNodes):
                self._ask_nodes(ins)
            elif isinstance(ins, tm.Restore):
                self._restore(ins)
            elif isinstance(ins, tm.ConfirmLater):
                self._confirm_handle = self.port.call_later(ins.delay, self._grace_elapsed)
            elif isinstance(ins, tm.Prebuild):
                self._prebuild(ins.run_ids)
            elif isinstance(ins, tm.StandBack):
                log.warning(
                    "run %s: %s took over at term %d; we stand back",
                    ins.run_id,
                    ins.owner,
                    ins.term,
                    extra={"run": ins.run_id, "term": ins.term},
                )
                self._end_taking(ins.run_id)
                self._drop_reports(ins.run_id)
            elif isinstance(ins, tm.GiveUp):
                log.error(
                    "run %s: takeover given up: %s",
                    ins.run_id,
                    ins.reason,
                    extra={"run": ins.run_id},
                )
                self._end_taking(ins.run_id)
                self._drop_reports(ins.run_id)
