"""``TakeoverMachine``: confirm an owner's death, ask the nodes, restore, or stand back.

Unit cases for each step, then a hypothesis state machine that feeds deaths, graces, answers (to the
current takeover or a stale one), members leaving, timeouts and other owners' claims in any order,
and checks every instruction against the rules (one rule, ``step``: one drawn seed picks an event
whose precondition holds and draws its fields, ``core_strategies.seeded_step``): one confirmation at a time, at most one takeover
per run at a time at the replica's term + 1 with a fresh request id, a restore exactly when every
asked node answered or left or the answers came due, carrying only the answers of nodes that did
not leave since, and never after standing back.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from core_strategies import SEEDS, seeded_step, size, swarm
from hypothesis import note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from handoffd.replication.takeover import Holdings
from handoffd.replication.takeover_machine import (
    AnswersDue,
    AskNodes,
    Candidate,
    ConfirmLater,
    GiveUp,
    GraceElapsed,
    MemberGone,
    NodeAnswered,
    OtherOwner,
    OwnersDead,
    Prebuild,
    ReplicaBroken,
    Restore,
    StandBack,
    TakeoverMachine,
)

ME = "s"
TARGETS = ((ME, "s:1"), ("n1", "n1:1"), ("n2", "n2:1"))
HELD = Holdings({"g": 8}, {})
NOTHING = Holdings({}, {})


def asked(machine: TakeoverMachine, run_id: str = "r", term: int = 3) -> AskNodes:
    assert machine.handle(OwnersDead((Candidate(run_id, term),)), 0.0) == [
        ConfirmLater(0.5),
        Prebuild((run_id,)),
    ]
    (ask,) = machine.handle(GraceElapsed((Candidate(run_id, term),), TARGETS), 1.0)
    assert isinstance(ask, AskNodes)
    return ask


def test_a_death_is_confirmed_after_the_grace_then_every_live_node_is_asked() -> None:
    machine = TakeoverMachine(ME, grace=0.5, answer_timeout=2.0)
    ask = asked(machine)
    assert (ask.run_id, ask.term, ask.targets, ask.timeout) == ("r", 4, TARGETS, 2.0)
    assert machine.taking_over("r") and machine.term_of("r") == 4


def test_a_second_death_during_the_grace_waits_for_the_same_confirmation() -> None:
    machine = TakeoverMachine(ME, grace=0.5)
    assert machine.handle(OwnersDead((Candidate("r", 0),)), 0.0)[0] == ConfirmLater(0.5)
    assert machine.handle(OwnersDead((Candidate("q", 0),)), 0.1) == []
    out = machine.handle(GraceElapsed((Candidate("q", 0), Candidate("r", 0)), TARGETS), 0.5)
    assert [i.run_id for i in out if isinstance(i, AskNodes)] == ["q", "r"]


def test_an_isolated_standby_keeps_confirming_until_the_owner_is_back() -> None:
    """Cut off from everyone, we declare everyone DEAD; after the cut heals that verdict can
    outlive the grace. Alone, we confirm again instead of deposing the owner; its refutation
    (no candidate left) ends it without a takeover."""
    machine = TakeoverMachine(ME, grace=0.5, isolation_hold=3.0)
    machine.handle(OwnersDead((Candidate("r", 0),)), 0.0)
    alone = ((ME, "s:1"),)
    for t in (0.5, 1.0, 2.5):
        assert machine.handle(GraceElapsed((Candidate("r", 0),), alone, True), t) == [
            ConfirmLater(0.5)
        ]
        assert not machine.taking_over("r")
    assert machine.handle(GraceElapsed((), alone, True), 3.0) == []
    assert not machine.taking_over("r")


def test_an_isolated_standby_takes_over_after_the_hold_and_a_peer_ends_the_hold() -> None:
    machine = TakeoverMachine(ME, grace=0.5, isolation_hold=3.0)
    machine.handle(OwnersDead((Candidate("r", 0),)), 0.0)
    alone = ((ME, "s:1"),)
    assert machine.handle(GraceElapsed((Candidate("r", 0),), alone, True), 0.5) == [
        ConfirmLater(0.5)
    ]
    (ask,) = machine.handle(GraceElapsed((Candidate("r", 0),), alone, True), 3.6)
    assert isinstance(ask, AskNodes) and ask.targets == alone  # the survivor of several deaths
    other = TakeoverMachine(ME, grace=0.5, isolation_hold=3.0)
    other.handle(OwnersDead((Candidate("q", 0),)), 0.0)
    other.handle(GraceElapsed((Candidate("q", 0),), alone, True), 0.5)
    (ask,) = other.handle(GraceElapsed((Candidate("q", 0),), TARGETS, False), 1.0)
    assert isinstance(ask, AskNodes) and ask.targets == TARGETS  # a live peer: no more holding


def test_a_refuted_death_asks_nobody() -> None:
    machine = TakeoverMachine(ME, grace=0.5)
    machine.handle(OwnersDead((Candidate("r", 0),)), 0.0)
    assert machine.handle(GraceElapsed((), TARGETS), 0.5) == []
    assert not machine.taking_over("r")


def test_restores_once_every_node_answered_with_their_holdings() -> None:
    machine = TakeoverMachine(ME, grace=0.5)
    ask = asked(machine)
    rid = ask.request_id
    assert machine.handle(NodeAnswered("r", rid, "n1", HELD), 1.2) == []
    assert machine.handle(NodeAnswered("r", rid, ME, NOTHING), 1.3) == []
    out = machine.handle(NodeAnswered("r", rid, "n2", NOTHING), 1.5)
    assert out == [Restore("r", 4, {"n1": HELD, ME: NOTHING, "n2": NOTHING}, 0.5)]
    assert not machine.taking_over("r")
    # A late answer or timeout of the finished takeover changes nothing.
    assert machine.handle(NodeAnswered("r", rid, "n1", HELD), 2.0) == []
    assert machine.handle(AnswersDue("r", rid), 3.0) == []


def test_a_node_that_dies_is_not_waited_for_and_its_answer_does_not_count() -> None:
    machine = TakeoverMachine(ME, grace=0.5)
    rid = asked(machine).request_id
    machine.handle(NodeAnswered("r", rid, "n1", HELD), 1.1)
    machine.handle(NodeAnswered("r", rid, ME, NOTHING), 1.1)
    assert machine.handle(MemberGone("n1"), 1.2) == []  # its copy died with it
    assert machine.handle(MemberGone("n2"), 1.25) == [Restore("r", 4, {ME: NOTHING}, 0.25)]


def test_one_death_can_complete_several_takeovers() -> None:
    machine = TakeoverMachine(ME, grace=0.5)
    machine.handle(OwnersDead((Candidate("a", 0), Candidate("b", 0))), 0.0)
    asks = machine.handle(GraceElapsed((Candidate("a", 0), Candidate("b", 0)), TARGETS[:2]), 0.5)
    for ask in asks:
        assert isinstance(ask, AskNodes)
        machine.handle(NodeAnswered(ask.run_id, ask.request_id, ME, NOTHING), 0.6)
    out = machine.handle(MemberGone("n1"), 0.7)
    assert sorted(i.run_id for i in out if isinstance(i, Restore)) == ["a", "b"]


def test_the_answers_coming_due_restore_with_what_came() -> None:
    machine = TakeoverMachine(ME, grace=0.5)
    rid = asked(machine).request_id
    machine.handle(NodeAnswered("r", rid, "n2", HELD), 1.5)
    assert machine.handle(AnswersDue("r", rid + 99), 2.0) == []  # not this takeover's
    assert machine.handle(AnswersDue("r", rid), 2.0) == [Restore("r", 4, {"n2": HELD}, 1.0)]


def test_stands_back_for_an_owner_whose_claim_outranks_ours_only() -> None:
    machine = TakeoverMachine(ME, grace=0.5)
    asked(machine)
    assert machine.handle(OtherOwner("r", "n1", 3), 1.1) == []  # the old term: not a rival
    assert machine.handle(OtherOwner("r", ME, 9), 1.1) == []  # ourselves
    # Our term, a lower name: a second takeover at our term that yields to ours (race19).
    assert machine.handle(OtherOwner("r", "n1", 4), 1.2) == []
    assert machine.taking_over("r")
    assert machine.handle(OtherOwner("r", "t1", 4), 1.2) == [StandBack("r", "t1", 4)]
    assert not machine.taking_over("r")


def test_two_takeovers_at_one_term_leave_exactly_one_going_on() -> None:
    """Each of two standbys took the run over at term 4 and hears of the other's claim: exactly
    one stands back, the same one whichever hears first."""
    low, high = TakeoverMachine("n1", grace=0.5), TakeoverMachine("n2", grace=0.5)
    for machine in (low, high):
        asked(machine)
    assert high.handle(OtherOwner("r", "n1", 4), 1.1) == []
    assert low.handle(OtherOwner("r", "n2", 4), 1.1) == [StandBack("r", "n2", 4)]
    assert high.taking_over("r") and not low.taking_over("r")


def test_a_broken_replica_gives_the_takeover_up() -> None:
    machine = TakeoverMachine(ME, grace=0.5)
    ask = asked(machine)
    assert machine.handle(ReplicaBroken("r", ask.request_id), 1.0) == [
        GiveUp("r", "the replica cannot be rebuilt")
    ]
    assert not machine.taking_over("r")


RUNS = ("r0", "r1", "r2")
NODES = ("n1", "n2", "n3")


@dataclass
class Job:
    term: int
    request_id: int
    asked_at: float
    waiting: set[str]
    answers: dict[str, Holdings] = field(default_factory=dict)


ACTIONS = (
    "owners_dead",
    "grace_elapsed",
    "answer",
    "member_gone",
    "answers_due",
    "other_owner",
    "time_passes",
)


def some_runs(rng: random.Random) -> list[str]:
    """Up to 3 distinct runs in a random order."""
    return rng.sample(RUNS, size(rng, 0, 3))


class TakeoverRules(RuleBasedStateMachine):
    @initialize(
        grace=st.sampled_from([0.05, 0.5]), timeout=st.sampled_from([0.5, 1.0]), swarm_seed=SEEDS
    )
    def setup(self, grace: float, timeout: float, swarm_seed: int) -> None:
        self.disabled = swarm(random.Random(swarm_seed), ACTIONS)
        note(f"swarm seed {swarm_seed}: left out {sorted(self.disabled)}")
        self.machine = TakeoverMachine(ME, grace, timeout)
        self.grace, self.timeout = grace, timeout
        self.now = 0.0
        self.confirming = False
        self.jobs: dict[str, Job] = {}
        self.request_ids: set[int] = set()
        self.ended: dict[int, str] = {}  # request id -> how its takeover ended

    def feed(self, event: object) -> list[object]:
        return self.machine.handle(event, self.now)  # type: ignore[arg-type]

    def restored(self, run: str) -> Restore:
        job = self.jobs.pop(run)
        self.ended[job.request_id] = "restored"
        return Restore(run, job.term, dict(job.answers), self.now - job.asked_at)

    def actions(self) -> list[tuple[str, Callable[[random.Random], None], bool]]:
        """Every event with whether its precondition holds now."""
        return [
            ("owners_dead", self.owners_dead, True),
            ("grace_elapsed", self.grace_elapsed, self.confirming),
            ("answer", self.answer, True),
            ("member_gone", self.member_gone, True),
            ("answers_due", self.answers_due, True),
            ("other_owner", self.other_owner, True),
            ("time_passes", self.time_passes, True),
        ]

    @rule(seed=SEEDS)
    def step(self, seed: int) -> None:
        seeded_step(seed, self.actions(), self.disabled)

    def owners_dead(self, rng: random.Random) -> None:
        runs, term = some_runs(rng), rng.randint(0, 3)
        out = self.feed(OwnersDead(tuple(Candidate(r, term) for r in runs)))
        if self.confirming or not runs:
            assert out == []
            return
        fresh = tuple(r for r in runs if r not in self.jobs)
        assert out == [ConfirmLater(self.grace)] + ([Prebuild(fresh)] if fresh else [])
        self.confirming = True

    def grace_elapsed(self, rng: random.Random) -> None:
        runs, term = some_runs(rng), rng.randint(0, 3)
        others = rng.sample(NODES, size(rng, 0, len(NODES)))
        live = ((ME, "s:1"), *((n, f"{n}:1") for n in others))
        out = self.feed(GraceElapsed(tuple(Candidate(r, term) for r in runs), live))
        self.confirming = False
        fresh = [r for r in runs if r not in self.jobs]
        assert [i.run_id for i in out] == fresh and all(isinstance(i, AskNodes) for i in out)
        for ask in out:
            assert isinstance(ask, AskNodes)
            assert (ask.term, ask.targets, ask.timeout) == (term + 1, live, self.timeout)
            assert ask.request_id not in self.request_ids
            self.request_ids.add(ask.request_id)
            self.jobs[ask.run_id] = Job(term + 1, ask.request_id, self.now, {n for n, _ in live})

    def answer(self, rng: random.Random) -> None:
        node = rng.choice((ME, *NODES))
        stale = rng.random() < 0.25
        held = rng.choice([HELD, NOTHING])
        # Mostly to a takeover under way (else most answers would be no-ops).
        run = rng.choice(sorted(self.jobs) or RUNS)
        job = self.jobs.get(run)
        request_id = (job.request_id if job else 0) + (1000 if stale else 0)
        out = self.feed(NodeAnswered(run, request_id, node, held))
        if job is None or stale:
            assert out == []
            return
        job.answers[node] = held
        job.waiting.discard(node)
        assert out == ([self.restored(run)] if not job.waiting else [])

    def member_gone(self, rng: random.Random) -> None:
        node = rng.choice(NODES)
        out = self.feed(MemberGone(node))
        expected = []
        for run, job in list(self.jobs.items()):
            job.answers.pop(node, None)
            if node in job.waiting:
                job.waiting.discard(node)
                if not job.waiting:
                    expected.append(self.restored(run))
        assert out == expected

    def answers_due(self, rng: random.Random) -> None:
        run, stale = rng.choice(RUNS), rng.random() < 0.5
        job = self.jobs.get(run)
        request_id = (job.request_id if job else 0) + (1000 if stale else 0)
        out = self.feed(AnswersDue(run, request_id))
        assert out == ([self.restored(run)] if job is not None and not stale else [])

    def other_owner(self, rng: random.Random) -> None:
        run, owner, delta = rng.choice(RUNS), rng.choice((ME, "n1", "t1")), rng.randint(-1, 1)
        job = self.jobs.get(run)
        term = (job.term if job else 1) + delta
        out = self.feed(OtherOwner(run, owner, term))
        if job is not None and owner != ME and (term, owner) > (job.term, ME):
            assert out == [StandBack(run, owner, term)]
            self.ended[self.jobs.pop(run).request_id] = "stood back"
        else:
            assert out == []

    def time_passes(self, rng: random.Random) -> None:
        self.now += rng.choice([0.0, 0.01, 0.3, 1.0])

    @invariant()
    def taking_over_exactly_the_open_jobs(self) -> None:
        if not hasattr(self, "machine"):
            return
        for run in RUNS:
            job = self.jobs.get(run)
            assert self.machine.taking_over(run) == (job is not None)
            assert self.machine.term_of(run) == (job.term if job else None)


TestTakeoverRules = TakeoverRules.TestCase
TestTakeoverRules.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
