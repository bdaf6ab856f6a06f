"""Dispatch leases (issue 19 item 7): the owner of a replicated run dispatches new attempts of it
only while every standby of the run answered it at the run's term within the last ``lease``
seconds; when that lapses, the run's new dispatches are held (running attempts go on, their
results are kept) until the standbys answer again or the owner learns it was deposed.

Why: quorum fencing (``daemon/fencing.py``) counts the members ALIVE in our view, and a node cut
off from the majority may see the far side go DEAD one member at a time: two of five DEAD while
the third is still ALIVE here is "3 of 5 reachable", so the DEAD verdicts reach the owner before
any fence and it re-dispatched the far side's tasks, which the far side's takeover ran too (about
one run in 80 of tests/cluster/test_fencing_cluster.py). A standby that cannot hear from us is
exactly the node that takes the run over; ``lease`` is shorter than the fastest DEAD verdict
(probe + indirect + suspicion timeouts), so the lease lapses before we judge any member DEAD and
before any standby can judge us DEAD.

Why every standby and not a quorum of the run's replicas (owner and standbys): the takeover rule
(``replication/standby.py``) needs no quorum, only the owner and the standbys ahead DEAD in the
taker's view, so a standby on the far side takes over however many replicas are on our side. With
two standbys in a cluster of five split 2 | 3, one standby may be on our side and would keep a
quorum lease alive; with every standby, the lease lapses as soon as one of them cannot answer.
(A standby crash lapses the leases it held for a DEAD verdict's time: the re-chosen standby
answers and dispatch resumes.)

Changing standbys never extends a lease: a standby added later (membership re-chose it) starts
from the run's oldest answer, so a run re-choosing among the few nodes it still reaches stays held
until they all answer. A standby removed may still hold its replica and take the run over (it was
dropped because it is DEAD here, maybe only cut off): it keeps counting ("departed") until it
answers us at our term, or is out of the quorum's base (``daemon/fencing.py``: LEFT, its host
refused a connection, or DEAD a while during which we were never at risk). After a partition
heals, that answer is how a deposed owner learns of the takeover before it dispatches anything:
the departed standby answers with the new term. A run whose standbys are all gone for good is
unreplicated, as on a node alone. A run newly ours (accepted, taken over) starts with every
standby answered now: no node holds a replica of it at this term before we send one.

Pure: ``watch``/``unwatch``/``acked``/``tick`` in, ``Hold``/``Resume``/``Ask`` out, ``now`` passed
in; the shell (``daemon/leases.py``) asks the standbys and holds the scheduler's dispatches.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Hold:
    """The run's lease lapsed: place none of its tasks until ``Resume``."""

    run_id: str


@dataclass(frozen=True)
class Resume:
    """The run's lease is valid again (or the run no longer needs one): place its tasks."""

    run_id: str


@dataclass(frozen=True)
class Ask:
    """Ask standby ``node`` to answer for ``runs`` ((run id, our term) each)."""

    node: str
    runs: tuple[tuple[str, int], ...]


@dataclass
class _Lease:
    term: int
    answered: dict[str, float] = field(default_factory=dict)  # standby -> its last answer at term
    departed: dict[str, float] = field(default_factory=dict)  # former standby -> the same
    held: bool = False

    def oldest(self, now: float) -> float:
        oldest = min(self.answered.values()) if self.answered else now
        return min(oldest, *self.departed.values()) if self.departed else oldest


def lease_seconds(probe_timeout: float, indirect_timeout: float, suspicion_timeout: float) -> float:
    """Two thirds of the fastest DEAD verdict membership can reach (a probe missed, the indirect
    probes missed, the suspicion not refuted): lapsed before we or a standby judge anyone DEAD."""
    return (probe_timeout + indirect_timeout + suspicion_timeout) * 2 / 3


