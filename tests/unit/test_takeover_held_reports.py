"""What executing nodes send about a run a standby is taking over, between its ``ReconcileRun``
and its adopting the run (built off the loop: seconds for a big run), is kept and handed to the
owner's shell right after the adoption, in order and once (``ReplicationIO.held``,
``replication_takeover.HeldReports``); dropped if the takeover ends otherwise; bounded. The
shell is driven through a fake port, the build by an ``Offload`` the test finishes by hand.
And a replica whose owner is suspected is rebuilt ahead (``suspected``), if the takeover would be
ours, used by the takeover, dropped when the suspicion is refuted."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pytest
from fake_port import FakePort
from later_offload import Later
from test_replication import owner_with_chain

from handoffd.daemon import replication_takeover as steps
from handoffd.daemon.replication import ReplicationIO
from handoffd.protocol import messages as m
from handoffd.protocol.snapshot import encode_run
from handoffd.scheduler import events as ev
from handoffd.scheduler.owner import OwnerScheduler


@dataclass(frozen=True)
class Report:
    """Stands for any executing node's message (``_FROM_EXECUTORS``): the shell reads run_id."""

    run_id: str
    n: int


class Owner:
    """The owner's shell as replication sees it (``RunOwner``), over a real scheduler."""

    def __init__(self, port: FakePort, sched: OwnerScheduler, replication: ReplicationIO) -> None:
        self.port, self.sched, self.replication = port, sched, replication
        self.calls: list[Any] = []

    def restore_run(self, data: Any, term: int) -> int:
        self.calls.append(("restore", term))
        self.sched.restore_run(data, self.port.now(), term=term)
        return 0

    def handle(self, msg: Any, frames: list[bytes], conn: bytes, envelope: Any) -> None:
        # as OwnerIO.handle: replication is asked first; what it does not keep is handled now
        if not self.replication.held(msg, frames, conn, envelope):
            self.calls.append(("handle", msg, frames))

    def flush(self) -> None:
        self.calls.append(("flush",))

    def run_finished(self, run_id: str) -> None:
        pass

    def step_down(self, run_id: str) -> bool:
        return False

    def hold_dispatch(self, run_id: str, held: bool) -> None:
        pass


def taking_over() -> tuple[FakePort, ReplicationIO, Owner, Later]:
    """Standby b of run r1 (owned by a, gone), taking it over: c and b asked, nothing built."""
    port = FakePort(name="b", address="b:1")
    port.join("c", cpu=4.0)
    sched = OwnerScheduler("b", now=port.now())
    for n in ("b", "c"):
        sched.handle(ev.NodeUpdate(n, f"{n}:1", True, {"cpu": 4.0}, {"cpu": 4.0}, 1), port.now())
    later = Later()
    replication = ReplicationIO(port, sched, replicas=2, grace=0.1, offload=later)  # type: ignore[arg-type]
    owner = Owner(port, sched, replication)
    replication.owner = owner
    run = owner_with_chain("a").run_state("r1")
    assert run is not None
    replication.standby.on_snapshot("r1", 0, 3, "a", "a:1", ("b", "c"), encode_run(run))
    replication.owner_restarted("a")  # its runs are as if it were DEAD
    port.advance(0.2)  # the grace
    assert len(port.take(m.ReconcileRun)) == 2 and replication.taking_over("r1")
    return port, replication, owner, later


def deliver(owner: Owner, messages: list[tuple[Report, list[bytes]]]) -> None:
    for msg, frames in messages:
        owner.handle(msg, frames, b"conn", None)


def some(rng: random.Random, start: int) -> list[tuple[Report, list[bytes]]]:
    return [(Report("r1", start + i), [b"v" * rng.randint(0, 3)]) for i in range(rng.randint(0, 6))]


@pytest.mark.parametrize("seed", range(20))
def test_messages_while_building_reach_the_owner_once_in_order_after_the_adoption(
    seed: int,
) -> None:
    rng = random.Random(seed)
    port, replication, owner, later = taking_over()
    kept = some(rng, 0)  # while the nodes answer
    deliver(owner, kept)
    port.advance(2.0)  # AnswersDue: Restore, waiting for the replica's rebuild
    more = some(rng, 100)
    deliver(owner, more)
    later.finish()  # the rebuild: the build starts
    last = some(rng, 200)
    deliver(owner, last)
    deliver(owner, [(Report("other", 1), [])])  # not a run being taken over: handled at once
    assert owner.calls == [("handle", Report("other", 1), [])]
    owner.calls.clear()
    later.finish()  # built: adopted
    kept += more + last
    want = [("restore", 1)] + [("handle", msg, frames) for msg, frames in kept] + [("flush",)]
    assert owner.calls == want
    assert owner.sched.run_state("r1") is not None
    owner.calls.clear()
    after = some(rng, 300)
    deliver(owner, after)  # ours now: handled as they come, nothing handed over twice
    assert owner.calls == [("handle", msg, frames) for msg, frames in after]
    assert not replication._reports


