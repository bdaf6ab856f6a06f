"""What a membership message may assert, by who asserts it (issue 11). Anyone who reaches us can
send membership messages (that is how a node joins), so assertions are weighed by who makes them:
- A sender that is not a live member of ours (a stranger: unknown, DEAD or LEFT here) is heard only
  about itself (its own state: that is a join, or a rejoin at a higher incarnation) and about us
  (so we refute); everything else it says is ignored, except in the answer to a push-pull we asked
  for from its address (a seed or a discovered node telling us the cluster, or the other side of a
  healed partition). So one message from a stranger cannot fill our view with thousands of members
  or declare our members DEAD. (Once it is a member it gossips like any member: with a key, only
  key holders get this far.)
- A member's address changes only with a higher incarnation, and while we hold it ALIVE or SUSPECT
  only when the member says so itself (its own state in its own message): a third party cannot
  redirect our traffic for a member to another address (memberlist refuses such "conflicting
  address" updates outright; we let the member move, since a restarted node may get a new port).
- One message adds at most MAX_NEW_PER_MESSAGE members we did not know (the rest come with later
  push-pulls): learning a member costs the daemon ~0.1-0.2 ms (scheduler, replication, log), and
  5,000 at once stalled the loop long enough for peers to suspect us.
- A PingReq is served only for a member, and its target is pinged at the address we know for it;
  at most MAX_RELAYS at a time (each member has one probe in flight and asks ``indirect_probes``
  relays, so a relay serves a few; 5,000 PingReqs were 5,000 pings to as many addresses).
- A push-pull page's SUSPECT or DEAD about a member we hold live is held at first
  (``page_verdict``): a page is its sender's settled view, and after a partition heals each side's
  pages hold the other side DEAD.
- A newer resource view of a member we hold SUSPECT or DEAD is kept but not gossiped on
  (``quiet_resources``): our verdict on it was news once, not each time its resources change.
- Incarnations and resource versions beyond 2**62 are refused: refuting one would overflow the
  wire's integers and make every message of ours unencodable.

The checks are here as pure functions; ``swim.Membership`` applies them.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from handoffd.protocol.messages import ALIVE, DEAD, LEFT, SUSPECT, MemberState

MAX_COUNTER = 1 << 62  # incarnations and resource versions above this are refused
MAX_NEW_PER_MESSAGE = 256  # members one message may add
MAX_RELAYS = 64  # PingReqs served at once
MAX_CLASHES = 64  # addresses remembered as using our name (each is warned about once)

log = logging.getLogger("handoffd.membership")


def from_stranger(
    updates: tuple[MemberState, ...], sender: str, me: str
) -> tuple[MemberState, ...]:
    """What a stranger may say: its own state and its view of us (which we refute)."""
    return tuple(u for u in updates if u.name == sender or u.name == me)


def implausible(u: MemberState) -> bool:
    """Counters no member reaches (a refutation of one would not fit the wire's integers), or a
    status that is none of ours: the codec takes any int, and one such state from a stranger made
    the merge raise (STATUS_NAMES and the status ranks are indexed by it)."""
    return (
        u.incarnation > MAX_COUNTER
        or u.resource_version > MAX_COUNTER
        or u.status not in (ALIVE, SUSPECT, DEAD, LEFT)
    )


def address_conflict(u: MemberState, current: MemberState, firsthand: bool) -> bool:
    """``u`` would move a member to another address without the right to: one incarnation, one
    address; a live member moves only on its own word (``firsthand``: its state in its message)."""
    if u.address == current.address:
        return False
    return u.incarnation <= current.incarnation or (
        current.status in (ALIVE, SUSPECT) and not firsthand
    )


def page_verdict(
    u: MemberState, cur: MemberState, held: dict[str, float], now: float, window: float
) -> MemberState | None:
    """A push-pull page says SUSPECT or DEAD (``u``) of a member we hold live (``cur``): what we
    take of it, None for nothing yet (``held``: name -> when a page first said it; cleared when
    the member's state changes). After a partition heals each side's pages say DEAD (SUSPECT where
    the fenced minority held its verdicts) of every member of the other side: taking them declared
    every member DEAD in the views of its own side, which it then had to refute (n obituaries and
    n refutations through all n views; a page's suspicions, each naming another far-side accuser,
    confirmed one another down to the low bound). So the verdict is held and passed on to the
    member (``Prober._pass_on``; the side that holds it also tells a suspected or DEAD member that
    talks to it: ``Prober._tell``), which refutes if it lives. A verdict a page says again a
    ``window`` or more later (a death whose rumor missed us) becomes a suspicion of ours, as
    memberlist merges a remote DEAD: our own timer and probes decide, and a live member still has
    time to refute."""
    if u.incarnation != cur.incarnation:
        return u  # a verdict on a newer life than we know of: nothing to weigh it against
    first = held.get(u.name)
    if first is None or now - first > 2 * window:
        held[u.name] = now
        return None
    if now - first < window:
        return None
    del held[u.name]
    return None if cur.status == SUSPECT else replace(u, status=SUSPECT)


def quiet_resources(cur: MemberState, state_newer: bool, queued: bool) -> bool:
    """A state of a member we hold SUSPECT or DEAD (``cur``) that is news for its resources only
    (``state_newer`` False: its status does not outrank ours): keep the resources, but do not
    gossip the record on, unless our verdict is still being spread (``queued``). Gossiped, it
    carried our verdict again as fresh news: after a partition healed, the fenced minority still
    held DEAD the far members it had judged before it was fenced (while fewer than half were
    unreachable); the majority's resource updates of those live members reached it, went back out
    with DEAD attached, and the majority took them (DEAD outranks ALIVE at one incarnation) and
    re-placed a live member's tasks. The member refutes with its own resources anyway."""
    return not state_newer and not queued and cur.status in (SUSPECT, DEAD)


def name_clash(me: MemberState, u: MemberState, clashes: set[str]) -> None:
    """``u`` is a state of our name: from another address and ALIVE it is either an earlier life
    of ours (it will be refuted and declared DEAD) or another daemon started with the same
    --name: say so once per address (``clashes``, at most MAX_CLASHES), loudly; names must be
    unique."""
    if (
        u.address != me.address
        and u.status == ALIVE
        and u.address not in clashes
        and len(clashes) < MAX_CLASHES
    ):
        clashes.add(u.address)
        log.warning(
            "another node uses our name %r from %s (we are %s): node names must be unique; "
            "start the other daemon with a different --name",
            me.name,
            u.address,
            me.address,
        )
