"""Big task payloads stay out of a run's snapshot and reach its standbys in chunks (issue 19,
helper snap19): a payload past ``FAR_BYTES`` travels empty in the snapshot frame (which a standby
with a small ``max_frame_bytes`` dropped whole before: the run was lost with its owner), the
owner keeps it in its store and names it (``ReplicaPayloads``), each standby pulls it
(``daemon.replication_payloads``), says when it holds them all (``PayloadsHeld``), and the replica
puts them back when rebuilt for a takeover. Driven through fake ports, no sockets."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fake_port import FakePort

from handoffd.config import Limits
from handoffd.daemon import code
from handoffd.daemon import replication_payloads as rp
from handoffd.daemon.code import CodeStore, PackageFetcher
from handoffd.daemon.replication import ReplicationIO
from handoffd.protocol import messages as m
from handoffd.protocol.messages_chunks import (
    FarPayload,
    FetchChunks,
    PayloadsHeld,
    ReplicaPayloads,
)
from handoffd.protocol.snapshot import decode_run, encode_run
from handoffd.replication.standby import Replica
from handoffd.scheduler import events as ev
from handoffd.scheduler.owner import OwnerScheduler
from handoffd.spec import RunOptions, TaskSpec
from handoffd.store.chunks import FAR_BYTES, far_key, serve
from handoffd.store.store import ResultStore

BIG = bytes(range(256)) * ((FAR_BYTES + 200_000) // 256)  # 3 chunks of 256 KiB
LIMITS = Limits(max_frame_bytes=1 << 20)


@dataclass(frozen=True)
class Envelope:
    sender: str
    term: int = 0


def owner_of_r1(name: str = "a") -> OwnerScheduler:
    """Run r1: x (small payload) -> z (payload past FAR_BYTES)."""
    sched = OwnerScheduler(name, now=100.0)
    for n in ("b", "c"):
        sched.handle(ev.NodeUpdate(n, f"{n}:1", True, {"cpu": 4.0}, {"cpu": 4.0}, 1), 100.0)
    specs = (
        TaskSpec("x", (), {"cpu": 1.0}, b"code-x"),
        TaskSpec("z", ("x",), {"cpu": 1.0}, BIG),
    )
    sched.handle(ev.RunSubmitted("r1", specs, RunOptions()), 100.0)
    return sched


def node(name: str, sched: OwnerScheduler | None = None) -> tuple[FakePort, ReplicationIO, Any]:
    port = FakePort(name=name, address=f"{name}:1")
    for other in ("a", "b", "c"):
        if other != name:
            port.join(other, cpu=4.0)
    replication = ReplicationIO(
        port, sched or OwnerScheduler(name, now=100.0), replicas=2, grace=0.1
    )
    store = ResultStore(64 << 20)
    replication.attach(None, store, LIMITS)
    return port, replication, store


def test_a_big_payload_is_left_out_of_the_snapshot_and_put_back_from_the_pulled_copy() -> None:
    run = owner_of_r1().run_state("r1")
    assert run is not None
    frame = encode_run(run)
    assert len(frame) < FAR_BYTES  # (before: the payload inside, past a 1 MiB standby's limit)
    specs = {s["id"]: s["payload"] for s in decode_run(frame)["specs"]}
    assert specs == {"x": b"code-x", "z": b""}
    far = (FarPayload("z", far_key("p", "z"), len(BIG), "a:1"),)
    replica = Replica("r1", 0, 1, "a", "a:1", ("b", "c"), frame, far=far)
    data = replica.run_data()  # nothing pulled: named, left empty
    assert data["missing_payloads"] == ["z"]
    assert replica.missing_payloads(lambda t: False) == ["z"]
    pulled = {"z": BIG}
    replica.payload = pulled.get
    data = replica.run_data()
    assert {s["id"]: bytes(s["payload"]) for s in data["specs"]} == {"x": b"code-x", "z": BIG}
    assert "missing_payloads" not in data


def _serve_all(owner_store: ResultStore, port: FakePort, standby: ReplicationIO) -> int:
    """Answer every FetchChunks the standby sent (as the owner's executor does); the asks."""
    asks = 0
    while True:
        fetches = port.take(FetchChunks)
        if not fetches:
            return asks
        for sent in fetches:
            asks += 1
            assert sent.address == "a:1"
            for answer, frames in serve(owner_store, sent.msg):
                assert standby.on_chunk(answer, frames)


def test_standbys_pull_the_payloads_from_the_owner_and_the_owner_knows_who_is_complete() -> None:
    sched = owner_of_r1()
    a_port, a, a_store = node("a", sched)
    a.run_accepted("r1", lambda: None)
    # The payload is kept at accept (before any dispatch of z), under the dispatch path's key.
    assert bytes(a_store.get("r1", far_key("p", "z"))) == BIG
    sent = a_port.sent
    for standby in ("b:1", "c:1"):
        kinds = [type(s.msg) for s in sent if s.address == standby]
        assert kinds == [m.ReplicateRun, ReplicaPayloads]  # the list after the snapshot
    snapshot = next(s for s in sent if isinstance(s.msg, m.ReplicateRun))
    names = next(s.msg for s in sent if isinstance(s.msg, ReplicaPayloads))
    assert names.far == (FarPayload("z", far_key("p", "z"), len(BIG), "a:1"),)
    assert a.complete_standbys("r1") == ()  # nobody said it holds them yet

    b_port, b, b_store = node("b")
    b.handle(snapshot.msg, snapshot.frames, Envelope("a"))
    b.handle(names, [], Envelope("a"))
    told = b_port.take(PayloadsHeld)
    assert [(s.address, s.msg.missing) for s in told] == [("a:1", 1)]  # incomplete, said so
    asks = _serve_all(a_store, b_port, b)
    assert asks == 1  # 3 chunks: one window
    assert bytes(b_store.get("r1", rp.standby_key("z"))) == BIG
    told = b_port.take(PayloadsHeld)
    assert [(s.msg.missing, s.msg.held_bytes) for s in told] == [(0, len(BIG))]
    a.handle(told[0].msg, [], Envelope("b"))
    assert "b" in a.complete_standbys("r1") and "c" not in a.complete_standbys("r1")
    # The replica, rebuilt for a takeover, has the payload back.
    data = b.standby.replicas["r1"].run_data()
    assert {s["id"]: bytes(s["payload"]) for s in data["specs"]}["z"] == BIG
    # A second snapshot of the same term (a resend) keeps the list and pulls nothing again.
    b.handle(snapshot.msg, snapshot.frames, Envelope("a"))
    b.handle(names, [], Envelope("a"))
    assert not b_port.take(FetchChunks) and not b_port.take(PayloadsHeld)
    # The replica dropped: so are the payloads pulled for it.
    b.handle(m.DropReplica("r1", 0), [], Envelope("a"))
    assert not b_store.has("r1", rp.standby_key("z"))


def test_a_silent_owner_is_asked_again_a_bounded_number_of_times_then_given_up() -> None:
    port = FakePort(name="b", address="b:1")
    store = ResultStore(64 << 20)
    pulls = rp.PayloadPulls(port)
    pulls.configure(store, 1 << 20, 16 << 30)
    far = (FarPayload("z", far_key("p", "z"), len(BIG), "a:1"),)
    pulls.want(ReplicaPayloads("r1", 0, 1, far), "a:1")
    asked = len(port.take(FetchChunks))
    for _ in range(rp.RETRIES + 3):
        port.advance(rp.FETCH_TIMEOUT + rp.RETRY_DELAY * 2**rp.RETRIES)
        asked += len(port.take(FetchChunks))
    assert asked == 1 + rp.RETRIES  # then given up: no pull left, none timed
    assert not port.pending()
    assert pulls.missing("r1") == 1
    # An owner that no longer holds it ("missing") is not asked again.
    pulls.forget("r1")
    pulls.want(ReplicaPayloads("r1", 1, 2, far), "a:1")
    (sent,) = port.take(FetchChunks)
    for answer, frames in serve(ResultStore(1 << 20), sent.msg):
        assert pulls.on_chunk(answer, frames)
    port.advance(60.0)
    assert not port.take(FetchChunks)


def test_pulls_are_bounded_and_queued() -> None:
    port = FakePort(name="b", address="b:1")
    owner_store = ResultStore(64 << 20)
    pulls = rp.PayloadPulls(port)
    pulls.configure(ResultStore(64 << 20), 1 << 20, 16 << 30)
    far = []
    for i in range(5):
        key = far_key("p", f"t{i}")
        owner_store.put("r1", key, BIG)
        far.append(FarPayload(f"t{i}", key, len(BIG), "a:1"))
    pulls.want(ReplicaPayloads("r1", 0, 1, tuple(far)), "a:1")
    in_flight = {s.msg.key for s in port.take(FetchChunks)}
    assert len(in_flight) == rp.ACTIVE
    done = 0
    while in_flight:
        key = sorted(in_flight)[0]
        in_flight.discard(key)
        # finish one pull: the next queued one starts
        for answer, frames in serve(
            owner_store, FetchChunks(_rid(pulls, key), "r1", key, 0, 4, pulls.chunk, "b:1")
        ):
            pulls.on_chunk(answer, frames)
        done += 1
        new = {s.msg.key for s in port.take(FetchChunks)}
        in_flight |= new
        assert len(in_flight) <= rp.ACTIVE
    assert done == 5 and pulls.missing("r1") == 0


def _rid(pulls: rp.PayloadPulls, key: str) -> int:
    return next(rid for rid, a in pulls._active.items() if a.pull.key == key)


def _package_fetcher(root: Path, sent: list[tuple[str, Any]]) -> PackageFetcher:
    return PackageFetcher(
        CodeStore(str(root)),
        address="me:1",
        send=lambda address, msg, frames=None: sent.append((address, msg)),
        peers=lambda: ["owner:1", "peer:1"],
        call_later=lambda delay, fn, *args: FakePort().call_later(delay, fn, *args),
    )


def test_a_package_past_a_frame_comes_in_chunks_checked_against_its_sha(tmp_path: Path) -> None:
    zipped = os.urandom(3 * code.CHUNK + 1000)  # 4 chunks; was one frame of 1.5 MiB
    sha = hashlib.sha256(zipped).hexdigest()
    holder = CodeStore(str(tmp_path / "holder"))
    holder.put(zipped)
    server = PackageFetcher(
        holder, address="owner:1", send=None, peers=lambda: [], call_later=lambda *a: None
    )
    sent: list[tuple[str, Any]] = []
    fetcher = _package_fetcher(tmp_path / "me", sent)
    ran: list[bool] = []
    fetcher.when_present((sha,), "owner:1", lambda: ran.append(True))
    largest = asks = 0
    while sent:
        address, ask = sent.pop(0)
        assert address == "owner:1" and ask.chunk_bytes == code.CHUNK
        asks += 1
        reply, frames = server.serve(ask)
        largest = max([largest, *(len(f) for f in frames)])
        fetcher.on_fetched(reply, frames)
    assert ran == [True] and fetcher.store.get(sha) == zipped
    assert largest <= code.CHUNK and asks == 4  # one per chunk (asked alone: chunk 0 at once)
    # A chunk that fails its CRC: the next peer is asked (from the start).
    other = os.urandom(2 * code.CHUNK + 10)
    sha2 = hashlib.sha256(other).hexdigest()
    holder.put(other)
    fetcher.when_present((sha, sha2), "owner:1", lambda: ran.append(True))
    _, ask = sent.pop(0)
    assert ask.shas == (sha2,)  # (sha is held already)
    reply, frames = server.serve(dataclasses.replace(ask, shas=(sha, sha2)))
    assert reply.shas == () and reply.far == (sha, sha2) and frames == []  # named, not sent
    fetcher.on_fetched(dataclasses.replace(reply, far=(sha2,)), frames)
    _, ask = sent.pop(0)
    reply, frames = server.serve(ask)
    assert reply.total == len(other) and reply.index == 0
    fetcher.on_fetched(dataclasses.replace(reply, crc=reply.crc ^ 1), frames)
    assert [a for a, _ in sent] == ["peer:1"] and not fetcher.store.has(sha2)


def test_a_big_code_package_is_named_apart_from_the_snapshot_and_fetched_by_the_standby(
    tmp_path: Path,
) -> None:
    zipped = os.urandom(FAR_BYTES + 1)
    owner_code = CodeStore(str(tmp_path / "a"))
    sha = owner_code.put(zipped)
    sched = OwnerScheduler("a", now=100.0)
    for n in ("b", "c"):
        sched.handle(ev.NodeUpdate(n, f"{n}:1", True, {"cpu": 4.0}, {"cpu": 4.0}, 1), 100.0)
    specs = (TaskSpec("x", (), {"cpu": 1.0}, b"code-x"),)
    sched.handle(ev.RunSubmitted("r1", specs, RunOptions(packages=(sha,))), 100.0)
    a_port, a, _ = node("a", sched)
    a.code = owner_code
    a.run_accepted("r1", lambda: None)
    snapshot = next(s for s in a_port.sent if isinstance(s.msg, m.ReplicateRun))
    assert len(snapshot.frames) == 1  # the zip is not inline (past a 1 MiB standby's limit)
    names = next(s.msg for s in a_port.sent if isinstance(s.msg, ReplicaPayloads))
    assert names.far == (FarPayload("", sha, len(zipped), "a:1"),)
    b_port, b, _ = node("b")
    b_code = CodeStore(str(tmp_path / "b"))
    asked: list[Any] = []
    b.payloads.code = b_code
    b.payloads.fetch_code = lambda shas, owner, then: asked.append((shas, owner, then))
    b.handle(snapshot.msg, snapshot.frames, Envelope("a"))
    b.handle(names, [], Envelope("a"))
    assert [s.msg.missing for s in b_port.take(PayloadsHeld)] == [1]
    ((shas, owner, then),) = asked
    assert shas == (sha,) and owner == "a:1"
    b_code.put(zipped)  # (as the fetcher does, in chunks: above)
    then()
    assert [s.msg.missing for s in b_port.take(PayloadsHeld)] == [0]


@pytest.mark.parametrize("complete", [True, False])
def test_the_client_hears_accepted_once_the_standbys_hold_the_payloads_or_after_a_bound(
    complete: bool,
) -> None:
    a_port, a, _ = node("a", owner_of_r1())
    answered: list[float] = []
    a.run_accepted("r1", lambda: answered.append(a_port.now()))
    for standby in ("b", "c"):
        a.handle(m.ReplicaAcked("r1", 0, 0, False), [], Envelope(standby))
    assert answered == []  # acked the snapshot, the payloads are still coming
    if complete:
        a.handle(PayloadsHeld("r1", 0, 0, len(BIG)), [], Envelope("b"))
        assert answered == []
        a.handle(PayloadsHeld("r1", 0, 0, len(BIG)), [], Envelope("c"))
        assert answered == [a_port.now()]
    else:
        a.handle(PayloadsHeld("r1", 0, 1, 0), [], Envelope("b"))
        a_port.advance(rp.FULL_WAIT - 0.1)
        assert answered == []
        a_port.advance(0.2)
        assert len(answered) == 1
