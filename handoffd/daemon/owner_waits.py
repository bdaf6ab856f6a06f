"""Clients waiting on a run at its owner (``daemon.owner``), and short runs not replicated yet.

A ``Waiter`` is a client long-polling a run (``WaitRun``, ``GetRunStatus`` with a wait, or the
submitter of a ``SubmitAndWait``): answered when the run ends, or when its wait is over.

``ShortRuns``: a ``SubmitAndWait`` that asks for its results with ``release`` (``Client.execute``)
is replicated to its standbys only if it is still going ``REPLICATE_DELAY`` after it was accepted.
A run that ended before is answered with its outcome at once, and never replicated, when that
outcome is final: it carries every result and releases them, or the run failed or was cancelled.
Replication exists so that a run the client was told about survives its owner; such a client holds
everything the run will ever give it, so a standby would only have been sent the run, asked to
ack it and told to drop it again (three messages, two decodes and a snapshot per run; a third of
a one-task run's CPU at the owner). Safety (DESIGN 3.5) is unchanged: the client hears nothing
before the standbys hold the run unless the answer is final; if the owner dies meanwhile, the
client was told nothing and gets a ConnectionError, as it does today for the RunAccepted it would
hear ``ACCEPT_NOTICE_DELAY`` later (longer than this delay).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from handoffd.daemon.ports import MembersPort, NoReplication, Replicator, Timer
from handoffd.daemon.results import error_info
from handoffd.protocol import messages as m
from handoffd.protocol import outcome_block
from handoffd.protocol.registry import maker

if TYPE_CHECKING:
    from handoffd.daemon.results import ResultFetcher
    from handoffd.scheduler.owned import OwnedRunStatus
    from handoffd.scheduler.owner import OwnerScheduler

TERMINAL = ("DONE", "FAILED", "CANCELLED")

# state, counts, placement, owner, term, standbys, error: what RunStatusReply and RunOutcome share.
StatusFields = tuple[
    str, dict[str, int], dict[str, str], str, int, tuple[str, ...], "m.ErrorInfo | None"
]

# A SubmitAndWait whose run is still going when the standbys hold it hears RunAccepted only if the
# run has not ended this much later: a short run's exchange stays two messages. (A client that
# loses us before it heard either follows nothing and gets a ConnectionError, as it would had we
# died just before answering a SubmitRun; this widens that window by at most this much.)
ACCEPT_NOTICE_DELAY = 0.02
# How long a SubmitAndWait with release may run before it is replicated (see the module doc).
# Its RunAccepted (if it runs longer still) comes this much later than before: 25 ms, not 20.
REPLICATE_DELAY = 0.005

# One per answered run (every one-task execute's reply): the slots filled from C, not through the
# frozen __init__'s object.__setattr__ per field (the same object).
outcome_of = maker(m.RunOutcome)


@dataclass(eq=False)
class Waiter:
    """A client long-polling a run: answered when it ends, or by ``handle`` after its wait."""

    conn: bytes
    request_id: int
    outcome: bool = False  # answer with a RunOutcome (WaitRun, SubmitAndWait), else RunStatusReply
    max_bytes: int = 0  # results the outcome may carry
    release: bool = False  # free the results the outcome carried in full
    wait: float = 0.0
    handle: Timer | None = None
    notice: Timer | None = None  # a SubmitAndWait's delayed RunAccepted
    blocks: bool = False  # a SubmitAndWait whose client reads a complete outcome as one block

    @property
    def may_skip_replication(self) -> bool:
        """A SubmitAndWait that takes its results with release: a run over before
        REPLICATE_DELAY is answered without being replicated (``ShortRuns``)."""
        return self.outcome and self.release and self.wait > 0


class ShortRuns:
    """SubmitAndWait runs accepted but not replicated yet (module doc): each is handed to
    ``replicate(run_id, waiter)`` when its delay is up, unless ``take`` took it first.

    One loop timer serves them all, armed for the oldest held run and left to run out when
    ``take`` empties the hold: a timer per run was made and cancelled on every ``execute``, and
    each cancelled one stayed in the loop's heap until its time came. The delay is the same for
    every run, so the hold's insertion order is its due order."""

    def __init__(self, port: MembersPort, replicate: Callable[[str, Waiter], None]) -> None:
        self._port = port
        self._replicate = replicate
        # run -> (waiter, when it is due); read by ``daemon.lane`` directly (a call less a W3 run)
        self.held: dict[str, tuple[Waiter, float]] = {}
        self._timer: Timer | None = None

    def __len__(self) -> int:
        return len(self.held)

    def hold(self, run_id: str, waiter: Waiter) -> None:
        self.held.pop(run_id, None)  # (at the end: the order stays the due order)
        self.held[run_id] = (waiter, self._port.now() + REPLICATE_DELAY)
        if self._timer is None:
            self._timer = self._port.call_later(REPLICATE_DELAY, self._due)

    def _due(self) -> None:
        self._timer = None
        now = self._port.now()
        due: list[tuple[str, Waiter]] = []
        for run_id, (waiter, when) in self.held.items():
            if when > now:
                self._timer = self._port.call_later(when - now, self._due)
                break
            due.append((run_id, waiter))
        for run_id, _ in due:
            del self.held[run_id]
        for run_id, waiter in due:  # (replicating may hold or take others: the hold is settled)
            self._replicate(run_id, waiter)

    def peek(self, run_id: str) -> Waiter | None:
        """The run's waiter if it is held here, left held."""
        held = self.held.get(run_id)
        return None if held is None else held[0]

    def take(self, run_id: str) -> Waiter | None:
        """The run's waiter if it is still held here (its delay no longer runs), else None."""
        held = self.held.pop(run_id, None)
        return None if held is None else held[0]

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.held.clear()


