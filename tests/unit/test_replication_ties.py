"""Two claims on a run at one term (race19): the standby's store settles them by (term, owner
name), the higher name keeping the run, whichever order the claims come in."""

from __future__ import annotations

import itertools

from test_replication import log_batch, owner_with_chain, packed

from handoffd.protocol.messages import TaskDelta
from handoffd.replication.standby import StandbyStore, outranks


def test_claims_are_ordered_by_term_then_name() -> None:
    assert outranks(2, "a", 1, "z") and outranks(1, "c", 1, "b")
    assert not outranks(1, "b", 1, "c") and not outranks(1, "b", 1, "b")


def test_the_higher_name_keeps_a_tie_whichever_claim_came_first() -> None:
    for first, second in itertools.permutations(("b", "c")):
        store = StandbyStore("d")
        assert store.new_owner("r1", 1, first, f"{first}:1")
        assert store.new_owner("r1", 1, second, f"{second}:1") == (second == "c")
        assert store.claimant("r1") == "c"
        assert store.loses("r1", 1, "b") and not store.loses("r1", 1, "c")
        assert not store.loses("r1", 2, "a")  # a higher term outranks any name


def test_the_yielding_claimants_snapshot_log_and_drop_are_refused() -> None:
    data = packed(owner_with_chain().snapshot("r1"))
    store = StandbyStore("d")
    ack = store.on_snapshot("r1", 1, 0, "c", "c:1", ("d",), data)
    assert not ack.need_snapshot and store.replicas["r1"].owner == "c"
    # The yielding claimant's snapshot at the same term does not replace the winner's replica.
    store.on_snapshot("r1", 1, 5, "b", "b:1", ("d",), data)
    assert (store.replicas["r1"].owner, store.replicas["r1"].seq) == ("c", 0)
    x_done = TaskDelta("x", "DONE", 1, "d", 3, ("d",), 0, 0, 1, 0)
    ack2 = store.on_log(log_batch(1, (x_done,), term=1), "b:1", [b"v"], "b")
    assert ack2 is not None and store.replicas["r1"].seq == 0  # not applied
    store.drop("r1", 1, "b")
    assert "r1" in store.replicas
    # The winner's own batch applies; its drop drops.
    ack3 = store.on_log(log_batch(1, (x_done,), term=1), "c:1", [b"v"], "c")
    assert ack3 is not None and store.replicas["r1"].seq == 1
    store.drop("r1", 1, "c")
    assert "r1" not in store.replicas


def test_a_replica_of_the_yielding_claimant_is_replaced_by_the_winners() -> None:
    data = packed(owner_with_chain().snapshot("r1"))
    store = StandbyStore("d")
    store.on_snapshot("r1", 1, 7, "b", "b:1", ("d",), data)  # b adopted first, chose us
    assert store.new_owner("r1", 1, "c", "c:1")  # c's claim outranks: b's replica superseded
    replica = store.replicas["r1"]
    assert (replica.owner, replica.superseded) == ("c", 1)
    # c's snapshot (an earlier log position than b's) replaces it; b's batches then need one.
    store.on_snapshot("r1", 1, 0, "c", "c:1", ("d",), data)
    assert (store.replicas["r1"].owner, store.replicas["r1"].seq) == ("c", 0)
    x_done = TaskDelta("x", "DONE", 1, "d", 3, ("d",), 0, 0, 1, 0)
    store.on_log(log_batch(8, (x_done,), term=1), "b:1", [b"v"], "b")
    assert store.replicas["r1"].seq == 0


def test_a_taker_records_its_own_claim() -> None:
    data = packed(owner_with_chain().snapshot("r1"))
    store = StandbyStore("b")
    store.on_snapshot("r1", 0, 0, "a", "a:1", ("b", "c"), data)
    assert store.take("r1") is not None
    assert store.claimant("r1") == "b" and store.term("r1") == 1
    assert not store.new_owner("r1", 1, "a0", "a0:1")  # a lower name at our term yields
    assert store.new_owner("r1", 1, "c", "c:1")  # a higher one does not
