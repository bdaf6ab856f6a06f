"""Codec: append-only type numbers, validation, fuzzing and round trips (every type's golden bytes:
test_codec_golden.py; versions and evolution: test_protocol_compat.py)."""

from __future__ import annotations

import sys
import types
import typing
from typing import Any, Union

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handoffd.config import PROTOCOL_MAX, PROTOCOL_MIN, Limits
from handoffd.protocol import codec, schema
from handoffd.protocol.codec import Codec
from handoffd.protocol.messages import (
    ALIVE,
    MESSAGES,
    STRUCTS,
    MemberState,
    Ping,
    RunStatusReply,
)

MEMBER = MemberState("n1", "127.0.0.1:7788", "default", 3, ALIVE, {"cpu": 4.0}, {"cpu": 2.5}, 7)
V = (PROTOCOL_MIN, PROTOCOL_MAX)  # this build's envelope prefix

# Type numbers are append-only: entries may be added, never renumbered or removed.
PINNED_TYPES = {
    1: "Ping", 2: "Ack", 3: "PingReq", 4: "PushPull", 5: "IndirectAck", 6: "Gossip",
    20: "ListNodes", 21: "NodeList", 22: "ErrorReply", 23: "SubmitRun", 24: "RunAccepted",
    25: "RunRejected", 26: "GetRunStatus", 27: "RunStatusReply", 28: "FetchResults",
    29: "Results", 30: "CancelRun", 31: "ListRuns", 32: "RunList", 33: "StopNode", 34: "Ok",
    35: "FreeRunRequest", 36: "SubmitAndWait", 37: "WaitRun", 38: "RunOutcome",
    40: "DispatchTasks", 41: "DispatchReplied", 42: "TasksReported",
    43: "FetchValues", 44: "ValuesFetched", 45: "CancelTasks", 46: "FreeRun",
    47: "FreeValues",
    60: "ReplicateRun", 61: "ReplicateLog", 62: "ReplicaAcked", 63: "DropReplica",
    64: "ReconcileRun", 65: "RunHoldings", 66: "RunMoved", 67: "FollowOwner",
    68: "ProbeHoldings", 69: "HoldingsProbed", 490: "SubmitColumns",
}  # fmt: skip


def test_envelope_carries_the_range_type_and_counters() -> None:
    frames = codec.encode(Ping(5, (MEMBER,)), sender="n1", incarnation=2, seq=9)
    assert msgpack.unpackb(frames[0])[:7] == [*V, 1, "n1", 2, 0, 9]
    decoded = codec.decode(frames)
    assert decoded is not None
    assert decoded.msg == Ping(5, (MEMBER,))
    assert decoded.envelope == codec.Envelope(*V, 1, "n1", 2, 0, 9)
    assert decoded.frames == []


def test_type_numbers_are_append_only() -> None:
    current = {number: cls.__name__ for number, cls in MESSAGES.items()}
    for number, name in PINNED_TYPES.items():
        assert current.get(number) == name, f"message type {number} must stay {name}"


def test_opaque_frames_pass_through_uncopied() -> None:
    big = bytearray(b"v" * 100_000)
    view = memoryview(big)
    frames = codec.encode(Ping(1, ()), sender="a", frames=[view, b"x"])
    assert frames[1] is view and frames[2] == b"x"
    decoded = codec.decode([bytes(f) for f in frames])
    assert decoded is not None and decoded.frames == [bytes(big), b"x"]


def test_encode_rejects_wrong_types_with_the_field_name() -> None:
    with pytest.raises(TypeError, match="Ping.probe_id"):
        codec.encode(Ping("1", ()), sender="a")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Ping.probe_id"):
        codec.encode(Ping(True, ()), sender="a")  # bool is not an int on the wire
    with pytest.raises(TypeError, match="64 bits"):
        codec.encode(Ping(1 << 70, ()), sender="a")
    bad_member = MemberState("n", "a", "c", 1, 0, {"cpu": "4"}, {}, 0)  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="MemberState.capacity"):
        codec.encode(Ping(1, (bad_member,)), sender="a")
    with pytest.raises(TypeError, match="Ping.updates"):
        codec.encode(Ping(1, [MEMBER]), sender="a")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not a registered message"):
        codec.encode(MEMBER, sender="a")


def test_float_fields_accept_ints_and_optional_structs() -> None:
    status = RunStatusReply(1, "r", "RUNNING", {"DONE": 2}, {"t": "n1"}, "n1", 3, ("n2",), None)
    decoded = codec.decode(codec.encode(status, sender="n1"))
    assert decoded is not None and decoded.msg == status
    member = MemberState("n", "a", "c", 1, 0, {"cpu": 4}, {}, 0)
    decoded = codec.decode(codec.encode(Ping(1, (member,)), sender="a"))
    assert decoded is not None
    assert type(decoded.msg.updates[0].capacity["cpu"]) is float


