"""Dispatch leases (replication/lease.py): pure, standbys' answers in, holds and asks out."""

from __future__ import annotations

from handoffd.replication.lease import Ask, Hold, Leases, Resume, lease_seconds

LEASE = 0.6


def live(run_id: str) -> bool:
    return True


def watched(*standbys: str) -> Leases:
    leases = Leases(LEASE)
    assert leases.watch("r", 1, standbys, 0.0) == []
    return leases


def asks(out: list[object]) -> dict[str, tuple[tuple[str, int], ...]]:
    return {i.node: i.runs for i in out if isinstance(i, Ask)}


def verdicts(out: list[object]) -> list[object]:
    return [i for i in out if not isinstance(i, Ask)]


def test_a_run_newly_ours_dispatches_at_once_and_its_standbys_keep_it_going() -> None:
    leases = watched("b", "c")
    assert verdicts(leases.tick(0.1, live)) == [] and not leases.held("r")
    # Quiet: no log batch, so no ack; past a third of the lease each standby is asked.
    out = leases.tick(0.2, live)
    assert asks(out) == {"b": (("r", 1),), "c": (("r", 1),)} and not leases.held("r")
    assert leases.tick(0.25, live) == []  # asked already: not again within ask_every
    assert leases.acked("r", "b", 1, 0.3) == [] and leases.acked("r", "c", 1, 0.3) == []
    assert verdicts(leases.tick(0.55, live)) == [] and not leases.held("r")
    assert verdicts(leases.tick(0.85, live)) == [] and not leases.held("r")


def test_one_silent_standby_holds_the_run_and_its_answer_resumes_it() -> None:
    # A quorum of the run's replicas (us and b) would still hold: the lease needs every standby,
    # since c (cut off with the far side) takes the run over however many replicas we reach.
    leases = watched("b", "c")
    assert asks(leases.tick(0.25, live)) == {"b": (("r", 1),), "c": (("r", 1),)}
    assert leases.acked("r", "b", 1, 0.35) == []
    assert asks(leases.tick(0.5, live)) == {"c": (("r", 1),)}  # b answered 0.15 s ago
    assert verdicts(leases.tick(0.55, live)) == [] and not leases.held("r")
    out = leases.tick(0.65, live)
    assert verdicts(out) == [Hold("r")] and leases.held("r") and leases.holds == 1
    assert Hold("r") not in leases.tick(0.7, live)  # said once
    assert asks(leases.tick(0.9, live)) == {"b": (("r", 1),), "c": (("r", 1),)}  # still asked
    assert leases.acked("r", "c", 1, 0.95) == []  # b answered too long ago (0.35)
    assert leases.acked("r", "b", 1, 1.0) == [Resume("r")] and not leases.held("r")


def test_an_answer_at_another_term_or_from_a_non_standby_renews_nothing() -> None:
    leases = watched("b")
    assert verdicts(leases.tick(0.6, live)) == [Hold("r")]
    assert leases.acked("r", "b", 0, 0.7) == []  # an older term's replica
    assert leases.acked("r", "x", 1, 0.7) == []  # not a standby of the run
    assert leases.acked("other", "b", 1, 0.7) == []  # not watched
    assert leases.held("r")
    assert leases.acked("r", "b", 1, 0.8) == [Resume("r")]


def test_a_standby_chosen_later_never_extends_the_lease() -> None:
    # The one-member-at-a-time partition: our view drops c (DEAD) while e, cut off too, is still
    # ALIVE here; re-chosen standbys must not make the lease valid again.
    leases = watched("b", "c")
    leases.acked("r", "b", 1, 0.5)
    assert verdicts(leases.tick(0.65, live)) == [Hold("r")]
    assert leases.watch("r", 1, ("b", "e"), 0.7) == []  # e inherits c's answer at 0.0
    assert leases.held("r") and leases.departed() == {"c"}
    assert leases.acked("r", "b", 1, 0.8) == [] and leases.acked("r", "e", 1, 0.8) == []
    assert leases.held("r")  # c may have taken the run over: it still counts
    assert leases.acked("r", "c", 1, 0.9) == [Resume("r")]  # it answers at our term: it did not
    assert leases.departed() == set()
    # A healthy run re-choosing keeps going: the newcomer starts from the oldest answer (0.8)
    # and is asked at once.
    assert leases.watch("r", 1, ("b", "e", "f"), 1.05) == [] and not leases.held("r")
    assert asks(leases.tick(1.06, live)) == {"b": (("r", 1),), "e": (("r", 1),), "f": (("r", 1),)}
    for name in "bef":
        assert leases.acked("r", name, 1, 1.1) == []
    assert verdicts(leases.tick(1.45, live)) == [] and not leases.held("r")


