"""When a member tells two daemons they share a name (handoffd/daemon/names.py): only for a live
member heard from just now, claimed from another address at no higher incarnation; rate limited."""

from __future__ import annotations

from handoffd.daemon.names import RECENT_S, TELL_EVERY_S, Names, clash_text
from handoffd.protocol import messages as m


def state(address: str, incarnation: int = 3, status: int = m.ALIVE) -> m.MemberState:
    return m.MemberState("b", address, "c", incarnation, status, {}, {}, 0)


def gossip(own: m.MemberState) -> m.Gossip:
    return m.Gossip((own,))


def test_a_claim_from_another_address_of_a_member_heard_just_now_is_a_clash() -> None:
    names = Names()
    known = state("h:1")
    assert names.clash(gossip(known), "b", known, 10.0) is None  # b itself: heard
    # First sighting of the claim: the known one must be heard from after it.
    assert names.clash(gossip(state("h:2", 0)), "b", known, 10.2) is None
    assert names.clash(gossip(known), "b", known, 10.25) is None
    assert names.clash(gossip(state("h:2", 0)), "b", known, 10.3) == ("h:1", "h:2")
    assert names.clash(gossip(state("h:2", 0)), "b", known, 10.35) is None  # told already
    later = 10.3 + TELL_EVERY_S + 1
    names.clash(gossip(known), "b", known, later)
    assert names.clash(gossip(state("h:2", 0)), "b", known, later + 0.1) == ("h:1", "h:2")


def test_a_crashed_node_restarted_elsewhere_or_a_move_is_no_clash() -> None:
    names = Names()
    known = state("h:1")
    names.clash(gossip(known), "b", known, 10.0)
    # not heard from since (it crashed): a restart at a new address
    assert names.clash(gossip(state("h:2", 0)), "b", known, 10.0 + RECENT_S + 0.1) is None
    names.clash(gossip(known), "b", known, 20.0)
    assert names.clash(gossip(state("h:2", 4)), "b", known, 20.1) is None  # moved, on its word
    suspect = state("h:1", status=m.SUSPECT)
    assert names.clash(gossip(state("h:2", 0)), "b", suspect, 20.1) is None


def test_a_restart_right_after_a_kill_is_no_clash_while_the_old_one_stays_silent() -> None:
    names = Names()
    known = state("h:1")
    names.clash(gossip(known), "b", known, 10.0)  # the old process answered, then was killed
    # The restart claims the name 0.1 s later, within RECENT_S of the old one's last word: until
    # the old address speaks again it is no clash, however often the claim comes.
    for i in range(20):
        assert names.clash(gossip(state("h:2", 0)), "b", known, 10.1 + i * 0.02) is None
    # A claim first seen long ago counts afresh: the old one heard since is not enough.
    names.clash(gossip(known), "b", known, 100.0)
    assert names.clash(gossip(state("h:2", 0)), "b", known, 100.1) is None


def test_the_texts_say_who_stops_and_how_to_fix_it() -> None:
    assert "this one (at h:2) stops" in clash_text("b", "h:2", "h:1", True)
    assert "another --name" in clash_text("b", "h:2", "h:1", True)
    assert "keeps running" in clash_text("b", "h:1", "h:2", False)