def _raw(values: list[Any], *extra: bytes) -> list[bytes]:
    return [msgpack.packb(values, use_bin_type=True), *extra]


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([], "no_frames"),
        ([b"\xc1"], "malformed_msgpack"),
        (_raw([*V, 1]), "bad_envelope"),
        (_raw([*V, 1, "n", 0, 0]), "bad_envelope"),
        (_raw([V[1], V[0] - 1, 1, "n", 0, 0, 0, 1, []]), "bad_envelope"),  # min > max
        (_raw([*V, 9999, "n", 0, 0, 0]), "unknown_type"),
        (_raw([*V, 1, "n", 0, 0, 0, 1]), "missing_fields"),
        (_raw([*V, 1, "n", 0, 0, 0, True, []]), "field_type"),
        (_raw([*V, 1, "n", 0, 0, 0, 1, [["n"]]]), "field_type"),
        (_raw([*V, 1, b"n", 0, 0, 0, 1, []]), "bad_envelope"),
        (_raw([*V, 1, "n", 0, 0, "0", 1, []]), "bad_envelope"),
        (_raw([*V, 22, "n", 0, 0, 0, 1, "code", b"bytes-not-str"]), "field_type"),
        (_raw([*V, 0, "n"]), "bad_envelope"),  # a ProtocolMismatch without its text
        ([msgpack.packb([*V, 1, "n", 0, 0, 0, 1, []]) + b"\x00"], "malformed_msgpack"),
    ],
)
def test_malformed_is_dropped_and_counted(frames: list[bytes], reason: str) -> None:
    local = Codec()
    assert local.decode(frames) is None
    assert local.stats.dropped == {reason: 1}


def test_size_limits() -> None:
    local = Codec(Limits(max_body_bytes=64, max_frames=2, max_frame_bytes=10))
    ok = local.encode(Ping(1, ()), sender="a", frames=[b"x" * 10])
    assert local.decode(ok) is not None
    assert local.decode(local.encode(Ping(1, ()), sender="a", frames=[b"x" * 11])) is None
    assert local.decode(local.encode(Ping(1, ()), sender="a", frames=[b""] * 3)) is None
    assert local.decode(local.encode(Ping(1, (MEMBER,)), sender="a")) is None
    assert local.stats.dropped == {"frame_too_large": 1, "too_many_frames": 1, "body_too_large": 1}


# -- property tests: strategies derived from the annotations, so new messages are covered -------

_INT = st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
_TEXT = st.text(max_size=12)


def _strategy(hint: Any) -> st.SearchStrategy[Any]:
    if hint is int:
        return _INT
    if hint is float:
        return st.floats(allow_nan=False)
    if hint is str:
        return _TEXT
    if hint is bytes:
        return st.binary(max_size=12)
    if hint is bool:
        return st.booleans()
    if hint is type(None) or hint is None:
        return st.none()
    if isinstance(hint, type) and hint in STRUCTS.values():
        return _record_strategy(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return st.one_of([_strategy(a) for a in args])
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(_strategy(args[0]), max_size=3).map(tuple)
        return st.tuples(*[_strategy(a) for a in args])
    if origin is dict:
        return st.dictionaries(_strategy(args[0]), _strategy(args[1]), max_size=3)
    raise AssertionError(f"no strategy for {hint!r}")


def _record_strategy(cls: type) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]), dict(STRUCTS))
    names = [f for f in cls.__dataclass_fields__]  # type: ignore[attr-defined]
    return st.builds(cls, *[_strategy(hints[n]) for n in names])


_ANY_MESSAGE = st.one_of([_record_strategy(cls) for _, cls in sorted(MESSAGES.items())])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msg=_ANY_MESSAGE, sender=_TEXT, counters=st.tuples(_INT, _INT, _INT))
def test_round_trip_every_message(msg: Any, sender: str, counters: tuple[int, int, int]) -> None:
    incarnation, term, seq = counters
    frames = codec.encode(
        msg, sender=sender, incarnation=incarnation, term=term, seq=seq, frames=[b"f"]
    )
    decoded = Codec().decode(frames)
    assert decoded is not None
    assert decoded.msg == msg
    assert decoded.envelope == (*V, msg.TYPE, sender, incarnation, term, seq)
    assert decoded.frames == [b"f"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=4))
def test_random_frames_never_raise(frames: list[bytes]) -> None:
    local = Codec()
    result = local.decode(frames)
    if result is None:
        assert sum(local.stats.dropped.values()) == 1


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(msg=_ANY_MESSAGE, data=st.data())
def test_mutated_frames_never_raise(msg: Any, data: st.DataObject) -> None:
    body = bytearray(codec.encode(msg, sender="s")[0])
    for _ in range(data.draw(st.integers(1, 4))):
        position = data.draw(st.integers(0, len(body) - 1))
        body[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(body)))
    local = Codec()
    result = local.decode([bytes(body[:cut])])
    assert result is not None or sum(local.stats.dropped.values()) == 1
    assert "internal_error" not in local.stats.dropped


def test_every_message_schema_builds() -> None:
    """The codec builds each type's converters on first use; build them all here so a message
    whose annotations are not wire types fails the suite, not the first daemon that sends it."""
    codec.build_all()
    assert set(schema._RECORDS) == set(MESSAGES)
    assert set(schema._STRUCT_RECORDS) == set(STRUCTS.values())


@pytest.mark.parametrize("bad", [1, b"t1", None, True])
def test_a_tuple_of_str_with_one_element_of_another_type_is_refused_both_ways(bad: Any) -> None:
    """``tuple[str, ...]`` (a message's task ids) checked element by element's type, wherever the
    odd one sits: refused naming the field when encoded, dropped as ``field_type`` when read."""
    from handoffd.protocol.messages import FreeValues

    for ids in (("t0", bad), (bad,), ("t0", "t1", bad, "t3")):
        with pytest.raises(TypeError, match="FreeValues.task_ids"):
            codec.encode(FreeValues("r", ids), sender="a")  # type: ignore[arg-type]
        local = Codec()
        assert local.decode(_raw([*V, 47, "n", 0, 0, 0, "r", list(ids)])) is None
        assert local.stats.dropped == {"field_type": 1}
    good = Codec().decode(codec.encode(FreeValues("r", ("t0", "t1")), sender="a"))
    assert good is not None and good.msg == FreeValues("r", ("t0", "t1"))
    assert Codec().decode(codec.encode(FreeValues("r", ()), sender="a")) is not None
