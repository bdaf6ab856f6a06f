"""A client following a run while its owner changes (issue 19, item 6), on scripted nodes and a
fake clock (``ClientPlumbing._run_request``): however long a takeover takes, a reader never gives
up while some node says the run exists ("unknown here, but known": a replica, a takeover under
way); a run id no node knows is ``UnknownRun`` material after one question to each node; a run
every node knows but none takes over is a ``ConnectionError`` saying so, within a bound."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

import pytest

from handoffd import client_conn, errors
from handoffd.client_conn import ClientPlumbing
from handoffd.protocol import messages as m
from handoffd.protocol.messages_code import TaskOutputReply
from handoffd.protocol.messages_observability import TaskHistoryReply

RUN = "r-1"


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


Answer = Callable[[str, float], Any]  # (address, now) -> reply, or an exception to raise


class Scripted(ClientPlumbing):
    """Nodes answering by a script; each answer takes ``per_answer`` seconds (a long poll)."""

    def __init__(self, addresses: list[str], answer: Answer, clock: FakeTime) -> None:
        self.timeout = 5.0
        self._known = list(addresses)
        self._learned = threading.Lock()
        self._unreachable = {}
        self._ids = itertools.count(1)
        self._name = "client"
        self._here = addresses[0]
        self._answer = answer
        self._clock = clock
        self.asked: list[str] = []

    @property  # type: ignore[override]
    def address(self) -> str:
        return self._here

    def _connect(self, address: str, timeout: float | None = None) -> None:
        self._here = address

    def _rotate(self) -> None:
        i = self._known.index(self._here)
        self._here = self._known[(i + 1) % len(self._known)]

    def _learn_members(self) -> None:
        pass

    def _failover_request(self, make: Any, frames: Any = (), timeout: float | None = None) -> Any:
        self.asked.append(self._here)
        self._clock.now += 2.0  # a long poll held by the node
        reply = self._answer(self._here, self._clock.now)
        if isinstance(reply, BaseException):
            raise reply
        return reply, []


def status(state: str, known: bool = False, owner: str = "") -> m.RunStatusReply:
    return m.RunStatusReply(0, RUN, state, {}, {}, owner, 1, (), None, known)


def outcome(state: str, known: bool = False) -> m.RunOutcome:
    return m.RunOutcome(0, RUN, state, {}, {}, "", 1, (), None, (), (), False, known)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(client_conn, "time", fake)
    return fake


NODES = ["a:1", "b:2", "c:3"]  # a: the dead owner; b: taking over; c: the other standby


def _takeover(ends_at: float, make: Callable[[str, bool], Any]) -> Answer:
    """a is gone; b and c know the run (b is taking it over) until ``ends_at``, then b owns it
    and c points at it."""

    def answer(address: str, now: float) -> Any:
        if address == "a:1":
            return errors.ConnectionError("a:1 did not answer")
        if now < ends_at:
            return make("UNKNOWN", True)
        if address == "b:2":
            return make("RUNNING", False)
        return m.RunMoved(0, RUN, "b", "b:2", 1)

    return answer


@pytest.mark.parametrize(
    "make",
    [
        lambda state, known: status(state, known),
        lambda state, known: outcome(state, known),
        lambda state, known: TaskOutputReply(0, RUN, (), 0, state, known),
        lambda state, known: TaskHistoryReply(0, RUN, state, "", 1, 0.0, 0.0, (), known=known),
    ],
    ids=["status", "wait", "logs", "history"],
)
def test_a_takeover_longer_than_the_follow_grace_is_followed_to_the_new_owner(
    clock: FakeTime, make: Callable[[str, bool], Any]
) -> None:
    started = clock.now
    # Three times the follow grace: a 200,000-task takeover on a loaded machine.
    client = Scripted(NODES[1:] + NODES[:1], _takeover(started + 90.0, make), clock)
    client._known = list(NODES)
    reply, _ = client._run_request(lambda rid: None, grace=0.0)
    assert reply.state == "RUNNING"
    assert clock.now >= started + 90.0


def test_results_asked_during_a_takeover_follow_it() -> None:
    fake = FakeTime()
    answer = _takeover(
        fake.now + 90.0,
        lambda state, known: (
            m.Results(0, RUN, (), ("t",), (), known) if known else m.Results(0, RUN, ("t",), ())
        ),
    )
    client = Scripted(NODES[1:] + NODES[:1], answer, fake)
    client._known = list(NODES)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(client_conn, "time", fake)
        reply, _ = client._run_request(lambda rid: None, grace=10.0)
    assert reply.task_ids == ("t",) and not reply.missing


def test_a_run_no_node_knows_is_answered_unknown_after_one_question_to_each(
    clock: FakeTime,
) -> None:
    def answer(address: str, now: float) -> Any:
        return status("UNKNOWN")

    started = clock.now
    client = Scripted(list(NODES), answer, clock)
    reply, _ = client._run_request(lambda rid: None, grace=0.0)
    assert reply.state == "UNKNOWN" and not reply.known
    assert sorted(client.asked) == sorted(NODES)
    assert clock.now - started < 10.0


def test_a_run_known_but_never_taken_over_is_a_bounded_connection_error(clock: FakeTime) -> None:
    def answer(address: str, now: float) -> Any:
        if address == "a:1":
            return errors.ConnectionError("a:1 did not answer")
        return status("UNKNOWN", known=True)

    started = clock.now
    client = Scripted(NODES[1:], answer, clock)  # (the owner is gone from the client's list)
    with pytest.raises(errors.ConnectionError, match="no node took it over"):
        client._run_request(lambda rid: None, grace=0.0)
    assert clock.now - started <= client_conn._FOLLOW_LIMIT + 10.0


def test_a_redirect_to_an_owner_that_forgot_the_run_is_not_followed_for_long(
    clock: FakeTime,
) -> None:
    """A node's stale note of an owner (a run since released and forgotten there) redirects the
    client to a live owner answering plain UNKNOWN: the client gives up after the follow grace,
    not the follow limit."""

    def answer(address: str, now: float) -> Any:
        if address == "b:2":
            return m.RunMoved(0, RUN, "c", "c:3", 1)
        return status("UNKNOWN")

    started = clock.now
    client = Scripted(["b:2", "c:3"], answer, clock)
    reply, _ = client._run_request(lambda rid: None, grace=0.0)
    assert reply.state == "UNKNOWN"
    assert clock.now - started <= client_conn._FOLLOW_GRACE + 10.0


def _changing(state: str, known: bool) -> m.RunStatusReply:
    """The replicated state a standby answers while its owner changes (status19)."""
    if state == "UNKNOWN":
        counts = {"DONE": 3, "READY": 2}
        return m.RunStatusReply(
            0, RUN, "RUNNING", counts, {}, "a", 0, ("b", "c"), None, True, True, "b"
        )
    return status(state, known, owner="b")


def test_a_status_takes_the_replicated_state_at_once_and_a_wait_follows(clock: FakeTime) -> None:
    node = Scripted(NODES, _takeover(clock.now + 100.0, _changing), clock)
    node._here = "b:2"
    started = clock.now
    reply, _ = node._run_request(lambda rid: m.GetRunStatus(rid, RUN, 0.0), changing_ok=True)
    assert reply.changing and reply.counts == {"DONE": 3, "READY": 2} and reply.next_owner == "b"
    assert clock.now - started < 5.0  # one question, not the takeover's 100 s
    reply, _ = node._run_request(lambda rid: m.GetRunStatus(rid, RUN, 0.0))
    assert reply.state == "RUNNING" and not reply.changing and reply.owner == "b"
    assert clock.now - started >= 100.0  # followed to the new owner
