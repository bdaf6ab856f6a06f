"""Protocol evolution: trailing optional fields between builds, version ranges refused with a clear
error (the words, gossip about a member), the frozen ``ProtocolMismatch``, and run snapshots and
errors through the codec. A node refusing a client or peer of another range:
tests/cluster/test_protocol_compat_nodes.py; a client and a daemon, two daemons:
tests/daemons/test_protocol_compat_daemons.py."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any, ClassVar

import msgpack
import pytest

from handoffd import errors
from handoffd.config import PROTOCOL_MAX, PROTOCOL_MIN, MembershipConfig
from handoffd.membership import swim
from handoffd.protocol import codec, versions
from handoffd.protocol import messages as m
from handoffd.protocol.codec import Codec, Mismatch
from handoffd.protocol.snapshot import (
    SnapshotError,
    decode_run,
    encode_run,
    encode_run_data,
    error_from_data,
    error_from_info,
    error_to_data,
    error_to_info,
)
from handoffd.scheduler import events as ev
from handoffd.scheduler.owner import OwnerScheduler
from handoffd.spec import RunOptions, TaskSpec

pytestmark = pytest.mark.timeout(120)

OURS = (PROTOCOL_MIN, PROTOCOL_MAX)
NEWER = (PROTOCOL_MAX + 1, PROTOCOL_MAX + 2)  # a build that can no longer talk to this one
MEMBER = m.MemberState("n1", "127.0.0.1:7788", "default", 3, m.ALIVE, {"cpu": 4.0}, {}, 7)


# -- trailing optional fields ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EchoV1:
    """A message as an older build declares it."""

    TYPE: ClassVar[int] = 900
    request_id: int
    text: str


@dataclass(frozen=True, slots=True)
class EchoV2:
    """The same message after a newer build appended optional fields."""

    TYPE: ClassVar[int] = 900
    request_id: int
    text: str
    tags: tuple[str, ...] = ()
    member: m.MemberState | None = None
    weight: float = 1.0


OLD = Codec(messages={900: EchoV1})
NEW = Codec(messages={900: EchoV2})


def test_an_older_decoder_ignores_extra_trailing_fields() -> None:
    frames = NEW.encode(EchoV2(7, "hi", ("a", "b"), MEMBER, 2.5), sender="new")
    decoded = OLD.decode(frames)
    assert decoded is not None and decoded.msg == EchoV1(7, "hi")
    assert not OLD.stats.dropped


def test_a_newer_decoder_fills_missing_trailing_fields() -> None:
    decoded = NEW.decode(OLD.encode(EchoV1(7, "hi"), sender="old"))
    assert decoded is not None and decoded.msg == EchoV2(7, "hi", (), None, 1.0)
    # ... and still checks the ones that are there
    partial = msgpack.packb([*OURS, 900, "old", 0, 0, 0, 7, "hi", ("a",)])
    decoded = NEW.decode([partial])
    assert decoded is not None and decoded.msg == EchoV2(7, "hi", ("a",))
    wrong = msgpack.packb([*OURS, 900, "old", 0, 0, 0, 7, "hi", "not-a-tuple"])
    local = Codec(messages={900: EchoV2})
    assert local.decode([wrong]) is None and local.stats.dropped == {"field_type": 1}


def test_a_message_too_short_for_its_required_fields_is_dropped_and_counted() -> None:
    local = Codec(messages={900: EchoV2})
    assert local.decode([msgpack.packb([*OURS, 900, "x", 0, 0, 0, 7])]) is None
    assert local.stats.dropped == {"missing_fields": 1}


def test_structs_evolve_the_same_way_inside_messages() -> None:
    """Member states from a newer sender (an extra trailing field) and from an older one (without
    the protocol range, which has defaults) in one Ping; a state without a required field is
    invalid."""
    values = list(msgpack.unpackb(codec.encode(m.Ping(5, (MEMBER,)), sender="a")[0]))
    row = values[-1][0]
    newer, older = [*row, "from-the-future"], row[:-2]
    values[-1] = [newer, older]
    decoded = Codec().decode([msgpack.packb(values)])
    assert decoded is not None
    assert decoded.msg.updates == (MEMBER, MEMBER)
    values[-1] = [row[:5]]
    local = Codec()
    assert local.decode([msgpack.packb(values)]) is None
    assert local.stats.dropped == {"field_type": 1}


# -- version ranges ----------------------------------------------------------------------------


def test_an_incompatible_range_decodes_as_a_mismatch_not_a_drop() -> None:
    local = Codec()
    decoded = local.decode(Codec(versions=NEWER).encode(m.ListNodes(1), sender="client-x"))
    assert decoded is not None
    assert decoded.msg == Mismatch("client-x", *NEWER, 20, False, "")
    assert local.stats.mismatched == 1 and not local.stats.dropped
    overlapping = Codec(versions=(PROTOCOL_MAX, PROTOCOL_MAX + 3))
    decoded = local.decode(overlapping.encode(m.ListNodes(1), sender="client-y"))
    assert decoded is not None and decoded.msg == m.ListNodes(1)


def test_a_version_1_message_is_recognised() -> None:
    """Version 1's envelope was [version, type, sender, incarnation, term, seq, ...]."""
    decoded = Codec().decode([msgpack.packb([1, 20, "client-old", 0, 0, 0, 7])])
    assert decoded is not None and decoded.msg == Mismatch("client-old", 1, 1, 20, False, "")


