"""Protocol evolution: trailing optional fields between builds, version ranges refused with a clear
error on both sides (a client and a daemon, two daemons, gossip about a member), the frozen
``ProtocolMismatch``, and run snapshots and errors through the codec."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, ClassVar

import msgpack
import pytest

import handoffd
from handoffd import errors
from handoffd.config import PROTOCOL_MAX, PROTOCOL_MIN, MembershipConfig, NodeConfig
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
from handoffd.testing import async_wait_for, wait_for
from handoffd.transport.memory import MemoryNetwork

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


# -- a node refuses clients and peers of another range -----------------------------------------


async def _node_and_stranger(network: MemoryNetwork, got: list[Any]) -> tuple[Any, Any]:
    from handoffd.node import Node

    node = Node(
        NodeConfig.for_tests("n1", capacity={"cpu": 1.0}, max_workers=1),
        transport=network.transport("n1:1"),
    )
    await node.start()
    stranger = network.transport("x:1")
    await stranger.start(
        lambda conn, frames, _listening: got.append(Codec(versions=NEWER).decode(frames))
    )
    return node, stranger


def test_a_node_answers_a_client_of_another_version_at_once_and_logs_it_once(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="handoffd.protocol")

    async def scenario() -> None:
        got: list[Any] = []
        node, client = await _node_and_stranger(MemoryNetwork(), got)
        try:
            other = Codec(versions=NEWER)
            for request_id in (1, 2):
                client.send("n1:1", other.encode(m.ListNodes(request_id), sender="client-x"))
            await async_wait_for(lambda: len(got) == 2, 10, what="two refusals")
            assert [d.msg for d in got] == [
                Mismatch("n1", *OURS, 0, True, f"n1 speaks protocol {versions.describe(*OURS)}")
            ] * 2
        finally:
            await node.stop(drain=False)

    asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records if "client-x" in r.getMessage()]
    assert lines == [
        f"client client-x speaks protocol {versions.describe(*NEWER)}, this daemon "
        f"{versions.describe(*OURS)}: refusing its requests (upgrade handoffd on this node)"
    ]


def test_a_peer_of_another_version_is_refused_membership_and_logged(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="handoffd.protocol")

    async def scenario() -> None:
        got: list[Any] = []
        node, peer = await _node_and_stranger(MemoryNetwork(), got)
        try:
            state = m.MemberState("p", "x:1", "default", 1, m.ALIVE, {"cpu": 8.0}, {}, 0, *NEWER)
            join = Codec(versions=NEWER).encode(m.PushPull((state,), True), sender="p")
            peer.send("n1:1", join)
            peer.send("n1:1", join)
            await async_wait_for(lambda: len(got) == 2, 10, what="the join refused")
            assert all(type(d.msg) is Mismatch and d.msg.told for d in got)
            assert [s.name for s in node.members()] == ["n1"]
        finally:
            await node.stop(drain=False)

    asyncio.run(scenario())
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("peer p ")]
    assert lines == [
        f"peer p speaks protocol {versions.describe(*NEWER)}, this daemon "
        f"{versions.describe(*OURS)}: not admitted to membership (upgrade handoffd on this node)"
    ]


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


# -- real daemons of different versions ---------------------------------------------------------

CTL = [sys.executable, "-m", "handoffd.cli.ctl"]


@pytest.mark.slow
def test_a_client_and_a_daemon_of_different_versions_fail_at_once_on_both_sides(daemons) -> None:
    daemons.env["HANDOFFD_TEST_PROTOCOL"] = "3-4"
    daemon = daemons.start()
    # A long client timeout: the error must come from the daemon's answer, not from waiting.
    with handoffd.connect(daemon.address, timeout=600) as client:
        with pytest.raises(versions.IncompatibleVersion) as raised:
            client.nodes()
        with pytest.raises(versions.IncompatibleVersion):
            client.submit(handoffd.new())
        name = client._name
    ours = versions.describe(*OURS)
    assert str(raised.value) == (
        f"the daemon at {daemon.address} speaks protocol 3-4, this client {ours}: "
        "upgrade handoffd on the client"
    )
    assert isinstance(raised.value, errors.HandoffError)
    line = (
        f"client {name} speaks protocol {ours}, this daemon 3-4: refusing its requests "
        "(upgrade handoffd on the client)"
    )
    wait_for(lambda: line in daemon.log(), 30, what=f"the daemon's log line\n{daemon.log()}")
    assert daemon.log().count(f"client {name} ") == 1  # once per client, not per request
    out = subprocess.run(
        [*CTL, "--address", daemon.address, "nodes"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0
    assert "speaks protocol 3-4" in out.stderr + out.stdout, out


@pytest.mark.slow
def test_daemons_of_different_versions_refuse_each_other_membership(daemons) -> None:
    a = daemons.start()
    daemons.env["HANDOFFD_TEST_PROTOCOL"] = "3-4"
    b = daemons.start(seeds=[a.address])
    ours = versions.describe(*OURS)
    a_line = (
        f"peer {b.name} speaks protocol 3-4, this daemon {ours}: not admitted to membership "
        "(upgrade handoffd on this node)"
    )
    b_line = (
        f"peer {a.name} speaks protocol {ours}, this daemon 3-4: it refused us; not admitted "
        "to membership (upgrade handoffd on the other node)"
    )
    wait_for(lambda: a_line in a.log(), 30, what=f"a's log line\n{daemons.logs()}")
    wait_for(lambda: b_line in b.log(), 30, what=f"b's log line\n{daemons.logs()}")
    with handoffd.connect(a.address) as client:
        assert list(client.nodes()) == [a.name]
    env = dict(os.environ, HANDOFFD_TEST_PROTOCOL="3-4")
    out = subprocess.run(
        [*CTL, "--address", b.address, "nodes", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 0, out
    assert [n["name"] for n in json.loads(out.stdout)["nodes"]] == [b.name]
    assert a.log().count(f"peer {b.name} ") == 1 and b.log().count(f"peer {a.name} ") == 1


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