class Leases:
    """The dispatch leases of the replicated runs this node owns. ``ask_every``: how old a
    standby's last answer may grow before it is asked again (a third of ``lease``: two lost asks
    still leave the lease valid)."""

    def __init__(self, lease: float, ask_every: float | None = None) -> None:
        self.lease = lease
        self.ask_every = lease / 3 if ask_every is None else ask_every
        self._runs: dict[str, _Lease] = {}
        self._asked: dict[str, float] = {}  # standby -> when we last asked it
        self.holds = 0  # leases that lapsed (stats)

    def held(self, run_id: str) -> bool:
        lease = self._runs.get(run_id)
        return lease is not None and lease.held

    def watching(self) -> list[str]:
        return list(self._runs)

    def watching_any(self) -> bool:
        """Some run is watched (else ``tick`` has nothing to judge or ask)."""
        return bool(self._runs)

    def watches(self, run_id: str) -> bool:
        return run_id in self._runs

    def watch(self, run_id: str, term: int, standbys: Iterable[str], now: float) -> list[object]:
        """The run is ours at ``term`` with these standbys (new, re-chosen, or unchanged)."""
        names = tuple(standbys)
        lease = self._runs.get(run_id)
        if lease is None or lease.term != term:
            was_held = lease is not None and lease.held
            self._runs[run_id] = _Lease(term, dict.fromkeys(names, now))
            return [Resume(run_id)] if was_held else []
        if set(names) == set(lease.answered):
            return []
        oldest = lease.oldest(now)
        for name, at in lease.answered.items():
            if name not in names:
                lease.departed[name] = at
        lease.answered = {n: lease.departed.pop(n, lease.answered.get(n, oldest)) for n in names}
        return self._judge(run_id, lease, now)

    def unwatch(self, run_id: str) -> list[object]:
        """No longer ours (stepped down, released, forgotten)."""
        lease = self._runs.pop(run_id, None)
        return [Resume(run_id)] if lease is not None and lease.held else []

    def acked(self, run_id: str, node: str, term: int, now: float) -> list[object]:
        """``node`` answered for the run at ``term`` (a log ack, or an answer to ``Ask``)."""
        lease = self._runs.get(run_id)
        if lease is None or term != lease.term:
            return []
        if node in lease.answered:
            lease.answered[node] = now
        elif lease.departed.pop(node, None) is None:
            return []  # (a departed standby that answers at our term never took the run over)
        return self._judge(run_id, lease, now) if lease.held else []

    def departed(self) -> set[str]:
        """Former standbys still counted for some run (the shell asks about their hosts)."""
        return {n for lease in self._runs.values() for n in lease.departed}

    def tick(
        self, now: float, live: Callable[[str], bool], base: Container[str] | None = None
    ) -> list[object]:
        """Hold or resume the runs ``live`` names (running: something may be dispatched) whose
        lease changed, and ask the standbys whose last answer grew old. ``base``: the quorum's
        (None: all): departed standbys out of it no longer count."""
        out: list[object] = []
        # Per standby: the runs its answer for is half due or more; it is asked (for all of them,
        # so one ask renews what would fall due soon after) when one is due.
        asks: dict[str, list[tuple[str, int]]] = {}
        due: set[str] = set()
        half = self.ask_every / 2
        for run_id, lease in self._runs.items():
            if lease.departed and base is not None:
                for name in [n for n in lease.departed if n not in base]:
                    del lease.departed[name]
            if not (lease.answered or lease.departed or lease.held) or not live(run_id):
                continue
            out += self._judge(run_id, lease, now)
            for answers in (lease.answered, lease.departed):
                for node, at in answers.items():
                    if now - at >= half:
                        asks.setdefault(node, []).append((run_id, lease.term))
                        if now - at >= self.ask_every:
                            due.add(node)
        for node, runs in asks.items():
            if node in due and now - self._asked.get(node, float("-inf")) >= self.ask_every:
                self._asked[node] = now
                out.append(Ask(node, tuple(runs)))
        if len(self._asked) > 1024:  # (standbys come and go: keep the recent ones)
            self._asked = {n: t for n, t in self._asked.items() if now - t < self.ask_every}
        return out

    def _judge(self, run_id: str, lease: _Lease, now: float) -> list[object]:
        lapsed = now - lease.oldest(now) >= self.lease
        if lapsed == lease.held:
            return []
        lease.held = lapsed
        if lapsed:
            self.holds += 1
            return [Hold(run_id)]
        return [Resume(run_id)]
