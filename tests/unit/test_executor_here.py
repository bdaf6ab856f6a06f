"""The executor's answers and reports to our own node's owner: records (``AnsweredHere``,
``ReportedHere``), never messages, carrying what the messages to any other owner carry (issue 13).
The state machine alone: the same events fed to an executor whose run's owner is on its node and
to one whose owner is elsewhere give the same answers, reports, values and outputs."""

from __future__ import annotations

from typing import Any

import pytest
from test_executor_state import per_task

from handoffd.daemon.executor_events import (
    FLUSH,
    AnsweredHere,
    Dispatched,
    OwnerSeen,
    ReportedHere,
    SendMessage,
)
from handoffd.daemon.executor_records import here_message
from handoffd.daemon.executor_state import ExecutorState
from handoffd.protocol import messages as m
from handoffd.protocol.columns import split_frames, tasks_reported_of
from handoffd.protocol.messages_columns import RepliedColumns, ReportColumns
from handoffd.store.store import ResultStore
from handoffd.worker._records import Outcome
from handoffd.worker.ledger import Ledger

RUN = "run-1"
ME, OTHER = "me:1", "owner:1"
CPU = {"cpu": 1.0}


def make() -> ExecutorState:
    return ExecutorState(
        address=ME,
        ledger=Ledger({"cpu": 2.0}),
        store=ResultStore(memory_limit=1 << 30),
        inline_result_bytes=4,
    )


def item(task_id: str, cost: dict[str, float] | None = None) -> m.DispatchItem:
    return m.DispatchItem(task_id, 1, cost or CPU, "variadic", None, 0, ())


def dispatch(st: ExecutorState, owner: str, items: list[m.DispatchItem], term: int = 1) -> list:
    return st.handle(Dispatched(m.DispatchTasks(RUN, owner, tuple(items)), [b"p"], term), 0.0)


def end(st: ExecutorState, task_id: str, outcome: Outcome | None = None) -> list:
    key = (RUN, task_id, 1)
    out = st.tasks_ended([outcome or Outcome(key, True, b"v" + task_id.encode())], 0.0)
    return out + st.handle(FLUSH, 0.0)


def _outcomes() -> list[tuple[str, Outcome]]:
    return [
        ("small", Outcome((RUN, "small", 1), True, b"v", duration=0.002, pid=7, output="hi\n")),
        ("big", Outcome((RUN, "big", 1), True, b"a value too big to go inline", pid=7)),
        ("bad", Outcome((RUN, "bad", 1), False, None, "Boom", "it failed", "tb", kind="error")),
    ]


def _script(owner: str) -> list[list[Any]]:
    """A dispatch (three accepted, one refused), then each task's end and the report flush."""
    st = make()
    items = [item("small"), item("big"), item("bad"), item("huge", {"cpu": 9.0})]
    steps = [dispatch(st, owner, items)]
    for task_id, outcome in _outcomes():
        steps.append(end(st, task_id, outcome))
    return steps


def _messages(steps: list[list[Any]]) -> list[tuple[Any, list[bytes]]]:
    """What each step said to the run's owner, as the message and its frames."""
    said = []
    for out in steps:
        for ins in out:
            if isinstance(ins, (AnsweredHere, ReportedHere)):
                said.append(here_message(ins))
            elif isinstance(ins, SendMessage) and isinstance(ins.msg, ReportColumns):
                frames = split_frames(ins.msg.frame_sizes, ins.frames, "ReportColumns")
                said.append((tasks_reported_of(ins.msg), frames))  # (built as columns)
            elif isinstance(ins, SendMessage) and isinstance(ins.msg, RepliedColumns):
                said.append((per_task(ins.msg), ins.frames))  # (built as columns)
            elif isinstance(ins, SendMessage):
                said.append((ins.msg, ins.frames))
    return said


