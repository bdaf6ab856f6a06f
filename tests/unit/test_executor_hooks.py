"""Lazy serialization hooks on the executing side, events in and instructions out: the consumer's
node drops a hooked edge's serialize step when it holds the value (or the value came inline),
fetches it serialized (``FetchEncoded``, with the hook's payload) when not; the holder runs the
hook as a worker job and answers with its bytes or its error, which fails the waiting attempt
with the hook's exception type."""

from __future__ import annotations

from typing import Any

from handoffd.daemon.executor_events import (
    FLUSH,
    Dispatched,
    Execute,
    HookFailedArrived,
    Instruction,
    SendMessage,
    SetTimer,
    Soon,
    ValuesArrived,
)
from handoffd.daemon.executor_hooks import ENCODE_TIMEOUT, EncodeKey, HookServer, lazy_inputs
from handoffd.daemon.executor_state import ExecutorState
from handoffd.protocol import messages as m
from handoffd.protocol.columns import tasks_reported_of
from handoffd.protocol.messages_columns import ReportColumns
from handoffd.protocol.messages_hooks import EncodeFailed, FetchEncoded
from handoffd.store.store import ResultStore
from handoffd.worker._records import expand
from handoffd.worker.ledger import Ledger
from handoffd.worker.pool import Outcome

RUN, OWNER, ME, PEER = "run-h", "owner:1", "me:1", "peer:1"
HOOK = "c:p:serialize"
PAYLOAD, HOOK_PAYLOAD, DESER_PAYLOAD = b"consumer-code", b"serialize-code", b"deserialize-code"


def hooked_inputs(producer: m.InputRef) -> tuple[m.InputRef, ...]:
    """What the owner dispatches for ``c(Argument("p", ...))``: deserialize <- serialize <- p."""
    return (
        m.InputRef("inline", "c:p:deserialize", (), 2, "variadic", -1),
        m.InputRef("serialize", HOOK, (), 1, "variadic", 0),
        producer,
    )


def state() -> ExecutorState:
    return ExecutorState(
        address=ME,
        ledger=Ledger({"cpu": 2.0}),
        store=ResultStore(memory_limit=1 << 30),
        inline_result_bytes=1 << 10,
    )


def dispatch(st: ExecutorState, inputs: tuple[m.InputRef, ...]) -> list[Instruction]:
    item = m.DispatchItem("c", 1, {"cpu": 1.0}, "variadic", None, 0, inputs)
    msg = m.DispatchTasks(RUN, OWNER, (item,))
    return st.handle(Dispatched(msg, [PAYLOAD, HOOK_PAYLOAD, DESER_PAYLOAD, b"inline-p"], 1), 0.0)


def sent(out: list[Instruction], kind: type) -> list[Any]:
    return [i for i in out if isinstance(i, SendMessage) and isinstance(i.msg, kind)]


def jobs(out: list[Instruction]) -> list[Any]:
    return [job for ex in out if isinstance(ex, Execute) for job in expand(ex.jobs)]


def test_a_value_held_here_reaches_the_consumer_plain_and_no_hook_runs() -> None:
    st = state()
    st.store.put(RUN, "p", b"plain-p")  # the producer ran on this node
    out = dispatch(st, hooked_inputs(m.InputRef("value", "p", (ME,), -1, "variadic", 1)))
    assert not sent(out, FetchEncoded) and not sent(out, m.FetchValues)
    (job,) = jobs(out)
    # the deserialize wrapper gets the plain value in the serialize step's place
    assert job.inputs == [("inline", DESER_PAYLOAD, "variadic", [("value", b"plain-p")])]


