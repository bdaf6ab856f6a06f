"""A dispatch's one-int calls as their start and an int column (protocol 9,
``DispatchColumns.call_start``/``call_ints``): the owner sends them so to a node that reads
them, when every task's payload is a one-int call of one function (``values.one_int_run``);
the receiver rebuilds each payload byte for byte (``columns.received_dispatch``), so what the
executor reads is what it read from the payloads as frames. Anything else (payloads that are not
such calls, tasks sharing a payload, an older node) goes exactly as before, and a malformed
message is refused with a ``ColumnError`` saying which column."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import pytest
from test_protocol_columns import wire

from handoffd import values
from handoffd.config import Limits
from handoffd.daemon import oversize
from handoffd.daemon.dispatch import dispatch_message
from handoffd.protocol import codec
from handoffd.protocol import messages as m
from handoffd.protocol.column_codes import CALL_CLOSE, call_payloads
from handoffd.protocol.columns import (
    ColumnError,
    DispatchTable,
    dispatch_items,
    pack,
    received_dispatch,
)
from handoffd.protocol.messages_columns import CALLS_SINCE, DispatchColumns, reads_calls
from handoffd.scheduler import events as ev
from handoffd.scheduler.outbox import placed_of

pytestmark = pytest.mark.timeout(120)

ADDRESS_OF = {"a": "a:1", "b": "b:1"}.get
COST = {"cpu": 1.0}


def twice(x: int) -> int:
    return 2 * x


CODE = values.dumps_code(twice)


def calls(ints: list[Any]) -> list[bytes]:
    """One ``dumps_call`` payload a literal (the second call of a code: its head cached)."""
    values.dumps_call(CODE, [0], {})
    return [values.dumps_call(CODE, [i], {}) for i in ints]


def dispatch(
    payloads: list[bytes],
    refs: tuple[ev.InputRef, ...] = (),
    placed: bool = True,
    cost: dict[str, float] = COST,
    timeout: float | None = None,
) -> ev.Dispatch:
    items = [
        ev.DispatchedTask(f"t{i}", 1 + i % 3, p, cost, "variadic", timeout, refs, i % 2, 0.5 * i)
        for i, p in enumerate(payloads)
    ]
    return ev.Dispatch("b", "r", 4, placed_of(items) if placed else tuple(items))


def received(ins: ev.Dispatch, reads: bool) -> tuple[DispatchColumns, list[bytes], Any]:
    """The message and frames the owner sends (to a node that reads calls or not), and what the
    node reads of them after the codec (per-task form, logical frames)."""
    msg, frames = dispatch_message(ins, "a:1", ADDRESS_OF, ("pkg",), None, reads)
    got, sent = wire(msg, frames)
    assert isinstance(got, DispatchColumns)
    table, logical = received_dispatch(got, sent)
    return msg, frames, (table.tasks(), [logical[p] for p in table.payloads], table)


@pytest.mark.parametrize("placed", [True, False], ids=("placed", "items"))
@pytest.mark.parametrize("with_inputs", [False, True], ids=("no-inputs", "inputs"))
def test_one_int_calls_go_as_a_start_and_ints_and_read_back_as_the_payloads(
    placed: bool, with_inputs: bool
) -> None:
    ints = [0, 1, -1, 255, 256, 2**31 - 1, -(2**31), 7, 7]
    payloads = calls(ints)
    refs: tuple[ev.InputRef, ...] = ()
    if with_inputs:
        refs = (ev.ValueRef("p", ("b",), b"value"), ev.ValueRef("q", ("a",), None))
    ins = dispatch(payloads, refs, placed)
    msg, frames, (tasks, got, _) = received(ins, True)
    assert msg.call_start == payloads[0][: -4 - len(CALL_CLOSE)]
    assert msg.call_ints == pack("i", ints) and msg.payload_frames == b""
    assert got == payloads  # byte for byte: the executor and the worker see the same payloads
    assert [values.loads_call(p)[1] for p in got] == [[i] for i in ints]
    # what the node reads is what it read from the payloads as frames (an older node's form)
    old_msg, old_frames, (old_tasks, old_got, _) = received(ins, False)
    assert old_msg.call_start == old_msg.call_ints == b"" and old_got == payloads
    assert tasks == old_tasks
    sent = sum(map(len, codec.Codec().encode(msg, sender="a", frames=frames)))
    before = sum(map(len, codec.Codec().encode(old_msg, sender="a", frames=old_frames)))
    assert sent < before - (len(payloads[0]) - 12) * (len(ints) - 1)  # (each start but one)


@pytest.mark.parametrize(
    "payloads",
    [
        pytest.param(lambda: calls([1]), id="one-task"),
        pytest.param(lambda: [values.dumps_call(CODE, [1, 2], {}), *calls([3])], id="two-ints"),
        pytest.param(lambda: [*calls([1]), values.dumps_call(CODE, [2**31], {})], id="past-32"),
        pytest.param(lambda: [*calls([1]), values.dumps_call(CODE, [True], {})], id="bool"),
        pytest.param(lambda: [*calls([1]), values.dumps_call(CODE, ["x"], {})], id="str"),
        pytest.param(lambda: [*calls([1]), values.dumps_call(CODE, [1], {"k": 1})], id="kw"),
        pytest.param(
            lambda: [*calls([1]), values.dumps_call(values.dumps_code(abs), [2], {})],
            id="two-functions",
        ),
        pytest.param(lambda: [pickle.dumps((twice, [i], {})) for i in range(3)], id="pickled"),
        pytest.param(lambda: [b"code"] * 3, id="shared-payload"),
    ],
)
def test_what_is_not_a_run_of_one_int_calls_goes_exactly_as_before(payloads: Any) -> None:
    ins = dispatch(payloads())
    assert dispatch_message(ins, "a:1", ADDRESS_OF, (), None, True) == dispatch_message(
        ins, "a:1", ADDRESS_OF, (), None, False
    )


def test_tasks_sharing_a_call_payload_keep_it_as_one_frame() -> None:
    # (a group of tasks with one payload object: already sent once a message)
    (one,) = calls([5])
    ins = dispatch([one, one, one])
    assert dispatch_message(ins, "a:1", ADDRESS_OF, (), None, True) == dispatch_message(
        ins, "a:1", ADDRESS_OF, (), None, False
    )


@pytest.mark.parametrize(
    ("cost", "timeout"), [({"cpu": 2.0, "gpu": 1.0}, None), (COST, 2.5)], ids=("costs", "timeout")
)
def test_the_whole_columns_build_matches_the_general_one(
    cost: dict[str, float], timeout: float | None
) -> None:
    ins = dispatch(calls(list(range(6))), cost=cost, timeout=timeout)
    _, _, (tasks, got, _) = received(ins, True)
    _, _, (old_tasks, old_got, _) = received(ins, False)
    assert tasks == old_tasks and got == old_got


def test_mixed_costs_go_by_the_general_build_and_still_as_calls() -> None:
    payloads = calls(list(range(4)))
    items = [
        ev.DispatchedTask(f"t{i}", 1, p, {"cpu": 1.0 + i % 2}, "variadic", None, ())
        for i, p in enumerate(payloads)
    ]
    ins = ev.Dispatch("b", "r", 4, placed_of(items))
    msg, _, (tasks, got, _) = received(ins, True)
    assert msg.call_ints == pack("i", [0, 1, 2, 3]) and got == payloads
    assert tasks == received(ins, False)[2][0]


def test_one_int_run_finds_the_start_and_the_ints() -> None:
    payloads = calls([3, -4, 70000])
    found = values.one_int_run(payloads)
    assert found is not None
    start, ints = found
    assert all(p == start + ints[4 * k : 4 * k + 4] + CALL_CLOSE for k, p in enumerate(payloads))
    assert bytes(ints) == pack("i", [3, -4, 70000])
    assert CALL_CLOSE == values._ONE_INT_CLOSE  # (the wire's close is the call form's)
    assert values.one_int_run([]) is None
    # the same sizes, a byte of the start differing: not one start
    other = bytearray(payloads[1])
    other[10] ^= 1
    assert values.one_int_run([payloads[0], bytes(other)]) is None


def test_an_older_node_is_sent_every_payload_and_a_node_of_9_the_calls() -> None:
    state = m.MemberState("b", "b:1", "c", 1, m.ALIVE, COST, COST, 1)
    assert CALLS_SINCE == 9 and reads_calls(state)
    assert not reads_calls(dataclasses.replace(state, protocol_max=CALLS_SINCE - 1))
    assert not reads_calls(None)


def _calls_message(**change: Any) -> DispatchColumns:
    msg, _ = dispatch_message(dispatch(calls([1, 2])), "a:1", ADDRESS_OF, (), None, True)
    assert msg.call_start
    return dataclasses.replace(msg, **change)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"call_ints": b""}, "DispatchColumns.call_ints: 0 bytes, expected 2 x 4"),
        ({"call_ints": pack("i", [1, 2, 3])}, "DispatchColumns.call_ints: 12 bytes, expected 2"),
        ({"call_ints": b"\x00" * 7}, "DispatchColumns.call_ints: 7 bytes, expected 2 x 4"),
        ({"call_start": b""}, "DispatchColumns.call_start: empty, with 8 bytes of call ints"),
        ({"payload_frames": pack("i", [0, 1])}, "DispatchColumns.payload_frames: 8 bytes beside"),
    ],
)
def test_a_malformed_calls_dispatch_is_refused_saying_which_column(
    change: dict[str, Any], says: str
) -> None:
    msg, frames = wire(_calls_message(**change))  # well-typed: the codec lets it through
    with pytest.raises(ColumnError, match=f"^{_escape(says)}"):
        received_dispatch(msg, frames)  # type: ignore[arg-type]


def test_a_calls_dispatch_is_not_read_without_its_frames() -> None:
    msg = _calls_message()
    with pytest.raises(ColumnError, match="carries calls"):
        DispatchTable(msg)
    with pytest.raises(ColumnError, match="carries calls"):
        dispatch_items(msg)
    assert len(dispatch_items(msg, []).items) == 2


def test_call_payloads_needs_a_start_and_one_int_each() -> None:
    assert call_payloads(b"S", pack("i", [1, -1]), 2, "X") == [
        b"S" + pack("i", [1]) + CALL_CLOSE,
        b"S" + pack("i", [-1]) + CALL_CLOSE,
    ]
    with pytest.raises(ColumnError, match="X.call_start: empty"):
        call_payloads(b"", pack("i", [1]), 1, "X")
    with pytest.raises(ColumnError, match="X.call_ints: 4 bytes, expected 2 x 4"):
        call_payloads(b"S", pack("i", [1]), 2, "X")


def test_a_calls_dispatch_with_an_input_past_the_limit_is_refused_not_crashed() -> None:
    refs = (ev.ValueRef("p", ("b",), b"v" * 5000),)
    ins = dispatch(calls([1, 2, 3]), refs)
    msg, frames = dispatch_message(ins, "a:1", ADDRESS_OF, (), None, True)
    assert msg.call_start
    refused = oversize.owner_refusal(msg, frames, Limits(max_frame_bytes=4096), "n1")
    assert refused is not None and refused.refused_ids == ("t0", "t1", "t2")
    # (the calls are small: innocent, placed again)
    assert all("another function's frame" in r for r in refused.refused_reasons)
    assert oversize.owner_refusal(msg, frames, Limits(max_frame_bytes=8192), "n1") is None
    # the receiving node's refusal of it, from its head alone
    head = codec.Codec().encode(msg, sender="a", frames=frames)
    decoded = codec.Codec().decode(head[:1])
    assert decoded is not None
    answer = oversize.refusal(decoded.msg, head, 4096, "n1")
    assert answer is not None and answer[1].refused_ids == ("t0", "t1", "t2")


def _escape(text: str) -> str:
    import re

    return re.escape(text)


@pytest.mark.parametrize("alike", [True, False], ids=("alike", "varied"))
def test_the_whole_build_packs_attempts_priorities_and_ranks_as_given(alike: bool) -> None:
    payloads = calls(list(range(5)))
    items = [
        ev.DispatchedTask(
            f"t{i}", 2 if alike else i, p, COST, "variadic", None, (), -3 if alike else i, 0.0
        )
        for i, p in enumerate(payloads)
    ]
    items[-1] = dataclasses.replace(items[-1], rank=-0.0)  # (equal to 0.0, packed otherwise)
    msg, _ = dispatch_message(
        ev.Dispatch("b", "r", 4, placed_of(items)), "a:1", ADDRESS_OF, (), None, True
    )
    assert msg.call_start
    assert msg.attempts == pack("q", [i.attempt for i in items])
    assert msg.priorities == pack("q", [i.priority for i in items])
    assert msg.ranks == pack("d", [i.rank for i in items])


@pytest.mark.parametrize("protocol", [CALLS_SINCE, CALLS_SINCE - 1], ids=("node-9", "node-8"))
def test_the_owner_sends_calls_only_to_a_node_that_reads_them(protocol: int) -> None:
    from fake_port import FakePort
    from test_daemon_ports import owner_on

    port = FakePort()
    owner = owner_on(port)
    member = dataclasses.replace(port.join("b", cpu=64.0), protocol_max=protocol)
    port.states["b"] = member
    owner.member_updates([member])
    payloads = calls(list(range(8)))
    metas = tuple(
        m.TaskMeta(f"f{i}", (), COST, "variadic", None, None, False, None, None, 0)
        for i in range(8)
    )
    submission = m.SubmitAndWait(7, "r1", metas, 0, "binpack", None, 30.0, 1 << 20, True)
    owner.handle(submission, payloads, b"client", None)
    sent = port.take(DispatchColumns)
    assert sent and sum(len(s.msg.task_ids) for s in sent) == 8
    if protocol >= CALLS_SINCE:
        assert all(s.msg.call_start and not s.frames for s in sent)
    else:
        assert all(not s.msg.call_start and s.msg.payload_frames for s in sent)
    got = []
    for s in sent:  # (what node b reads: each task's payload)
        table, frames = received_dispatch(s.msg, s.frames)
        got += [frames[i] for i in table.payloads]
    assert got == payloads