# Frozen forever (codec.py): any version must decode this as "the sender speaks 3-4".
FROZEN_MISMATCH = bytes.fromhex(
    "95030400a66e6f64652d61ba6e6f64652d6120737065616b732070726f746f636f6c20332d34"
)


def test_the_protocol_mismatch_format_is_frozen() -> None:
    frames = Codec(versions=(3, 4)).encode_mismatch("node-a", "node-a speaks protocol 3-4")
    assert frames == [FROZEN_MISMATCH]
    for versions_ in (OURS, (3, 4), (7, 9)):
        decoded = Codec(versions=versions_).decode([FROZEN_MISMATCH])
        assert decoded is not None
        assert decoded.msg == Mismatch("node-a", 3, 4, 0, True, "node-a speaks protocol 3-4")


def test_messages_say_which_side_to_upgrade() -> None:
    assert str(versions.client_error("h:1", 3, 4, ours=(2, 2))) == (
        "the daemon at h:1 speaks protocol 3-4, this client 2: upgrade handoffd on the client"
    )
    assert str(versions.client_error("h:1", 1, 1, ours=(2, 3))) == (
        "the daemon at h:1 speaks protocol 1, this client 2-3: upgrade handoffd on the daemon"
    )
    assert versions.refusal_text("peer", "n2", 3, 4, ours=(2, 2)) == (
        "peer n2 speaks protocol 3-4, this daemon 2: not admitted to membership "
        "(upgrade handoffd on this node)"
    )


def test_gossip_about_a_member_of_another_version_does_not_admit_it(caplog) -> None:
    """n2 can talk to both n1 and n3, but n1 and n3 cannot talk to each other: n1 learns n2 from
    n2's gossip and never admits n3 (it would suspect it and have it refute forever)."""
    caplog.set_level(logging.WARNING, logger="handoffd.membership")
    ms = swim.Membership(
        name="n1",
        address="n1:1",
        cluster="c",
        capacity={},
        config=MembershipConfig.for_tests(),
        rng=random.Random(1),
        now=0.0,
    )
    n2 = m.MemberState("n2", "n2:1", "c", 1, m.ALIVE, {}, {}, 0)
    n3 = m.MemberState("n3", "n3:1", "c", 1, m.ALIVE, {}, {}, 0, *NEWER)
    # n2 first becomes a member: a stranger is heard only about itself (membership.claims).
    ms.handle(swim.Received("n2", "n2:1", m.Gossip((n2,))), 0.05)
    for now in (0.1, 0.2):
        ms.handle(swim.Received("n2", "n2:1", m.Gossip((n2, n3))), now)
    assert sorted(s.name for s in ms.members()) == ["n1", "n2"]
    assert ms.counters.dropped_incompatible == 2
    warnings = [r.getMessage() for r in caplog.records if "peer n3" in r.getMessage()]
    assert len(warnings) == 1 and "not admitted to membership" in warnings[0]


# -- run snapshots and errors go through the codec ---------------------------------------------


