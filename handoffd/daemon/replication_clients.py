"""The replication shell's answers to clients about runs it does not own (a mixin of
``daemon.replication.ReplicationIO``, kept apart so replication.py stays within the module size):
point them at the owner we know (``RunMoved``), refuse what a fenced node cannot answer for, and
never start a second time a submission we know as another node's run."""

from __future__ import annotations

import functools
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any

from handoffd.daemon.ports import Follower, MembersPort
from handoffd.daemon.replica_status import ReplicaStatus, Replicated, from_run
from handoffd.protocol import messages as m
from handoffd.protocol.messages_code import GetTaskOutput
from handoffd.protocol.messages_observability import GetTaskHistory
from handoffd.replication import takeover_machine as tm
from handoffd.replication.standby import Replica, StandbyStore
from handoffd.scheduler.owner import OwnerScheduler

_CLIENT_REQUESTS = (
    m.GetRunStatus,
    m.WaitRun,
    m.FetchResults,
    m.CancelRun,
    m.FreeRunRequest,
    GetTaskOutput,
    GetTaskHistory,
)


@dataclass(frozen=True)
class ChangingRun:
    """A run whose owner is changing, as last replicated here (``changing_runs``)."""

    run_id: str
    owner: str  # the owner it had (not ALIVE here)
    term: int
    next_owner: str  # the standby expected to take it over ("": none seen alive)
    replicated: Replicated | None  # None: an invalid snapshot (the run exists, no more)


