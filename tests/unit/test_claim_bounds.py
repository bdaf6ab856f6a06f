"""The claim and term tables stay bounded (issue 19 item 4, claims19): a standby used to keep
one ``terms`` and one ``claims`` entry, and the shell one ``_moved`` entry, for every run it
ever heard of, whoever named it (a peer can name any run id in a log batch or a FollowOwner).
Now a forgotten run's entries go, a finished run's go with its replica, and past ``limit`` the
oldest entries of runs held as no replica go (never those of a replica held or a run kept),
with a warning."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fake_port import envelope
from test_daemon_ports import replica_of, standby_node

from handoffd.protocol import messages as m
from handoffd.replication.standby import StandbyStore


def _log(run_id: str, term: int, state: str = "RUNNING") -> m.ReplicateLog:
    return m.ReplicateLog(run_id, term, 0, ("b",), (), state, False, None)


def test_terms_of_runs_held_as_no_replica_stay_under_the_limit() -> None:
    store = StandbyStore("b", limit=100)
    pruned: list[tuple[int, int]] = []
    store.on_pruned = lambda dropped, left: pruned.append((dropped, left))
    for i in range(20):  # replicas held: never pruned
        store.on_snapshot(f"held{i}", 3, 0, "a", "a:1", ("b",), b"")
    store.keep = lambda run_id: run_id == "mine"
    store.seen_term("mine", 7, "b")
    for i in range(10_000):  # a peer names run after run
        store.on_log(_log(f"r{i}", 1), "a:1", [], "a")
        store.new_owner(f"f{i}", 2, "a", "a:1")
        assert len(store.terms) <= 100 + 21 and len(store.claims) <= len(store.terms)
    assert all(store.term(f"held{i}") == 3 for i in range(20)) and store.term("mine") == 7
    assert store.term("f9999") == 2 and store.term("r9999") == 1  # the newest kept
    assert store.term("r0") == 0  # the oldest gone
    assert pruned and sum(d for d, _ in pruned) == store.pruned == 20_000 + 21 - len(store.terms)


def test_a_raised_term_counts_as_new_for_the_order() -> None:
    store = StandbyStore("b", limit=4)
    for run_id in ("r1", "r2", "r3", "r4"):
        store.seen_term(run_id, 0, "a")
    store.seen_term("r1", 1, "c")  # a takeover: r1 is the newest now
    store.seen_term("r5", 0, "a")  # at the limit: down to 3, oldest first, then r5
    assert list(store.terms) == ["r3", "r4", "r1", "r5"] and store.claimant("r1") == "c"


def test_a_finished_replica_dropped_takes_its_term_with_it_a_running_one_not() -> None:
    store = StandbyStore("b")
    for run_id in ("done", "running"):
        store.on_snapshot(run_id, 1, 0, "a", "a:1", ("b",), b"")
        store.on_log(
            m.ReplicateLog(run_id, 1, 1, ("b",), (), run_id.upper(), False, None), "a:1", [], "a"
        )
        store.drop(run_id, 1, "a")
    assert "done" not in store.terms and "done" not in store.claims
    assert store.term("running") == 1  # (re-chosen standbys: the run goes on elsewhere)
    store.forget("running")
    assert store.term("running") == 0
    store.on_snapshot("held", 1, 0, "a", "a:1", ("b",), b"")
    store.forget("held")  # (a replica held keeps its fencing)
    assert store.term("held") == 1


def test_the_shell_bounds_what_a_peer_can_make_it_hold(caplog: Any) -> None:
    port, replication, _, _ = standby_node()
    msg, frame = replica_of()
    replication.handle(msg, [frame], envelope("o"))
    replication.standby.limit = 64
    caplog.set_level(logging.WARNING, logger="handoffd.replication")
    for i in range(2_000):
        replication.handle(_log(f"x{i}", 1), [], envelope("n"))
        replication.handle(m.FollowOwner(f"y{i}", 1, "n", "n:1"), [], envelope("n"))
    assert len(replication.standby.terms) <= 64 + 1
    assert len(replication.standby.claims) <= 64 + 1
    assert len(replication._moved) <= 64
    assert "r1" in replication.standby.replicas and replication.standby.term("r1") == 0
    assert replication.standby.claimant("r1") == "o"
    text = caplog.text
    assert "forgot the terms of" in text and "forgot where" in text


@pytest.mark.parametrize("limit", [1, 2, 3])
def test_tiny_limits_never_prune_what_is_held(limit: int) -> None:
    store = StandbyStore("b", limit=limit)
    for i in range(5):
        store.on_snapshot(f"held{i}", 1, 0, "a", "a:1", ("b",), b"")
    for i in range(50):
        store.seen_term(f"r{i}", 0, "a")
    assert all(f"held{i}" in store.terms for i in range(5))
    assert len(store.terms) <= 5 + limit