def _run_state(seed: int) -> Any:
    rng = random.Random(seed)
    sched = OwnerScheduler("a", now=0.0)
    for n in ("b", "c"):
        sched.handle(ev.NodeUpdate(n, f"{n}:1", True, {"cpu": 4.0}, {"cpu": 4.0}, 1), 0.0)
    specs = []
    for i in range(rng.randint(1, 12)):
        deps = (
            tuple(sorted({f"t{rng.randrange(i)}" for _ in range(rng.randint(0, 2))})) if i else ()
        )
        specs.append(
            TaskSpec(
                f"t{i}",
                deps,
                {"cpu": float(rng.choice([0.5, 1.0]))},
                rng.randbytes(rng.randint(0, 5)),
                timeout=rng.choice([None, 2.5]),
                priority=rng.randint(0, 2),
                collocate_with=f"t{i - 1}" if i and rng.random() < 0.2 else None,
            )
        )
    options = RunOptions(max_retries=2, timeout=rng.choice([None, 9.0]), outputs=None)
    sched.handle(ev.RunSubmitted("r", tuple(specs), options), 0.0)
    run = sched.run_state("r")
    assert run is not None
    run.holders.update(rng.sample(["b", "c"], rng.randint(0, 2)))
    if rng.random() < 0.5:
        run.error = errors.TaskFailed("t0", 3, "KeyError", "'x'", "tb")
    return run


@pytest.mark.parametrize("seed", range(20))
def test_a_snapshot_frame_round_trips_the_runs_plain_data(seed: int) -> None:
    run = _run_state(seed)
    frame = encode_run(run)
    assert frame == encode_run_data(run.snapshot(history=False))  # the owner's fast path
    assert decode_run(frame) == run.snapshot(history=False)
    full = run.snapshot()  # with histories
    assert decode_run(encode_run_data(full)) == full


def test_a_bad_snapshot_frame_is_refused_with_a_reason() -> None:
    frame = encode_run(_run_state(1))
    with pytest.raises(SnapshotError, match="not msgpack"):
        decode_run(frame[:-1])
    values = list(msgpack.unpackb(frame))
    values[2] = "term-as-text"
    with pytest.raises(SnapshotError, match="invalid run snapshot"):
        decode_run(msgpack.packb(values))
    with pytest.raises(SnapshotError, match="invalid run snapshot"):
        decode_run(msgpack.packb(values[:3]))


@pytest.mark.parametrize(
    "error",
    [
        errors.TaskFailed("f", 3, "KeyError", "'x'", "tb"),
        errors.Unschedulable("f", {"gpu": 2.0}, {"gpu": 1.0}, "too big"),
        errors.ValidationError("cycle", "a", "a -> b -> a"),
        errors.RunCancelled("run 'r' was cancelled"),
        errors.Timeout("late"),
        errors.HandoffError("plain"),
    ],
)
def test_run_errors_round_trip_as_error_info(error: errors.HandoffError) -> None:
    info = error_to_info(error)
    assert info is not None
    back = error_from_info(info)
    assert type(back) is type(error) and str(back) == str(error)
    assert error_to_info(back) == info
    assert error_to_info(error_from_data(error_to_data(error))) == info


def test_a_codec_of_a_range_below_a_type_s_version_does_not_know_that_type() -> None:
    """A type brought by a later version (registry.SINCE, e.g. SubmitColumns) is an unknown type
    to a codec whose range ends below it, as it is to a daemon of that version: dropped and
    counted, not decoded (so HANDOFFD_TEST_PROTOCOL plays an older daemon faithfully)."""
    from handoffd.protocol.messages_submit import COLUMNS_SINCE, submit_columns
    from handoffd.protocol.registry import SINCE

    assert SINCE[490] == COLUMNS_SINCE
    metas = codec.Rows(
        (f"t{i}", (), {"cpu": 1.0}, "variadic", None, None, False, None, None, 0) for i in range(3)
    )
    msg = submit_columns(m.SubmitRun(1, "r", metas, 2, "binpack", None))
    assert msg is not None
    newer = Codec(versions=(PROTOCOL_MIN, COLUMNS_SINCE))
    frames = newer.encode(msg, sender="client-x")
    assert type(newer.decode(frames).msg) is type(msg)  # type: ignore[union-attr]
    older = Codec(versions=(PROTOCOL_MIN, COLUMNS_SINCE - 1))
    assert older.decode(frames) is None
    assert older.stats.dropped["unknown_type"] == 1
    assert type(older.decode(older.encode(m.SubmitRun(1, "r", metas, 2, "binpack", None), sender="c")).msg) is m.SubmitRun  # type: ignore[union-attr]  # fmt: skip
