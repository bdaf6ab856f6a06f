"""The invariants of a ``swim.Membership`` that the tests check after every step (kept out of
swim.py, which stays within the module size; they read its private fields on purpose)."""

from __future__ import annotations

from typing import Any

from handoffd.membership.lifeguard import MAX_HEALTH
from handoffd.protocol.messages import ALIVE, LEFT, STATUS_NAMES, SUSPECT


def check(membership: Any) -> None:
    """Assert the view's invariants (AssertionError names the first one broken)."""
    assert membership.name in membership._members, "self missing"
    me = membership.me
    assert me.status == (LEFT if membership._left else ALIVE), f"self is {STATUS_NAMES[me.status]}"
    for name, m in membership._members.items():
        assert m.state.name == name, (name, m.state)
        assert m.state.cluster == membership.cluster, f"foreign member {m.state}"
        assert (m.state.status == SUSPECT) == (m.suspect_deadline is not None), m
    assert set(membership._queue) <= set(membership._members), (
        "gossip queue names an unknown member"
    )
    # The queue's buckets are threaded through the view's records (gossip.py): a record is
    # queued iff its name is, and the queue files the view's record, not an older one.
    for name, m in membership._members.items():
        assert (m.qcount >= 0) == (name in membership._queue), (name, m.qcount)
    counts = membership._queue.counts()
    for name, count in counts.items():
        assert membership._members[name].qcount == count, (name, count)
    assert sum(len(b) for b in membership._queue.buckets().values()) == len(counts)
    membership._index.validate()
    assert 0 <= membership._health.score <= MAX_HEALTH
    for m in membership._members.values():
        assert (m.state.status == SUSPECT) == (m.suspicion is not None), m