def test_our_own_owner_gets_records_and_another_owner_gets_messages() -> None:
    here = [i for out in _script(ME) for i in out]
    there = [i for out in _script(OTHER) for i in out]
    assert not [i for i in here if isinstance(i, SendMessage)]
    assert [type(i) for i in here if isinstance(i, (AnsweredHere, ReportedHere))] == [
        AnsweredHere,
        ReportedHere,
        ReportedHere,
        ReportedHere,
    ]
    assert not [i for i in there if isinstance(i, (AnsweredHere, ReportedHere))]
    assert [type(i.msg) for i in there if isinstance(i, SendMessage)] == [
        RepliedColumns,
        ReportColumns,
        ReportColumns,
        ReportColumns,
    ]


def test_a_record_says_what_the_message_says() -> None:
    """Accepted and refused attempts, the ledger and its version, each report (values inline or
    not, errors, history fields) and outputs: the same, record or message."""
    assert _messages(_script(ME)) == _messages(_script(OTHER))


def test_a_record_carries_values_beside_its_reports_not_in_frames() -> None:
    st = make()
    (answer,) = [i for i in dispatch(st, ME, [item("a"), item("b")]) if type(i) is AnsweredHere]
    assert answer.accepted == (("a", 1), ("b", 1)) and answer.refused == ()
    assert answer.free == {"cpu": 0.0} and answer.term == 1
    assert answer.resource_version == st.ledger.version
    st.tasks_ended([Outcome((RUN, "a", 1), True, b"va")], 0.0)
    st.tasks_ended([Outcome((RUN, "b", 1), True, b"a value too big to go inline")], 0.0)
    (reports,) = [i for i in st.handle(FLUSH, 0.0) if type(i) is ReportedHere]
    assert [r.task_id for r in reports.reports] == ["a", "b"]
    assert [r.frame for r in reports.reports] == [-1, -1]  # no frame index to set per report
    assert reports.values == (b"va", None) and reports.outputs == ()
    assert reports.free == {"cpu": 2.0} and reports.resource_version == st.ledger.version
    msg, frames = here_message(reports)
    assert [r.frame for r in msg.reports] == [0, -1] and frames == [b"va"]


@pytest.mark.parametrize("moved_to", [OTHER, ME])
def test_reports_follow_the_run_s_owner_at_the_highest_term(moved_to: str) -> None:
    """Fencing: a run whose owner moved (a takeover) is reported to the new owner, as a record
    when it is on our node and as a message when it is not; a stale dispatch from our own node's
    deposed owner is refused whole, in a record."""
    st = make()
    first = OTHER if moved_to == ME else ME
    dispatch(st, first, [item("a")], term=1)
    st.handle(OwnerSeen(RUN, 2, moved_to, "new"), 0.0)
    out = end(st, "a")
    if moved_to == ME:
        (rec,) = [i for i in out if type(i) is ReportedHere]
        assert rec.term == 2 and not [i for i in out if isinstance(i, SendMessage)]
    else:
        (send,) = [i for i in out if isinstance(i, SendMessage)]
        assert send.address == OTHER and send.term == 2 and type(send.msg) is ReportColumns
        assert not [i for i in out if type(i) is ReportedHere]
    if first == ME:  # our own node's owner, deposed, dispatches again
        (stale,) = [i for i in dispatch(st, ME, [item("b")], term=1) if type(i) is AnsweredHere]
        assert stale.accepted == () and stale.refused[0][:2] == ("b", 1)
        assert "stale term 1" in stale.refused[0][2] and stale.term == 2


def test_a_failed_attempt_s_record_keeps_the_error() -> None:
    st = make()
    dispatch(st, ME, [item("bad")])
    outcome = Outcome((RUN, "bad", 1), False, None, "Boom", "it failed", "tb", kind="timeout")
    (rec,) = [i for i in end(st, "bad", outcome) if type(i) is ReportedHere]
    (report,) = rec.reports
    assert (report.state, report.kind, report.exc_type, report.message, report.traceback) == (
        "FAILED",
        "timeout",
        "Boom",
        "it failed",
        "tb",
    )
    assert rec.values == (None,)