def test_a_value_elsewhere_is_fetched_serialized_by_its_holder() -> None:
    st = state()
    out = dispatch(st, hooked_inputs(m.InputRef("value", "p", (PEER,), -1, "variadic", 1)))
    (ask,) = sent(out, FetchEncoded)
    assert ask.address == PEER and ask.frames == [HOOK_PAYLOAD]
    assert (ask.msg.task_id, ask.msg.hook_id, ask.msg.reply_to) == ("p", HOOK, ME)
    (timer,) = [i for i in out if isinstance(i, SetTimer)]
    assert timer.at == ENCODE_TIMEOUT  # a hook runs on the whole value: not the plain 5 s
    # the holder's side: the hook runs as a worker job over the stored value
    holder = ResultStore(memory_limit=1 << 20)
    holder.put(RUN, "p", b"plain-p")
    server = HookServer(holder.get)
    (execute,) = server.asked(ask.msg, ask.frames)
    assert isinstance(execute, Execute) and execute.chain < 0  # never a slot's chain
    (job,) = execute.jobs
    assert job.payload == HOOK_PAYLOAD and job.inputs == [("value", b"plain-p")]
    (answer,) = server.ended(Outcome(job.key, True, b"encoded-p"))
    assert answer.address == ME and answer.frames == [b"encoded-p"]
    out = st.handle(ValuesArrived(answer.msg, answer.frames), 1.0)
    (started,) = jobs(out)
    assert started.inputs == [("inline", DESER_PAYLOAD, "variadic", [("value", b"encoded-p")])]
    assert not st.store.has(RUN, HOOK)  # the job holds the copy; the store drops it


def test_a_holder_without_the_value_answers_missing_and_the_next_is_asked() -> None:
    server = HookServer(ResultStore(memory_limit=1 << 20).get)
    ask = FetchEncoded(7, RUN, "p", HOOK, ME)
    (answer,) = server.asked(ask, [HOOK_PAYLOAD])
    assert answer.msg == m.ValuesFetched(7, RUN, (), (HOOK,)) and server.served == 0


def test_a_failing_serialize_fails_the_consumer_with_the_hooks_error() -> None:
    st = state()
    out = dispatch(st, hooked_inputs(m.InputRef("value", "p", (PEER,), -1, "variadic", 1)))
    (ask,) = sent(out, FetchEncoded)
    key = EncodeKey(ME, ask.msg.request_id, RUN, HOOK)
    why = "serialize hook bad of argument 'p' of function 'c' raised ValueError: no"
    (answer,) = HookServer.ended(Outcome(key, False, None, "HookFailed", why, "tb", "error"))
    assert isinstance(answer.msg, EncodeFailed)
    out = st.handle(HookFailedArrived(answer.msg), 1.0)
    assert Soon(FLUSH) in out
    out = st.handle(FLUSH, 1.0)
    ((report,),) = [tasks_reported_of(i.msg).reports for i in sent(out, ReportColumns)]
    assert (report.task_id, report.kind, report.exc_type) == ("c", "error", "HookFailed")
    assert report.message == why and st.ledger.idle()


def test_an_inline_or_dispatched_value_skips_the_serialize_step() -> None:
    inline_p = m.InputRef("inline", "p", (), 3, "variadic", 1)
    encodes: dict = {}
    inputs = lazy_inputs(hooked_inputs(inline_p), RUN, lambda r, t: False, [b""] * 4, encodes)
    assert [(r.kind, r.task_id, r.parent) for r in inputs] == [
        ("inline", "c:p:deserialize", -1),
        ("inline", "p", 0),
    ] and not encodes.get(RUN)
    carried = m.InputRef("value", "p", (PEER,), 3, "variadic", 1)  # the owner carried it
    inputs = lazy_inputs(hooked_inputs(carried), RUN, lambda r, t: False, [b""] * 4, encodes)
    assert [r.task_id for r in inputs] == ["c:p:deserialize", "p"] and not encodes.get(RUN)


def test_other_inputs_keep_their_order_and_parents() -> None:
    plain = m.InputRef("value", "a", (PEER,), -1, "variadic", -1)
    hooked = tuple(
        m.InputRef(r.kind, r.task_id, r.locations, r.frame, r.argument_inclusion, r.parent + 1)
        if r.parent >= 0
        else r
        for r in hooked_inputs(m.InputRef("value", "p", (PEER,), -1, "variadic", 1))
    )
    encodes: dict = {}
    inputs = lazy_inputs((plain, *hooked), RUN, lambda r, t: False, [b"", b"h", b""], encodes)
    assert [(r.kind, r.task_id, r.parent) for r in inputs] == [
        ("value", "a", -1),
        ("inline", "c:p:deserialize", -1),
        ("value", HOOK, 1),
    ]
    assert encodes == {RUN: {HOOK: ("p", b"h")}} and inputs[2].locations == (PEER,)