@pytest.mark.parametrize("when", ["asking", "rebuilding", "building"])
def test_messages_kept_for_a_takeover_another_owner_won_are_dropped(when: str) -> None:
    port, replication, owner, later = taking_over()
    deliver(owner, some(random.Random(1), 0) or [(Report("r1", 0), [])])
    if when != "asking":
        port.advance(2.0)  # Restore
    if when == "building":
        later.finish()
    claim = m.FollowOwner("r1", 1, "c", "c:1")  # c took it over at our term
    replication.handle(claim, [], None)
    assert not replication.taking_over("r1") and not replication._reports
    later.finish()
    later.finish()
    assert owner.calls == []  # nothing adopted, nothing handed over
    deliver(owner, [(Report("r1", 9), [])])
    assert owner.calls == [("handle", Report("r1", 9), [])]


def test_what_is_kept_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(steps, "HELD_MESSAGES", 3)
    monkeypatch.setattr(steps, "HELD_BYTES", 10)
    reports = steps.HeldReports()
    for i, frame in enumerate((b"aaaa", b"bbbb", b"cccc", b"", b"")):
        reports.keep(Report("r1", i), [frame], b"", None)
    # the third is over the bytes (12 > 10), the fifth over the count (3)
    assert [msg.n for msg, *_ in reports.messages] == [0, 1, 3]
    assert (reports.size, reports.dropped) == (8, 2)


def suspecting(ahead_alive: bool = False) -> tuple[FakePort, ReplicationIO, Later]:
    """Standby b of run r1, owned by a (a member, ALIVE), c before b in line if ``ahead``."""
    port = FakePort(name="b", address="b:1")
    port.join("a")
    port.join("c")
    sched = OwnerScheduler("b", now=port.now())
    later = Later()
    replication = ReplicationIO(port, sched, replicas=2, grace=0.1, offload=later)  # type: ignore[arg-type]
    replication.owner = Owner(port, sched, replication)
    run = owner_with_chain("a").run_state("r1")
    assert run is not None
    line = ("c", "b") if ahead_alive else ("b", "c")
    replication.standby.on_snapshot("r1", 0, 3, "a", "a:1", line, encode_run(run))
    return port, replication, later


def change(port: FakePort, name: str, status: int) -> None:
    from handoffd.membership.events import MemberChanged

    old, member = port.set_status(name, status)
    replication = port.replication  # type: ignore[attr-defined]
    replication.member_changed(MemberChanged(name, old, status, member), rechoose=False)


def test_a_suspected_owners_run_is_rebuilt_ahead_and_the_takeover_uses_it() -> None:
    port, replication, later = suspecting()
    port.replication = replication  # type: ignore[attr-defined]
    change(port, "a", m.SUSPECT)
    assert len(later.jobs) == 1  # the rebuild started on the suspicion
    later.finish()
    change(port, "a", m.DEAD)
    assert later.jobs == []  # the DEAD verdict's prebuild finds it built
    port.advance(0.2)  # the grace: asking, with the rebuild done already
    assert len(port.take(m.ReconcileRun)) == 2 and later.jobs == []
    port.advance(2.0)  # answers due: the merge starts at once
    assert len(later.jobs) == 1
    later.finish()
    assert replication.scheduler.run_state("r1") is not None


def test_a_refuted_suspicion_drops_the_rebuild_and_one_not_ours_starts_none() -> None:
    port, replication, later = suspecting()
    port.replication = replication  # type: ignore[attr-defined]
    change(port, "a", m.SUSPECT)
    later.finish()
    assert replication._prebuilt
    change(port, "a", m.ALIVE)
    assert not replication._prebuilt
    port, replication, later = suspecting(ahead_alive=True)  # c is first in line, alive
    port.replication = replication  # type: ignore[attr-defined]
    change(port, "a", m.SUSPECT)
    assert later.jobs == [] and not replication._prebuilt