def test_a_departed_standby_counts_until_it_answers_or_leaves_the_base() -> None:
    leases = watched("b", "c")
    leases.acked("r", "b", 1, 0.5)
    leases.acked("r", "c", 1, 0.5)
    assert leases.watch("r", 1, ("b",), 0.6) == []  # c DEAD here: dropped from the standbys
    assert leases.departed() == {"c"}
    assert asks(leases.tick(0.75, live)) == {"b": (("r", 1),), "c": (("r", 1),)}  # c asked too
    leases.acked("r", "b", 1, 0.8)
    assert verdicts(leases.tick(1.1, live)) == [Hold("r")]
    # still in the quorum's base (we may be the ones cut off): held
    assert verdicts(leases.tick(1.2, live, base={"a", "b", "c"})) == []
    assert leases.held("r")
    # out of it (LEFT, refused, or DEAD a while with us never at risk): gone for good
    assert verdicts(leases.tick(1.3, live, base={"a", "b"})) == [Resume("r")]
    assert leases.departed() == set()
    # A departed standby chosen again counts as a standby, with its own last answer.
    leases.acked("r", "b", 1, 1.3)
    leases.watch("r", 1, ("b", "d"), 1.35)
    leases.watch("r", 1, ("b",), 1.4)
    assert leases.departed() == {"d"}
    leases.watch("r", 1, ("b", "d"), 1.45)
    assert leases.departed() == set() and not leases.held("r")


def test_a_run_left_without_standbys_for_good_is_unaffected() -> None:
    leases = watched("b", "c")
    leases.acked("r", "b", 1, 0.5)
    assert verdicts(leases.tick(0.65, live)) == [Hold("r")]
    leases.watch("r", 1, (), 0.7)  # both DEAD here: departed, held until they leave the base
    assert verdicts(leases.tick(0.8, live, base={"a", "b", "c"})) == [] and leases.held("r")
    assert verdicts(leases.tick(0.9, live, base={"a"})) == [Resume("r")]
    assert verdicts(leases.tick(5.0, live)) == [] and not leases.held("r")
    # A run that never had one (a node alone, a short run) is never held.
    leases.watch("alone", 0, (), 0.0)
    assert leases.tick(10.0, live) == [] and not leases.held("alone")


def test_a_new_term_starts_afresh_and_a_run_dropped_is_let_go() -> None:
    leases = watched("b")
    assert verdicts(leases.tick(0.6, live)) == [Hold("r")]
    # taken over again by us at a higher term (a new replica was sent to each standby)
    assert leases.watch("r", 2, ("c",), 1.0) == [Resume("r")]
    assert verdicts(leases.tick(1.2, live)) == [] and not leases.held("r")
    assert verdicts(leases.tick(1.6, live)) == [Hold("r")]
    assert leases.unwatch("r") == [Resume("r")] and leases.watching() == []
    assert leases.unwatch("r") == []


def test_runs_not_running_are_neither_judged_nor_asked_about() -> None:
    leases = watched("b")
    assert leases.tick(5.0, lambda run_id: False) == [] and not leases.held("r")
    assert leases.tick(5.0, live) == [Hold("r"), Ask("b", (("r", 1),))]


def test_one_ask_per_standby_covers_all_its_runs_due_or_soon_due() -> None:
    leases = Leases(LEASE)
    for run_id in ("r1", "r2", "r3", "r4"):
        leases.watch(run_id, 4, ("b", "c"), 0.0)
    leases.acked("r2", "c", 4, 0.15)  # fresh: not asked about
    leases.acked("r4", "c", 4, 0.05)  # half due: asked about with the others
    out = leases.tick(0.2, live)
    assert asks(out) == {
        "b": (("r1", 4), ("r2", 4), ("r3", 4), ("r4", 4)),
        "c": (("r1", 4), ("r3", 4), ("r4", 4)),
    }
    leases.acked("r1", "c", 4, 0.2)
    leases.acked("r3", "c", 4, 0.2)
    leases.acked("r4", "c", 4, 0.2)
    assert asks(leases.tick(0.3, live)) == {}  # r2 (0.15) is half due, nothing of c is due


def test_the_lease_lapses_before_the_fastest_dead_verdict() -> None:
    # probe + indirect + suspicion timeouts: lan() 0.1 + 0.2 + 0.6 s
    assert abs(lease_seconds(0.1, 0.2, 0.6) - 0.6) < 1e-9
    assert lease_seconds(0.1, 0.2, 0.6) < 0.1 + 0.2 + 0.6
