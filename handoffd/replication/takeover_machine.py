"""Taking over runs whose owner died, as a pure machine: events in, instructions out, ``now`` in.

The steps (DESIGN 3.5), each an event the replication shell feeds and what comes out of it:

1. Confirm. Membership declared a member DEAD or LEFT and some replicas are now due (their owner is
   dead and every standby ahead of us too: ``StandbyStore.takeover_due``): ``OwnersDead`` ->
   ``ConfirmLater(grace)`` and ``Prebuild`` (replicas are kept packed; rebuilding them within the
   grace that is waited out anyway keeps it off the takeover's path). Only if the death outlives the
   grace do we go on: a healed partition can carry stale DEAD verdicts that the accused refutes
   within milliseconds, and a takeover on such a flap would depose a healthy owner.
   Isolated (``GraceElapsed.isolated``: no other member is live in our view of a cluster of three
   or more), we confirm again, up to ``isolation_hold`` seconds: a node cut off from everyone
   declares everyone DEAD, and when the cut heals its verdict on the owner can outlive the grace
   by the time the peers take to find it again; its takeover then would depose a healthy owner
   with a stale replica (the chaos suite caught this). A node still alone after the hold goes on,
   so a survivor of several deaths still finishes the run.
2. Ask the nodes. ``GraceElapsed`` (with the runs still due and the live nodes, ourselves included)
   -> ``AskNodes`` per run, at the replica's term + 1: every live node says what it holds and runs
   for the run (that also points its reports to us and fences the old term).
3. Merge and restore. When every asked node answered (``NodeAnswered``) or died (``MemberGone``), or
   ``AnswersDue`` (the shell's timer, ``AskNodes.timeout`` after asking) came first: ``Restore``
   with the answers of nodes still alive; a copy on a node that died meanwhile is lost.
4. Give up. Another owner's claim outranks ours (``OtherOwner`` above our term, or at our term from
   a higher name: ``standby.outranks``, so of two takeovers at one term exactly one goes on):
   ``StandBack``. The replica cannot be rebuilt (``ReplicaBroken``): ``GiveUp``.

Answers and timer events that belong to a takeover that already ended (another request id, or no
takeover of that run) change nothing, so the shell never needs to cancel anything for correctness.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Union

from handoffd.replication.standby import outranks
from handoffd.replication.takeover import Holdings

ANSWER_TIMEOUT = 1.0  # seconds a new owner waits for the nodes' holdings before it carries on
# Seconds an isolated standby keeps confirming before it takes over anyway: a healed partition's
# peers find us again within a few push-pull rounds (~1 s measured in the chaos suite).
ISOLATION_HOLD = 3.0


@dataclass(frozen=True, slots=True)
class Candidate:
    """A replica whose owner is dead in our view and that is ours to take over."""

    run_id: str
    term: int  # ``Replica.base_term`` (the dead owner's term): we take over at term + 1


# -- events ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OwnersDead:
    """Membership declared a member DEAD or LEFT; ``candidates``: the runs due now."""

    candidates: tuple[Candidate, ...]


@dataclass(frozen=True, slots=True)
class GraceElapsed:
    """The confirmation grace is over: the runs still due, and the live nodes (name, address) to
    ask, ourselves included."""

    candidates: tuple[Candidate, ...]
    targets: tuple[tuple[str, str], ...]
    isolated: bool = False  # no other member live in our view, of a cluster of three or more


@dataclass(frozen=True, slots=True)
class NodeAnswered:
    run_id: str
    request_id: int
    node: str
    holdings: Holdings


@dataclass(frozen=True, slots=True)
class MemberGone:
    """A member became DEAD or LEFT: it will not answer, and its answer no longer counts."""

    name: str


@dataclass(frozen=True, slots=True)
class AnswersDue:
    """``AskNodes.timeout`` passed since the takeover with ``request_id`` asked."""

    run_id: str
    request_id: int


@dataclass(frozen=True, slots=True)
class OtherOwner:
    """``owner`` claims the run at ``term`` (its ReconcileRun, ProbeHoldings or FollowOwner)."""

    run_id: str
    owner: str
    term: int


@dataclass(frozen=True, slots=True)
class ReplicaBroken:
    """The replica of a run being taken over could not be rebuilt (an invalid snapshot)."""

    run_id: str
    request_id: int


TakeoverEvent = Union[
    OwnersDead, GraceElapsed, NodeAnswered, MemberGone, AnswersDue, OtherOwner, ReplicaBroken
]


# -- instructions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfirmLater:
    """Feed ``GraceElapsed`` after ``delay`` seconds."""

    delay: float


@dataclass(frozen=True, slots=True)
class Prebuild:
    """Rebuild these replicas now (used by ``AskNodes`` if still current then)."""

    run_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AskNodes:
    """Take the replica over at ``term``: ask every target what it holds and runs for the run
    (``ReconcileRun`` with ``request_id``), and feed ``AnswersDue`` after ``timeout``."""

    run_id: str
    term: int
    request_id: int
    targets: tuple[tuple[str, str], ...]
    timeout: float


@dataclass(frozen=True, slots=True)
class Restore:
    """Merge the replica with ``holdings`` (node -> its answer) and own the run at ``term``;
    ``seconds`` since the nodes were asked."""

    run_id: str
    term: int
    holdings: Mapping[str, Holdings]
    seconds: float


@dataclass(frozen=True, slots=True)
class StandBack:
    """``owner`` took the run over at ``term``: ours is off."""

    run_id: str
    owner: str
    term: int


@dataclass(frozen=True, slots=True)
class GiveUp:
    run_id: str
    reason: str


TakeoverInstruction = Union[ConfirmLater, Prebuild, AskNodes, Restore, StandBack, GiveUp]


@dataclass
class _Job:
    term: int
    request_id: int
    asked_at: float
    waiting: set[str]
    holdings: dict[str, Holdings] = field(default_factory=dict)


class TakeoverMachine:
    def __init__(
        self,
        name: str,
        grace: float,
        answer_timeout: float = ANSWER_TIMEOUT,
        isolation_hold: float = ISOLATION_HOLD,
    ) -> None:
        self.name = name
        self.grace = grace
        self.answer_timeout = answer_timeout
        self.isolation_hold = isolation_hold
        self._confirming = False  # a ConfirmLater is out and its GraceElapsed not yet in
        self._isolated_since: float | None = None  # when a grace first ended with us alone
        self._jobs: dict[str, _Job] = {}
        self._next_request = 1

    def taking_over(self, run_id: str) -> bool:
        return run_id in self._jobs

    def term_of(self, run_id: str) -> int | None:
        job = self._jobs.get(run_id)
        return job.term if job is not None else None

    def handle(self, event: TakeoverEvent, now: float) -> list[TakeoverInstruction]:
        if isinstance(event, NodeAnswered):
            return self._on_answer(event, now)
        if isinstance(event, OwnersDead):
            return self._on_dead(event)
        if isinstance(event, GraceElapsed):
            return self._on_grace(event, now)
        if isinstance(event, MemberGone):
            return self._on_gone(event.name, now)
        if isinstance(event, AnswersDue):
            job = self._jobs.get(event.run_id)
            if job is None or job.request_id != event.request_id:
                return []
            return [self._restore(event.run_id, now)]
        if isinstance(event, OtherOwner):
            job = self._jobs.get(event.run_id)
            if (
                job is None
                or event.owner == self.name
                or not outranks(event.term, event.owner, job.term, self.name)
            ):
                return []  # (ours outranks it: the shell tells its claimant so)
            del self._jobs[event.run_id]
            return [StandBack(event.run_id, event.owner, event.term)]
        if isinstance(event, ReplicaBroken):
            job = self._jobs.get(event.run_id)
            if job is None or job.request_id != event.request_id:
                return []
            del self._jobs[event.run_id]
            return [GiveUp(event.run_id, "the replica cannot be rebuilt")]
        raise TypeError(f"not a takeover event: {event!r}")

    def _on_dead(self, event: OwnersDead) -> list[TakeoverInstruction]:
        if self._confirming or not event.candidates:
            return []
        self._confirming = True
        fresh = tuple(c.run_id for c in event.candidates if c.run_id not in self._jobs)
        out: list[TakeoverInstruction] = [ConfirmLater(self.grace)]
        if fresh:
            out.append(Prebuild(fresh))
        return out

    def _on_grace(self, event: GraceElapsed, now: float) -> list[TakeoverInstruction]:
        self._confirming = False
        fresh = [c for c in event.candidates if c.run_id not in self._jobs]
        if event.isolated and fresh:
            if self._isolated_since is None:
                self._isolated_since = now
            if now - self._isolated_since < self.isolation_hold:
                self._confirming = True
                return [ConfirmLater(self.grace)]
        self._isolated_since = None
        out: list[TakeoverInstruction] = []
        names = {name for name, _ in event.targets}
        for candidate in event.candidates:
            if candidate.run_id in self._jobs:
                continue
            job = _Job(candidate.term + 1, self._next_request, now, set(names))
            self._next_request += 1
            self._jobs[candidate.run_id] = job
            out.append(
                AskNodes(
                    candidate.run_id, job.term, job.request_id, event.targets, self.answer_timeout
                )
            )
        return out

    def _on_answer(self, event: NodeAnswered, now: float) -> list[TakeoverInstruction]:
        job = self._jobs.get(event.run_id)
        if job is None or job.request_id != event.request_id:
            return []  # a late answer to a takeover that finished or was given up
        job.holdings[event.node] = event.holdings
        job.waiting.discard(event.node)
        return [self._restore(event.run_id, now)] if not job.waiting else []

    def _on_gone(self, name: str, now: float) -> list[TakeoverInstruction]:
        out: list[TakeoverInstruction] = []
        for run_id, job in list(self._jobs.items()):
            job.holdings.pop(name, None)  # what it held died with it
            if name in job.waiting:
                job.waiting.discard(name)
                if not job.waiting:
                    out.append(self._restore(run_id, now))
        return out

    def _restore(self, run_id: str, now: float) -> Restore:
        job = self._jobs.pop(run_id)
        return Restore(run_id, job.term, dict(job.holdings), now - job.asked_at)
