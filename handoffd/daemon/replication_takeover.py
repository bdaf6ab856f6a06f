"""The takeover's steps in the replication shell (``ReplicationIO``, a mixin like
``ClientRedirects``): rebuild the replica during the grace, ask the nodes, merge and adopt. The
decisions are the ``TakeoverMachine``'s; the rebuild and the merge run off the event loop
(``daemon.replication_rebuild``), only the adoption (``RunOwner.restore_run``) on it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from handoffd.daemon.leases import LeaseIO
from handoffd.daemon.ports import MembersPort, RunOwner, Timer
from handoffd.daemon.replication_payloads import PayloadPulls
from handoffd.daemon.replication_rebuild import Offload, ReplicaRebuild, ready_run, timed
from handoffd.protocol import messages as m
from handoffd.replication import log as rlog
from handoffd.replication import takeover
from handoffd.replication import takeover_machine as tm
from handoffd.replication.standby import StandbyStore
from handoffd.scheduler.owner import OwnerScheduler

log = logging.getLogger("handoffd.replication")


@dataclass
class Taking:
    """A takeover under way, as far as this shell is concerned (the machine holds the rest)."""

    rebuild: ReplicaRebuild  # the replica being rebuilt (run_data, from_snapshot), off the loop
    timer: Timer | None = None  # feeds AnswersDue
    standbys: tuple[str, ...] = ()  # the replica's (the old owner's) standbys, us included
    replica: Any = None  # the replica taken (a status meanwhile: ``daemon.replica_status``)


# Bounds on what an executing node can make us keep for a run we are taking over (``HeldReports``):
# more is dropped, as every such message was before (the owner's lost-dispatch probe recovers it).
HELD_MESSAGES = 8192
HELD_BYTES = 64 << 20


@dataclass(eq=False)
class HeldReports:
    """What executing nodes sent about a run between our ``ReconcileRun`` (it points their reports
    to us) and our adopting it: reports of attempts that ended meanwhile. Handed to the owner's
    shell once the run is ours (``_adopt``), in the order they came, each once; dropped if the
    takeover ends otherwise. Without them, the run restored such tasks as still running and the
    lost-dispatch probe found them done only ``probe_interval`` (3 s) later."""

    messages: list[tuple[Any, list[bytes], bytes, Any]] = field(default_factory=list)
    size: int = 0  # bytes of their frames
    dropped: int = 0  # over the bounds

    def keep(self, msg: Any, frames: list[bytes], conn: bytes, envelope: Any) -> None:
        size = sum(len(f) for f in frames)
        if len(self.messages) >= HELD_MESSAGES or self.size + size > HELD_BYTES:
            self.dropped += 1
            return
        self.size += size
        self.messages.append((msg, frames, conn, envelope))


@dataclass(eq=False)
class Restoring:
    """A takeover past its ``Restore``: the run is being built off the loop; ``_adopt`` takes it
    only if this is still the entry for the run (another owner's claim meanwhile removes it)."""

    term: int
    standbys: tuple[str, ...] = ()  # ``Taking.standbys``
    replica: Any = None  # what it was built from, and the rebuild (a status meanwhile:
    rebuild: Any = None  # ``ClientRedirects.changing``)


class TakeoverSteps:
    # What the mixin uses of ReplicationIO (set there).
    port: MembersPort
    scheduler: OwnerScheduler
    owner: RunOwner
    log: rlog.ReplicationLog
    standby: StandbyStore
    takeovers: tm.TakeoverMachine
    leases: LeaseIO
    offload: Offload
    payloads: PayloadPulls
    tell_accused: Callable[[str], object]
    takeover_seconds: dict[str, float]
    _taking: dict[str, Taking]
    _restoring: dict[str, Restoring]
    _prebuilt: dict[str, ReplicaRebuild]
    _orphaned: set[str]
    minority: bool
    _reports: dict[str, HeldReports]
    _confirm_handle: Timer | None

    def _candidates(self) -> tuple[tm.Candidate, ...]:
        raise NotImplementedError

    def _takeover(self, event: tm.TakeoverEvent) -> None:
        raise NotImplementedError

    def _alive(self) -> list[str]:
        raise NotImplementedError

    def taking_over(self, run_id: str) -> bool:
        raise NotImplementedError

    def _status_of(self, name: str) -> int | None:
        raise NotImplementedError

    def _execute(self, instructions: list[object]) -> None:
        raise NotImplementedError

    def _note_owner(self, run_id: str, term: int, owner: str, address: str) -> None:
        raise NotImplementedError

    def _prebuild(self, run_ids: tuple[str, ...]) -> None:
        """Replicas are kept packed: rebuild them (off the loop) within the grace that is waited
        out anyway. A bad snapshot fails its rebuild; ``_ask_nodes`` then tries again."""
        for run_id in run_ids:
            replica = self.standby.replicas.get(run_id)
            if replica is None:
                continue
            built = self._prebuilt.get(run_id)
            if built is not None and built.error is None and _current(built, replica):
                continue  # started when its owner was suspected (``suspected``)
            self._prebuilt[run_id] = ReplicaRebuild(
                self.offload, replica, self.scheduler.order, freeze=True
            )

    def suspected(self, name: str) -> None:
        """Member ``name`` turned SUSPECT: rebuild (off the loop) the replicas of its runs that
        would be ours to take over if it died, so that the takeover, if it comes, finds them
        built. A suspicion turns into a DEAD verdict ~0.6 s later (one that holds, the grace
        later): for a big run that is a good part of the rebuild. Dropped if it is refuted
        (``_drop_prebuilt``)."""
        if self.minority:
            return

        def status(n: str) -> int | None:
            return m.DEAD if n == name else self._status_of(n)

        runs = tuple(
            run_id
            for run_id in self.standby.takeover_due(status, self._orphaned)
            if self.standby.replicas[run_id].owner == name
            and self.scheduler.term_of(run_id) is None
            and not self.takeovers.taking_over(run_id)
        )
        if runs:
            self._prebuild(runs)

    def _drop_prebuilt(self, keep: Callable[[str], bool]) -> None:
        """Forget the rebuilds started ahead of a takeover (during the grace, on a suspicion) of
        runs for which ``keep`` is False (their memory: a big run's is hundreds of MB)."""
        for run_id in [r for r in self._prebuilt if not keep(r)]:
            del self._prebuilt[run_id]

    def _grace_elapsed(self) -> None:
        self._confirm_handle = None
        targets: dict[str, str] = {}
        others = 0  # members but us, not LEFT: isolation means a cluster of three or more
        for s in self.port.members():
            if s.name != self.port.name and s.status != m.LEFT:
                others += 1
                if s.status in (m.ALIVE, m.SUSPECT):
                    targets[s.name] = s.address
        targets[self.port.name] = self.port.address
        isolated = len(targets) == 1 and others >= 2
        candidates = self._candidates()
        if isolated:
            for c in candidates:
                self.tell_accused(self.standby.replicas[c.run_id].owner)
        self._takeover(tm.GraceElapsed(candidates, tuple(targets.items()), isolated))
        # Those not taken over now go, unless their owner is still suspected or dead (isolated:
        # we confirm again; or a suspicion of another owner started it meanwhile).
        self._drop_prebuilt(self._owner_unsure)

    def _owner_unsure(self, run_id: str) -> bool:
        replica = self.standby.replicas.get(run_id)
        return replica is not None and self._status_of(replica.owner) in (m.SUSPECT, m.DEAD)

    def _ask_nodes(self, ins: tm.AskNodes) -> None:
        run_id, term = ins.run_id, ins.term
        replica = self.standby.take(run_id)  # records term (= replica.term + 1) as seen
        if replica is None:  # cannot happen: the candidate came from the replicas this turn
            self._takeover(tm.ReplicaBroken(run_id, ins.request_id))
            return
        built = self._prebuilt.pop(run_id, None)
        if built is not None and (not _current(built, replica) or built.error is not None):
            built = None  # the replica moved on since (a log batch, a snapshot), or it failed
        log.warning(
            "run %s: owner %s is dead; taking over at term %d (asking %d nodes what they hold)",
            run_id,
            replica.owner,
            term,
            len(ins.targets),
            extra={"run": run_id, "term": term},
        )
        self.standby.seen_term(run_id, term, self.port.name)
        self.payloads.stop(run_id)
        lacking = replica.missing_payloads(lambda task_id: self.payloads.has(run_id, task_id))
        if lacking:  # (the owner died before we had pulled them: PayloadsHeld told it so)
            log.error(
                "run %s: the payloads of %d task(s) (%s) never reached this standby: they "
                "cannot run",
                run_id,
                len(lacking),
                ", ".join(repr(t) for t in lacking[:5]),
                extra={"run": run_id},
            )
        # Rebuilt during the grace, or now (off the loop), while the nodes work on their answers.
        job = Taking(
            built
            if built is not None
            else ReplicaRebuild(self.offload, replica, self.scheduler.order),
            standbys=replica.standbys,
            replica=replica,
        )
        self._taking[run_id] = job
        self._reports[run_id] = HeldReports()  # from now on the nodes report to us
        for _, address in ins.targets:
            self.port.send(
                address,
                m.ReconcileRun(ins.request_id, run_id, term, self.port.name, self.port.address),
                term=term,
            )
        job.timer = self.port.call_later(
            ins.timeout, self._takeover, tm.AnswersDue(run_id, ins.request_id)
        )
        job.rebuild.then(lambda: self._rebuilt(run_id, job, ins.request_id))

    def _rebuilt(self, run_id: str, job: Taking, request_id: int) -> None:
        """An invalid snapshot: nothing to restore, and the daemon stays up."""
        error = job.rebuild.error
        if error is not None and self._taking.get(run_id) is job:
            log.error(
                "run %s: cannot rebuild the replica: %s", run_id, error, extra={"run": run_id}
            )
            self._takeover(tm.ReplicaBroken(run_id, request_id))

    def held(self, msg: Any, frames: list[bytes], conn: bytes, envelope: Any) -> bool:
        """An executing node's message (a report, an answer) about a run we are taking over but
        do not own yet: kept for ``_adopt`` (True), else False (the owner's shell handles it)."""
        if not self._reports:  # (the rule: no takeover under way)
            return False
        reports = self._reports.get(msg.run_id)
        if reports is None:
            return False
        if not self.taking_over(msg.run_id):  # (ended without ``_drop_reports``: never kept)
            del self._reports[msg.run_id]
            return False
        reports.keep(msg, frames, conn, envelope)
        return True

    def _drop_reports(self, run_id: str) -> None:
        """The takeover ended without adopting the run: what was kept goes (its new owner, if
        any, probes for what it misses)."""
        self._reports.pop(run_id, None)

    def _replay_reports(self, run_id: str) -> None:
        """The run is ours: the messages kept while it was built, in order, as if just in."""
        reports = self._reports.pop(run_id, None)
        if reports is None:
            return
        if reports.messages or reports.dropped:
            log.info(
                "run %s: %d messages from the nodes while it was built, applied now "
                "(%d over the bounds dropped)",
                run_id,
                len(reports.messages),
                reports.dropped,
                extra={"run": run_id},
            )
        for msg, frames, conn, envelope in reports.messages:
            self.owner.handle(msg, frames, conn, envelope)
        self.owner.flush()

    def _on_holdings(self, msg: m.RunHoldings, sender: str) -> None:
        holdings = takeover.Holdings(
            {h.task_id: h.size for h in msg.held}, {a.task_id: a.attempt for a in msg.running}
        )
        self._takeover(tm.NodeAnswered(msg.run_id, msg.request_id, sender, holdings))

    def _end_taking(self, run_id: str) -> Taking | None:
        job = self._taking.pop(run_id, None)
        if job is not None and job.timer is not None:
            job.timer.cancel()
        return job

    def _restore(self, ins: tm.Restore) -> None:
        """Merge and build the run off the loop (once the rebuild is done), then ``_adopt`` it."""
        run_id = ins.run_id
        job = self._end_taking(run_id)
        if job is None:
            return
        started = self.port.now()
        rebuild = job.rebuild
        entry = self._restoring[run_id] = Restoring(ins.term, job.standbys, job.replica, rebuild)

        def merge() -> None:
            if self._restoring.get(run_id) is not entry:
                return  # another owner claimed it meanwhile, or we closed
            if rebuild.run is None:
                del self._restoring[run_id]
                self._drop_reports(run_id)
                log.error(
                    "run %s: takeover given up: cannot rebuild the replica: %s",
                    run_id,
                    rebuild.error,
                    extra={"run": run_id},
                )
                return
            run = rebuild.run
            waited = self.port.now() - started  # for the rebuild, once the nodes had answered
            self.offload.run(
                lambda: timed(ready_run, run, ins.holdings),
                lambda out, error: self._adopt(
                    ins, entry, out, error, started, (rebuild.seconds, waited)
                ),
            )

        rebuild.then(merge)

    def _adopt(
        self,
        ins: tm.Restore,
        entry: Restoring,
        out: Any,
        error: BaseException | None,
        started: float,
        rebuilt: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        """Own the run built off the loop (``_restore``: ``out`` is (seconds, the run)), unless it
        is no longer ours to. ``rebuilt``: the replica's rebuild time, and how long the merge
        waited for it after the nodes answered."""
        run_id = ins.run_id
        if self._restoring.get(run_id) is not entry:
            return
        del self._restoring[run_id]
        if error is not None:
            self._drop_reports(run_id)
            log.error(
                "run %s: takeover given up: the merge failed: %r",
                run_id,
                error,
                extra={"run": run_id},
            )
            return
        built, run = out
        adopting = time.perf_counter()
        dispatches = self.owner.restore_run(run, ins.term)
        self._replay_reports(run_id)
        adopted = time.perf_counter() - adopting
        # From asking the nodes to the first dispatches out (merge and restore included).
        elapsed = ins.seconds + (self.port.now() - started)
        self.takeover_seconds[run_id] = elapsed
        status = self.scheduler.run_status(run_id)
        log.warning(
            "run %s: took over at term %d in %.3f s (%d nodes answered in %.3f s; replica "
            "rebuilt in %.3f s, waited for %.3f s more; merged and built in %.3f s; adopted on "
            "the loop in %.3f s; %s); first dispatch to %d nodes at wall %.6f",
            run_id,
            ins.term,
            elapsed,
            len(ins.holdings),
            ins.seconds,
            rebuilt[0],
            rebuilt[1],
            built,
            adopted,
            dict(status.counts) if status is not None else {},
            dispatches,
            time.time(),  # wall clock for the log reader (bench_failover), not for any decision
            extra={"run": run_id, "term": ins.term},
        )
        self._note_owner(run_id, ins.term, self.port.name, self.port.address)
        self._execute(self.log.track(run_id, self._alive(), self.port.now(), accept=False))
        self._release_old_standbys(run_id, ins.term, entry.standbys)
        self.leases.watch(run_id)
        if status is not None and status.state in ("DONE", "FAILED", "CANCELLED"):
            self.owner.run_finished(run_id)

    def _release_old_standbys(self, run_id: str, term: int, old: tuple[str, ...]) -> None:
        """The old owner's standbys we did not choose keep their replicas, superseded by us, until
        our state reaches them (``StandbyStore.new_owner``); ours never will: tell them to drop
        it, or one would take a finished run over from its old replica when we die."""
        chosen = set(self.log.standbys(run_id))
        for name in old:
            if name == self.port.name or name in chosen:
                continue
            address = self.port.address_of(name)
            if address:
                self.port.send(address, m.DropReplica(run_id, term), term=term)


def _current(built: ReplicaRebuild, replica: Any) -> bool:
    """The rebuild is of the replica as it is now (no log batch or snapshot since)."""
    return (built.term, built.seq) == (replica.term, replica.seq)
