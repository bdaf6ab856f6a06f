"""Wire messages of Lifeguard's refinements (swim20): type ids 220-229 only.

``Nack``: the relay of an indirect probe (``PingReq``) got no ``Ack`` from the target in time and
says so to the prober (Lifeguard, Dadgar et al. 2018, section IV.B; memberlist's nackResp). A nack
proves the prober and the relay talk to each other in time, so the failed probe is the target's
fault, not the prober's: the prober's local health score does not grow from it
(``membership/probing.py``). A relay of an older build sends none, and the prober then counts the
failure against itself as before. Same ``message`` decorator and rules as the other feature
modules (append-only types, trailing optional fields only).
"""

from __future__ import annotations

from handoffd.protocol.messages import MemberState
from handoffd.protocol.registry import message


@message(220)
class Nack:
    probe_id: int  # the prober's probe id (from its PingReq)
    target: str  # the member that did not answer the relay
    updates: tuple[MemberState, ...]  # piggybacked gossip, the relay's own state first
