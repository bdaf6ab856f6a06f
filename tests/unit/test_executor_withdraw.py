"""The executing node's side of re-placement: a withdrawal drops attempts still waiting in the
local queue (no claim, never started, no report) and keeps the ones that started."""

from __future__ import annotations

from typing import Any

from handoffd.daemon.executor_events import (
    Dispatched,
    Execute,
    Instruction,
    SendMessage,
    Soon,
    TaskEnded,
    WithdrawAsked,
)
from handoffd.daemon.executor_state import ExecutorState
from handoffd.protocol import messages as m
from handoffd.protocol.columns import tasks_reported_of
from handoffd.protocol.messages_columns import ReportColumns
from handoffd.protocol.messages_rebalance import TasksWithdrawn, WithdrawTasks
from handoffd.store.store import ResultStore
from handoffd.worker._records import expand
from handoffd.worker.ledger import Ledger
from handoffd.worker.pool import Outcome

OWNER = "owner:1"


def _state() -> ExecutorState:
    return ExecutorState(
        address="me:1",
        ledger=Ledger({"cpu": 1.0}),
        store=ResultStore(memory_limit=1 << 30),
        inline_result_bytes=1024,
    )


def _run(st: ExecutorState, event: Any, now: float = 0.0) -> list[Instruction]:
    out: list[Instruction] = []
    pending = [event]
    while pending:
        more = st.handle(pending.pop(0), now)
        out += more
        pending += [i.event for i in more if isinstance(i, Soon)]
    return out


def _item(task_id: str, cpu: float) -> m.DispatchItem:
    return m.DispatchItem(task_id, 1, {"cpu": cpu}, "variadic", None, 0, ())


def _answer(out: list[Instruction]) -> TasksWithdrawn:
    (answer,) = [
        i.msg for i in out if isinstance(i, SendMessage) and isinstance(i.msg, TasksWithdrawn)
    ]
    assert [i.address for i in out if isinstance(i, SendMessage)] == [OWNER]
    return answer


def test_a_queued_attempt_is_given_back_a_started_one_kept() -> None:
    st = _state()
    msg = m.DispatchTasks("r", OWNER, (_item("run", 1.0), _item("wait", 0.5)))
    out = _run(st, Dispatched(msg, [b"p"], 2))
    assert [j.key[1] for e in out if isinstance(e, Execute) for j in expand(e.jobs)] == ["run"]
    ask = WithdrawTasks(
        "r", (m.TaskAttempt("wait", 1), m.TaskAttempt("run", 1), m.TaskAttempt("x", 1))
    )
    answer = _answer(_run(st, WithdrawAsked(ask, 2)))
    assert answer.withdrawn == (m.TaskAttempt("wait", 1),)
    assert answer.kept == (m.TaskAttempt("run", 1), m.TaskAttempt("x", 1))
    assert not st.local and ("r", "wait", 1) not in st.tasks
    assert answer.free == {"cpu": 0.0}  # "run" holds the claim; "wait" never had one
    # "run" ends: nothing starts after it, and only "run" is reported
    out = _run(st, TaskEnded(Outcome(("r", "run", 1), True, b"v", duration=0.1)))
    assert not [e for e in out if isinstance(e, Execute)]
    reports = [
        r.task_id
        for i in out
        if isinstance(i, SendMessage) and isinstance(i.msg, ReportColumns)
        for r in tasks_reported_of(i.msg).reports
    ]
    assert reports == ["run"] and st.ledger.idle()


def test_a_withdrawal_from_a_deposed_owner_is_ignored() -> None:
    st = _state()
    msg = m.DispatchTasks("r", OWNER, (_item("run", 1.0), _item("wait", 0.5)))
    _run(st, Dispatched(msg, [b"p"], 3))
    out = _run(st, WithdrawAsked(WithdrawTasks("r", (m.TaskAttempt("wait", 1),)), 2))
    assert out == [] and ("r", "wait", 1) in st.local
    out = _run(st, WithdrawAsked(WithdrawTasks("other", (m.TaskAttempt("wait", 1),)), 9))
    assert out == []  # a run we never ran for: nothing to give back, nobody to answer
