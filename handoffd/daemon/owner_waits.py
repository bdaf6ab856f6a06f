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

from collections.abc import Callable
from dataclasses import dataclass

from handoffd.daemon.ports import MembersPort, Timer

# A SubmitAndWait whose run is still going when the standbys hold it hears RunAccepted only if the
# run has not ended this much later: a short run's exchange stays two messages. (A client that
# loses us before it heard either follows nothing and gets a ConnectionError, as it would had we
# died just before answering a SubmitRun; this widens that window by at most this much.)
ACCEPT_NOTICE_DELAY = 0.02
# How long a SubmitAndWait with release may run before it is replicated (see the module doc).
# Its RunAccepted (if it runs longer still) comes this much later than before: 25 ms, not 20.
REPLICATE_DELAY = 0.005


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

    @property
    def may_skip_replication(self) -> bool:
        """A SubmitAndWait that takes its results with release: a run over before
        REPLICATE_DELAY is answered without being replicated (``ShortRuns``)."""
        return self.outcome and self.release and self.wait > 0


class ShortRuns:
    """SubmitAndWait runs accepted but not replicated yet (module doc): each is handed to
    ``replicate(run_id, waiter)`` when its delay is up, unless ``take`` took it first."""

    def __init__(self, port: MembersPort, replicate: Callable[[str, Waiter], None]) -> None:
        self._port = port
        self._replicate = replicate
        self._held: dict[str, tuple[Waiter, Timer]] = {}

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, run_id: str, waiter: Waiter) -> None:
        timer = self._port.call_later(REPLICATE_DELAY, self._due, run_id)
        self._held[run_id] = (waiter, timer)

    def _due(self, run_id: str) -> None:
        held = self._held.pop(run_id, None)
        if held is not None:
            self._replicate(run_id, held[0])

    def take(self, run_id: str) -> Waiter | None:
        """The run's waiter if it is still held here (its delay no longer runs), else None."""
        held = self._held.pop(run_id, None)
        if held is None:
            return None
        held[1].cancel()
        return held[0]

    def close(self) -> None:
        for _, timer in self._held.values():
            timer.cancel()
        self._held.clear()
