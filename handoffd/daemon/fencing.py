"""Minority fencing (issue 19): the side of a partition that cannot reach a majority of the last
known alive membership stops acting on its own, and resumes after the heal.

While fenced, a node takes no new runs (``refusal``: the client is told to retry on another node),
its owner dispatches nothing (held until the heal) and its owner and standbys are not told of
failures (held too): on the minority side the majority's nodes look DEAD, and acting on that
re-ran the majority's tasks and took over its runs twice (168 executions for 96 tasks in a 10 s
partition). After the heal the held verdicts are replayed as they stand then (those still DEAD
were really lost).

Pure: ``Quorum.update(members, now)`` from membership's view; the daemon applies the rest
(``daemon/node_reliability.py``, ``daemon/owner.py``).

The base (the last known alive membership) follows the view while we are not fenced: members
join it when seen ALIVE, leave it when LEFT, or when DEAD (or forgotten) for ``evict_after``
seconds during which we were never at risk. That delay is what tells a partition (its far side
turns SUSPECT and DEAD within a few probe rounds, so we are fenced before it ends) from members
failing one after another (each leaves the base in turn, so the survivors keep a quorum). The
unreachable leave it by loss episode, not one by one: an episode runs from a first base member
unreachable to none, and its members leave together once each has been DEAD for ``evict_after``.
So a far side found unreachable member by member (each suspicion ends at its own time: under
load, in a big cluster, or a partition that grows) is judged against the base it had at the
first loss; one by one, each could be DEAD for ``evict_after`` before enough others were
unreachable, the base shrank, and the minority (3 of 7, seen as 3 of 5, then 3 of 4) never
fenced. Members lost more than ``evict_after`` apart (each DEAD for that long before the next is
lost) are still an episode each. A base of fewer than 3 members is never fenced: with 2, each
side of a partition is half, and fencing would stop the survivor of a crash forever.

Members that crashed together (more than half of the base at once) are told from a partition by
their hosts' word: while at risk or fenced the daemon asks the transport whether each unreachable
member's address refuses connections (``Transport.refuses``: host up, nothing listening); those
that do leave the base at once, so the survivors go on within a probe round or two. A partition
never refuses (it times out), so it stays fenced until the heal, or ``fence_max`` (a whole-host
loss of a majority looks like a partition: the cap is how long the survivors wait for it).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from handoffd.protocol import messages as m


class Quorum:
    """``confirm_after``: how long at most half of the base must stay unreachable before we are
    fenced (a loop starved for a moment makes a few peers SUSPECT at once, and they refute within
    a probe round); meanwhile ``at_risk`` is True and the daemon already holds DEAD verdicts back."""

    def __init__(
        self,
        me: str,
        evict_after: float,
        confirm_after: float = 0.0,
        fence_max: float = float("inf"),
        settle_after: float = 0.0,
    ) -> None:
        self.me = me
        # After a fence, verdicts stay held this long (``holding``): the far side hears from us,
        # refutes our suspicions of it, and its takeovers reach us before anything is judged.
        self.settle_after = settle_after
        self._settled_at = float("-inf")
        self.evict_after = evict_after
        self.fence_max = fence_max  # fenced this long: the unreachable are taken for dead
        self._fenced_since = 0.0
        self.confirm_after = confirm_after
        self.base: set[str] = {me}
        self.fenced = False
        self.at_risk = False  # at most half reachable now (fenced once it lasts confirm_after)
        self._risk_since = 0.0
        self.reachable = 1  # base members ALIVE in our view (ourselves included)
        self._down_since: dict[str, float] = {}  # base member -> when it stopped being ALIVE
        self.times_fenced = 0

    def refusal(self) -> str | None:
        """What a client is told while we are fenced (None: not fenced)."""
        if not self.fenced:
            return None
        return (
            f"this node is in a minority partition ({self.reachable} of {len(self.base)} "
            "reachable); retry on another node"
        )

    def holding(self, now: float) -> bool:
        """DEAD verdicts are held back (from membership's timers and from the owner): at risk,
        fenced, or healed less than ``settle_after`` ago. The heal ends the fence as soon as
        one far member answers again; the others are still SUSPECT here, and a verdict on them
        then (their tasks re-run on our side, taken over on theirs meanwhile) was a false one."""
        return self.at_risk or self.fenced or now < self._settled_at

    def unreachable(self) -> list[str]:
        """Base members not ALIVE at the last update (whose addresses the daemon asks about)."""
        return sorted(self._down_since)

    def update(self, members: list[m.MemberState], now: float, gone: Collection[str] = ()) -> bool:
        """Recompute from membership's view; True if ``fenced`` changed. ``gone``: members whose
        address refuses connections (their host is up, their process is not: a crash, never a
        partition), which leave the base as a LEFT member does."""
        status = {s.name: s.status for s in members}
        status[self.me] = m.ALIVE
        back = False  # a base member unreachable until now answers again
        for name in list(self.base):
            st = status.get(name)
            if st == m.LEFT or (st != m.ALIVE and name in gone and name != self.me):
                # its own word, or its host's: it is gone, not cut off
                self.base.discard(name)
                self._down_since.pop(name, None)
            elif st == m.ALIVE:
                back |= self._down_since.pop(name, None) is not None
            else:
                self._down_since.setdefault(name, now)
        self.reachable = sum(1 for name in self.base if status.get(name) == m.ALIVE)
        was, was_risky = self.fenced, self.at_risk
        risky = len(self.base) >= 3 and 2 * self.reachable <= len(self.base)
        if risky and not self.at_risk:
            self._risk_since = now
        self.at_risk = risky
        self.fenced = risky and (was or now - self._risk_since >= self.confirm_after)
        if self.fenced and not was:
            self._fenced_since = now
        if self.fenced and now - self._fenced_since >= self.fence_max:
            # Nobody came back for fence_max: more than half failed at once (kill -9 of the
            # owner and a standby), or the partition outlasts what we wait; go on without them.
            self.base = {n for n in self.base if status.get(n) == m.ALIVE}
            self._down_since.clear()
            self.fenced = self.at_risk = False
            self.reachable = len(self.base)
            return was
        if self.fenced:
            if not was:
                self.times_fenced += 1
            return not was
        if risky:
            return False
        self.base.update(n for n, st in status.items() if st == m.ALIVE)
        if was_risky:  # healed, or a moment at risk passed: who is still down is judged from now
            self._down_since = dict.fromkeys(self._down_since, now)
            if was and back:  # (not when the base shrank to us: gone members send no takeovers)
                self._settled_at = now + self.settle_after
        # A loss episode (from a first base member unreachable to none) leaves the base as a
        # whole, once each of its members has been DEAD (or forgotten) for evict_after: a far
        # side found unreachable member by member, over more than evict_after, is judged
        # against the base it had at the first loss (one member left at a time, the minority
        # saw 3 of 5, then 3 of 4, and was never fenced).
        down = self._down_since
        if down and all(
            now - since >= self.evict_after and status.get(name) in (m.DEAD, None)
            for name, since in down.items()
        ):
            self.base.difference_update(down)
            down.clear()
        return was


class Held:
    """What an owner (``daemon/owner.OwnerIO``) holds back while fenced and just after the heal:
    its dispatches, and the verdicts of its timers (an ack or a probe overdue) that fired."""

    def __init__(self) -> None:
        self.holding = False
        self.delays: dict[Any, float] = {}  # timer key -> its delay (restarted in full later)
        self._dispatches: list[Any] = []
        self._timers: dict[Any, float] = {}

    def dispatch(self, ins: Any) -> bool:
        """True if ``ins`` (a ``Dispatch``) was held back."""
        if self.holding:
            self._dispatches.append(ins)
        return self.holding

    def timer(self, key: Any) -> bool:
        """Timer ``key`` fired: True if its verdict is held back."""
        delay = self.delays.pop(key, 0.0)
        if self.holding:
            self._timers[key] = delay
        return self.holding

    def release(
        self,
        term_of: Callable[[str], int | None],
        dispatch: Callable[[Any], None],
        running: dict[Any, Any],
        start_timer: Callable[[Any, float], None],
    ) -> None:
        """The partition healed a while ago (a run taken over meanwhile has reached us and we
        stepped down): send what was held for runs still ours at that term, and restart the
        timers that fired, each with its whole delay."""
        self.holding = False
        held, self._dispatches = self._dispatches, []
        for ins in held:
            if term_of(ins.run_id) == ins.term:
                dispatch(ins)
        timers, self._timers = self._timers, {}
        for key, delay in timers.items():
            if key not in running:
                start_timer(key, delay)