class Waiting:
    """The owner's answers to clients waiting on its runs (``daemon.owner.OwnerIO`` holds one):
    long polls (``on_wait``), the submitter told once the standbys hold the run (``accepted``),
    outcomes with the results this node holds (``answer``), and the short runs held back from
    replication (``short``). ``free_now(run_id)``: the client took every result (release)."""

    def __init__(
        self,
        port: MembersPort,
        scheduler: OwnerScheduler,
        results: ResultFetcher,
        free_now: Callable[[str], None],
    ) -> None:
        self.port = port
        self.scheduler = scheduler
        self.results = results
        self.replication: Replicator = NoReplication()  # the owner's shell sets the node's
        self._free_now = free_now
        self.waiters: dict[str, list[Waiter]] = {}
        self.short = ShortRuns(port, self.replicate)  # accepted, not replicated yet
        # Held runs answered from their report before it was fed (``daemon.lane``): the results
        # that answer released are freed at the run's end, as ``answer`` frees them after its own.
        self._early: set[str] = set()
        self.early_answers = 0  # runs answered so (tests, benches)

    def close(self) -> None:
        self.short.close()
        for waiters in self.waiters.values():
            for waiter in waiters:
                for timer in (waiter.handle, waiter.notice):
                    if timer is not None:
                        timer.cancel()

    def replicate(self, run_id: str, waiter: Waiter) -> None:
        """Replicate the run, then tell the submitting client (DESIGN 3.5, bounded)."""
        self.replication.run_accepted(run_id, functools.partial(self.accepted, run_id, waiter))

    def run_finished(self, run_id: str) -> None:
        """The run ended: answer its waiters, and its submitter if it was never replicated."""
        for waiter in self.waiters.pop(run_id, []):
            if waiter.handle is not None:
                waiter.handle.cancel()
            self.answer(run_id, waiter)
        if self._early and run_id in self._early:
            self._early.discard(run_id)
            self._free_now(run_id)
            return
        short = self.short.take(run_id)  # answered now if the answer is final
        if short is not None and not self.answer(run_id, short, final=True):
            self.replicate(run_id, short)

    def answered_early(self, run_id: str) -> None:
        """The held submitter of ``run_id`` was sent its final outcome (``daemon.lane``)."""
        self._early.add(run_id)
        self.early_answers += 1

    def run_list(self, request_id: int) -> m.RunList:
        """Every run we own, with its state and counts (``ListRuns``)."""
        runs = []
        for run_id in self.scheduler.runs():
            st = self.scheduler.run_status(run_id)
            if st is not None:
                runs.append(m.RunSummary(run_id, st.state, self.port.name, dict(st.counts)))
        return m.RunList(request_id, tuple(runs))

    def status_reply(self, request_id: int, run_id: str) -> m.RunStatusReply:
        st = self.scheduler.run_status(run_id)
        if st is None:
            known = self.replication.knows(run_id)
            return m.RunStatusReply(request_id, run_id, "UNKNOWN", {}, {}, "", 0, (), None, known)
        return m.RunStatusReply(request_id, run_id, *self._status_fields(run_id, st))

    def _status_fields(self, run_id: str, st: OwnedRunStatus) -> StatusFields:
        """What a status reply and an outcome both say after their ids: state, counts, placement,
        owner, term, standbys, error."""
        return (
            st.state,
            dict(st.counts),
            st.placement,  # made for this status (``status_of``), or a released run's, never changed
            self.port.name,
            st.term,
            self.replication.standbys(run_id),
            error_info(st.error),
        )

    def _all_wanted(self, run_id: str) -> bool:
        """Whether the run's outcome lists every function it was submitted with (no inline ones
        left out) or its ``outputs``: the ids its client derives for a block (``outcome_block``)."""
        run = self.scheduler.run_state(run_id)
        return run is not None and (run.options.outputs is not None or not run.inline)

    def accepted(self, run_id: str, waiter: Waiter) -> None:
        """The standbys hold the run (or were given up on): tell the submitting client. A
        SubmitAndWait hears the outcome now if the run already ended, else RunAccepted first and
        the outcome when it ends."""
        if not waiter.outcome:
            self.port.reply(waiter.conn, m.RunAccepted(waiter.request_id, run_id, self.port.name))
            return
        st = self.scheduler.run_status(run_id)
        if st is not None and st.state not in TERMINAL and waiter.wait > 0:
            waiter.notice = self.port.call_later(
                min(ACCEPT_NOTICE_DELAY, waiter.wait / 2), self._notice, run_id, waiter
            )
        self.on_wait(run_id, waiter)

    def _notice(self, run_id: str, waiter: Waiter) -> None:
        waiter.notice = None
        self.port.reply(waiter.conn, m.RunAccepted(waiter.request_id, run_id, self.port.name))

    def on_wait(self, run_id: str, waiter: Waiter) -> None:
        st = self.scheduler.run_status(run_id)
        taking_over = self.replication.taking_over(run_id)
        if waiter.wait <= 0 or (st is None and not taking_over) or (st and st.state in TERMINAL):
            self.answer(run_id, waiter)
            return
        waiter.handle = self.port.call_later(
            min(waiter.wait, 60.0), self._wait_over, run_id, waiter
        )
        self.waiters.setdefault(run_id, []).append(waiter)

    def _wait_over(self, run_id: str, waiter: Waiter) -> None:
        waiters = self.waiters.get(run_id, [])
        if waiter in waiters:
            waiters.remove(waiter)
            if not waiters:
                del self.waiters[run_id]
        self.answer(run_id, waiter)

    def answer(self, run_id: str, waiter: Waiter, final: bool = False) -> bool:
        """Answer ``waiter``; with ``final`` only if the answer is the run's last word (every
        result carried and released, or the run failed): False, and nothing sent, if not."""
        if waiter.notice is not None:
            waiter.notice.cancel()  # the outcome says more
            waiter.notice = None
        if not waiter.outcome:
            self.port.reply(waiter.conn, self.status_reply(waiter.request_id, run_id))
            return True
        st = self.scheduler.run_status(run_id)
        if st is None:
            # ``known``: a replica or a takeover here, so the client keeps following the run
            known = self.replication.knows(run_id)
            empty = m.RunOutcome(
                waiter.request_id, run_id, "UNKNOWN", {}, {}, "", 0, (), None, (), (), False, known
            )
            self.port.reply(waiter.conn, empty)
            return True
        ids: list[str] = []
        values: list[bytes] = []
        pending: list[str] = []
        if st.state == "DONE" and (waiter.max_bytes > 0 or waiter.release):
            ids, values, pending = self.results.outcome_values(run_id, waiter.max_bytes)
        released = waiter.release and st.state == "DONE" and not pending
        if final and (pending or st.state not in TERMINAL):  # (a final answer releases)
            return False
        block = None
        if released and waiter.blocks and self._all_wanted(run_id):
            block = outcome_block.pack(ids, values)
        fields = self._status_fields(run_id, st)
        if released:
            # The client took every result and we free them: it reads no placement from this
            # outcome (``Client.execute`` returns the values; ``Run.placement()`` asks us), and
            # a big run's placement (a map of every task) was most of the body, packed here and
            # unpacked by the client after the run's last task, with nothing else left to do.
            fields = (fields[0], fields[1], {}, *fields[3:])
        if block is not None:
            # Every value the client submitted for, in its order: one frame, no ids (protocol 7).
            sizes, crc, joined = block
            outcome = outcome_of(
                waiter.request_id, run_id, *fields, (), (), True, False, sizes, crc
            )
            self.port.reply(waiter.conn, outcome, [joined])
        else:
            outcome = outcome_of(
                waiter.request_id,
                run_id,
                *fields,
                tuple(ids),
                tuple(pending),
                released,
            )
            self.port.reply(waiter.conn, outcome, values)
        if released:
            # The client holds every value it wants (the reply is queued on its connection; a
            # client that died meanwhile wanted nothing more): no FreeRunRequest follows.
            self._free_now(run_id)
        return True
