"""``RetentionPolicy``: when a finished run's results are freed and when the run is forgotten.

Unit cases, then a hypothesis state machine: runs end (again, after a takeover restored them), are
collected, dropped (stepped down), and time passes in random steps; every tick's releases and
forgets are checked against the rule stated as sets (what is due), and at the end everything is
forgotten once enough time has passed.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from handoffd.scheduler.retention import (
    ForgetRun,
    ReleaseResults,
    ResultsCollected,
    RetentionPolicy,
    RunDropped,
    RunEnded,
    TimePassed,
)


def test_uncollected_results_are_released_after_keep_results_then_forgotten() -> None:
    policy = RetentionPolicy(keep_results_s=10.0, keep_status_s=5.0)
    assert policy.handle(RunEnded("r"), 100.0) == []
    assert policy.handle(TimePassed(), 109.9) == []
    assert policy.handle(TimePassed(), 110.0) == [ReleaseResults("r", True)]
    assert policy.handle(TimePassed(), 114.9) == []
    assert policy.handle(TimePassed(), 115.0) == [ForgetRun("r")]
    assert policy.tracked() == 0 and policy.handle(TimePassed(), 1e6) == []


def test_collected_results_are_released_at_once_and_the_status_kept_from_then() -> None:
    policy = RetentionPolicy(keep_results_s=600.0, keep_status_s=60.0)
    policy.handle(RunEnded("r"), 0.0)
    assert policy.handle(ResultsCollected("r"), 1.0) == [ReleaseResults("r", True)]
    assert policy.handle(TimePassed(), 60.9) == []
    assert policy.handle(TimePassed(), 61.0) == [ForgetRun("r")]


def test_collecting_a_run_that_has_not_ended_releases_nothing_it_keeps() -> None:
    policy = RetentionPolicy(keep_results_s=1.0, keep_status_s=1.0)
    assert policy.handle(ResultsCollected("running"), 0.0) == [ReleaseResults("running", False)]
    assert policy.tracked() == 0 and policy.handle(TimePassed(), 100.0) == []


def test_a_run_another_owner_took_is_neither_released_nor_forgotten_by_us() -> None:
    policy = RetentionPolicy(keep_results_s=1.0, keep_status_s=1.0)
    policy.handle(RunEnded("r"), 0.0)
    assert policy.handle(RunDropped("r"), 0.5) == []
    assert policy.handle(TimePassed(), 100.0) == [] and policy.tracked() == 0


def test_with_no_status_time_a_tick_releases_and_forgets_in_one_go() -> None:
    policy = RetentionPolicy(keep_results_s=2.0, keep_status_s=0.0)
    policy.handle(RunEnded("a"), 0.0)
    policy.handle(RunEnded("b"), 1.0)
    assert policy.handle(TimePassed(), 2.0) == [ReleaseResults("a", True), ForgetRun("a")]
    assert policy.handle(TimePassed(), 3.0) == [ReleaseResults("b", True), ForgetRun("b")]


def test_a_run_ending_again_restarts_its_retention_time() -> None:
    policy = RetentionPolicy(keep_results_s=10.0, keep_status_s=10.0)
    policy.handle(RunEnded("r"), 0.0)
    policy.handle(RunEnded("s"), 1.0)
    policy.handle(RunEnded("r"), 5.0)  # a takeover restored it, ended
    assert policy.handle(TimePassed(), 11.0) == [ReleaseResults("s", True)]
    assert policy.handle(TimePassed(), 15.0) == [ReleaseResults("r", True)]


def test_an_unknown_event_is_refused_by_name() -> None:
    policy = RetentionPolicy(keep_results_s=1.0)
    try:
        policy.handle("tick", 0.0)  # type: ignore[arg-type]
    except TypeError as exc:
        assert "not a retention event" in str(exc)
    else:
        raise AssertionError("accepted a string as an event")


RUNS = ("r0", "r1", "r2", "r3")


class RetentionMachine(RuleBasedStateMachine):
    """The rule, as sets: a tick releases exactly the ended, unreleased runs at least
    keep_results old, and forgets exactly the released runs at least keep_status old (counting
    releases of the same tick); oldest first; a collect releases at once."""

    @initialize(
        keep_results=st.sampled_from([0.0, 1.0, 2.5, 10.0]),
        keep_status=st.sampled_from([0.0, 1.0, 4.0]),
    )
    def setup(self, keep_results: float, keep_status: float) -> None:
        self.policy = RetentionPolicy(keep_results, keep_status)
        self.keep_results, self.keep_status = keep_results, keep_status
        self.now = 0.0
        self.ended: dict[str, float] = {}  # ended, results not released yet
        self.released: dict[str, float] = {}  # results released, status kept

    @rule(run=st.sampled_from(RUNS))
    def end(self, run: str) -> None:
        assert self.policy.handle(RunEnded(run), self.now) == []
        self.ended[run] = self.now

    @rule(run=st.sampled_from(RUNS))
    def collect(self, run: str) -> None:
        known = run in self.ended or run in self.released
        assert self.policy.handle(ResultsCollected(run), self.now) == [ReleaseResults(run, known)]
        self.ended.pop(run, None)
        if known:
            self.released[run] = self.now

    @rule(run=st.sampled_from(RUNS))
    def drop(self, run: str) -> None:
        assert self.policy.handle(RunDropped(run), self.now) == []
        self.ended.pop(run, None)
        self.released.pop(run, None)

    @rule(dt=st.sampled_from([0.0, 0.5, 1.0, 2.5, 4.0, 10.0]))
    def tick(self, dt: float) -> None:
        self.now += dt
        out = self.policy.handle(TimePassed(), self.now)
        releases = [i.run_id for i in out if isinstance(i, ReleaseResults)]
        forgets = [i.run_id for i in out if isinstance(i, ForgetRun)]
        assert all(i.ended for i in out if isinstance(i, ReleaseResults))
        due = {r for r, at in self.ended.items() if self.now - at >= self.keep_results}
        assert set(releases) == due and len(releases) == len(due)
        assert releases == sorted(releases, key=lambda r: self.ended[r])  # oldest first
        for run in releases:
            del self.ended[run]
            self.released.pop(run, None)
            self.released[run] = self.now
        gone = {r for r, at in self.released.items() if self.now - at >= self.keep_status}
        assert set(forgets) == gone and len(forgets) == len(gone)
        assert forgets == sorted(forgets, key=lambda r: self.released[r])
        for run in forgets:
            del self.released[run]

    @invariant()
    def holds_exactly_the_runs_not_forgotten(self) -> None:
        assert self.policy.tracked() == len(self.ended.keys() | self.released.keys())

    def teardown(self) -> None:
        if not hasattr(self, "policy"):
            return
        # Enough time: every run is released and then forgotten, nothing stays.
        self.tick(self.keep_results + 1.0)
        self.tick(self.keep_status + 1.0)
        assert self.policy.tracked() == 0


TestRetentionMachine = RetentionMachine.TestCase
TestRetentionMachine.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