class ClientRedirects:
    # What the mixin uses of ReplicationIO (set there).
    port: MembersPort
    scheduler: OwnerScheduler
    takeovers: tm.TakeoverMachine
    standby: StandbyStore
    follower: Follower
    refusal: str | None
    _moved: dict[str, tuple[int, str, str]]
    _taking: dict[str, Any]  # run -> Taking (``daemon.replication_takeover``)
    _restoring: dict[str, Any]  # run -> Restoring (same)
    _prebuilt: dict[str, Any]  # run -> ReplicaRebuild started on its owner's suspicion
    offload: Any
    _replica_status: ReplicaStatus | None = None  # made at the first status it answers

    def taking_over(self, run_id: str) -> bool:  # (ReplicationIO's: asking the nodes, or building)
        raise NotImplementedError

    def _status_of(self, name: str) -> int | None:  # (ReplicationIO's)
        raise NotImplementedError

    def redirect(self, msg: Any, conn: bytes) -> bool:
        """Answer a client's request about a run we do not own with the owner we know; False when we
        know no live owner (the caller answers as for an unknown run). Also: while fenced, a
        request about a run we own and have not finished, or one we know no live owner of, is
        refused (the far side may have taken it over or own it; the client asks there), and a
        submission of a run we know is someone else's (a
        client retrying elsewhere, ``handoffd.client_moves``) is never started a second time."""
        if isinstance(msg, (m.SubmitRun, m.SubmitAndWait)):
            return self._known_submission(msg, conn)
        if not isinstance(msg, _CLIENT_REQUESTS):
            return False
        if self.scheduler.term_of(msg.run_id) is not None:
            status = self.scheduler.run_status(msg.run_id)
            if status is None or status.state != "RUNNING":
                return False
            return self._fenced(msg, conn)
        if isinstance(msg, m.GetRunStatus) and msg.wait <= 0 and self._changing(msg, conn):
            return True  # answered with the replica's state: its owner is changing
        if self.taking_over(msg.run_id):
            return False
        best = self._known_owner(msg.run_id)
        if best is None or best[2] == self.port.address:
            return self._fenced(msg, conn)  # (fenced, "unknown here" says nothing)
        term, owner, address = best
        member = next((s for s in self.port.members() if s.address == address), None)
        if member is not None and member.status in (m.DEAD, m.LEFT):
            return self._fenced(msg, conn)
        self.port.reply(conn, m.RunMoved(msg.request_id, msg.run_id, owner, address, term))
        return True

    def changing(
        self, run_id: str, unanswered: Container[str] = ()
    ) -> tuple[Replica, str, Any] | None:
        """The replica we hold of a run whose owner is not ALIVE in our view (a takeover pending
        or under way; ours being taken over included), or is one of ``unanswered`` (a reader's
        word: it did not answer, though we may not suspect it yet), the standby expected to take
        it over (the first of its order we do not see SUSPECT, DEAD or LEFT; "" if none is) and
        the takeover's rebuild of that replica if one was started (``ReplicaRebuild``), else
        None."""
        job = self._taking.get(run_id) or self._restoring.get(run_id)
        replica = job.replica if job is not None else self.standby.replicas.get(run_id)
        if replica is None:
            return None
        if job is not None:
            return replica, self.port.name, job.rebuild
        if self._status_of(replica.owner) == m.ALIVE and replica.owner not in unanswered:
            return None
        built = self._prebuilt.get(run_id)
        if built is not None and (built.term, built.seq) != (replica.term, replica.seq):
            built = None  # (of the replica as it was: a log batch came since)
        after = (s for s in replica.standbys if self._status_of(s) == m.ALIVE)
        return replica, next(after, ""), built

    def _changing(self, msg: m.GetRunStatus, conn: bytes) -> bool:
        """Answer a status request with the run's state as last replicated here while its owner
        changes (``daemon.replica_status``); False if we hold no such replica (or are fenced:
        the far side may own the run, the client asks there)."""
        found = self.changing(msg.run_id) if self.refusal is None else None
        if found is None:
            return False
        replica, next_owner, rebuild = found

        def answer(out: Replicated | None) -> None:
            if out is None:  # an invalid snapshot: say only that the run exists
                reply = m.RunStatusReply(
                    msg.request_id, msg.run_id, "UNKNOWN", {}, {}, "", 0, (), None, True
                )
            else:
                reply = m.RunStatusReply(
                    msg.request_id,
                    msg.run_id,
                    out.state,
                    out.counts,
                    {},  # (the placement is the new owner's to give)
                    replica.owner,
                    replica.term,
                    replica.standbys,
                    out.error,
                    True,
                    True,
                    next_owner,
                )
            self.port.reply(conn, reply)

        self._replicated(replica, rebuild, answer)
        return True

    def _replicated(
        self, replica: Replica, rebuild: Any, then: Callable[[Replicated | None], None]
    ) -> None:
        """``then`` (on the loop) the replica's run state and counts (``daemon.replica_status``)."""
        if rebuild is not None and rebuild.done and rebuild.run is not None:
            then(from_run(rebuild.run))  # the takeover's rebuild is done: its run counts at once
            return
        if self._replica_status is None:
            self._replica_status = ReplicaStatus(self.offload.threaded)
        keep = self.standby.replicas
        self._replica_status.forget(
            lambda r: r in keep or r in self._taking or r in self._restoring
        )
        # (not waiting for the rebuild: a big one takes seconds on a loaded machine)
        self._replica_status.status(replica, then)

    def changing_runs(
        self,
        then: Callable[[list[ChangingRun]], None],
        limit: int = 200,
        unanswered: Container[str] = (),
    ) -> None:
        """``then`` (on the loop, once every one is counted) the runs whose owner is changing
        that we hold a replica of (``changing``, ``unanswered`` included; at most ``limit``, by
        run id), each with its state as last replicated: the run lists (``handoffctl runs``, the
        dashboard) show them while no node owns them. Nothing while fenced (the far side may own
        them)."""
        runs = set(self.standby.replicas) | set(self._taking) | set(self._restoring)
        found = []
        if self.refusal is None:
            for run_id in sorted(runs):
                if self.scheduler.term_of(run_id) is not None:
                    continue
                known = self.changing(run_id, unanswered)
                if known is not None:
                    found.append((run_id, *known))
                    if len(found) >= limit:
                        break
        out: dict[str, ChangingRun] = {}
        if not found:
            then([])
            return

        def counted(res: Replicated | None, run_id: str, replica: Replica, next_owner: str) -> None:
            out[run_id] = ChangingRun(run_id, replica.owner, replica.term, next_owner, res)
            if len(out) == len(found):
                then([out[r] for r in sorted(out)])

        for run_id, replica, next_owner, rebuild in found:
            self._replicated(
                replica,
                rebuild,
                functools.partial(counted, run_id=run_id, replica=replica, next_owner=next_owner),
            )

    def knows(self, run_id: str) -> bool:
        """The run exists as far as we know though we do not own it: we hold a replica, are
        taking it over, or heard of an owner of it, not us (a run we owned and forgot is gone for
        good), that is not DEAD or LEFT in our view. A dead owner we only heard of says nothing:
        whoever can take the run over holds a replica and says so; if none does, the run was
        lost with its owner and its standbys, and a client following it would wait in vain."""
        if run_id in self.standby.replicas or self.taking_over(run_id):
            return True
        here = self.port.address
        moved = self._moved.get(run_id)
        if moved is not None and moved[2] != here and self._may_live(moved[1]):
            return True
        followed = self.follower.run_owners.get(run_id)
        return followed is not None and followed[1] != here and self._may_live(followed[2])

    def _may_live(self, name: str) -> bool:
        member = self.port.member(name) if name else None
        return member is None or member.status not in (m.DEAD, m.LEFT)

    def _fenced(self, msg: Any, conn: bytes) -> bool:
        """While fenced, refuse a request we cannot answer for the cluster (True if refused)."""
        if self.refusal is None:
            return False
        self.port.reply(conn, m.ErrorReply(msg.request_id, "fenced", self.refusal))
        return True

    def _known_submission(self, msg: m.SubmitRun | m.SubmitAndWait, conn: bytes) -> bool:
        """A submission of a run id we know as another node's (standby, redirect, follower) or
        are taking over: point the client at its owner (even one now DEAD: its takeover will
        answer) instead of starting the run twice. False for a run id new to us, or our own."""
        run_id = msg.run_id
        if self.scheduler.term_of(run_id) is not None:
            return False  # ours: the owner takes it as a retried submission
        if (  # (the rule, a new run id: known nowhere here, so no owner to build)
            run_id not in self._moved
            and run_id not in self.standby.replicas
            and run_id not in self.follower.run_owners
            and run_id not in self._restoring  # (``taking_over``, inline)
            and not self.takeovers.taking_over(run_id)
        ):
            return False
        best = self._known_owner(run_id)
        if self.taking_over(run_id):  # ours in a moment: its requests are answered
            best = (best[0] + 1 if best else 0, self.port.name, self.port.address)
        elif best is None or best[2] == self.port.address:
            return False
        term, owner, address = best
        self.port.reply(conn, m.RunMoved(msg.request_id, run_id, owner, address, term))
        return True

    def _known_owner(self, run_id: str) -> tuple[int, str, str] | None:
        """(term, owner, address) of the newest owner we know of a run that is not ours."""
        best = self._moved.get(run_id)
        known = self.follower.run_owners.get(run_id)
        if known is not None and (best is None or known[0] > best[0]):
            best = (known[0], known[2], known[1])
        replica = self.standby.replicas.get(run_id)
        if replica is not None and (best is None or replica.term > best[0]):
            best = (replica.term, replica.owner, replica.owner_address)
        return best
