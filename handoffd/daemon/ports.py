"""What the daemon's I/O shells may ask of the node and of each other: narrow ports, not ``Node``.

A shell (``OwnerIO``, ``ResultFetcher``, ``ReplicationIO``) gets a port at construction: who we
are, the one clock, sending and replying, timers, and (``MembersPort``) what membership says. The
node gives every shell the same ``NodePort``; a test gives a fake that records what is sent and
fires timers when told (tests/fake_port.py). The links between shells are the small protocols
below (``Replicator``, ``RunOwner``, ``Follower``), set by ``daemon.node.wire`` in one place after
every shell exists, so no shell depends on the order the others were built in, and none calls
another's private methods.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from handoffd.protocol import messages as m

if TYPE_CHECKING:
    from handoffd.daemon.owner import OwnerIO
    from handoffd.daemon.replication import ReplicationIO
    from handoffd.scheduler.owner import OwnerScheduler


class Timer(Protocol):
    """A pending callback (``asyncio.TimerHandle`` and ``asyncio.Handle`` are ones)."""

    def cancel(self) -> None: ...


class SendFn(Protocol):
    def __call__(
        self, address: str, msg: Any, frames: list[Any] | None = None, term: int = 0
    ) -> bool: ...


class ReplyFn(Protocol):
    def __call__(self, conn: bytes, msg: Any, frames: list[Any] | None = None) -> None: ...


class Port(Protocol):
    """Who we are, the clock, messages out, timers."""

    @property
    def name(self) -> str: ...
    @property
    def address(self) -> str: ...
    def now(self) -> float:
        """The node's clock (monotonic seconds): every decision's and timer's time base."""
        ...

    def send(self, address: str, msg: Any, frames: list[Any] | None = None, term: int = 0) -> bool:
        """To a peer by address (our own address: delivered locally on the next loop turn)."""
        ...

    def reply(self, conn: bytes, msg: Any, frames: list[Any] | None = None) -> None:
        """To the client connection a request came on."""
        ...

    def address_of(self, name: str) -> str | None: ...
    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> Timer: ...
    def call_soon(self, callback: Callable[..., object], *args: Any) -> Timer: ...


class MembersPort(Port, Protocol):
    """A port that also answers what membership knows."""

    def member(self, name: str) -> m.MemberState | None: ...
    def members(self) -> list[m.MemberState]: ...


@dataclass(frozen=True, eq=False)
class NodePort:
    """The node's port: plain callables, bound by ``Node.start`` once the transport listens."""

    name: str
    address: str
    now: Callable[[], float]
    send: SendFn
    reply: ReplyFn
    address_of: Callable[[str], str | None]
    call_later: Callable[..., Timer]
    call_soon: Callable[..., Timer]
    member: Callable[[str], m.MemberState | None]
    members: Callable[[], list[m.MemberState]]


class Resources(Protocol):
    """This node's own resources (the worker ledger): what the owner seeds its view of us with."""

    @property
    def capacity(self) -> Mapping[str, float]: ...
    @property
    def free(self) -> Mapping[str, float]: ...
    @property
    def version(self) -> int: ...


# -- links between shells (set by daemon.node.wire) ----------------------------------------------


class Replicator(Protocol):
    """What the owner's shell tells or asks replication (``ReplicationIO``)."""

    def run_accepted(self, run_id: str, answer: Callable[[], None]) -> None:
        """Replicate a newly accepted run, then call ``answer`` (the client hears 'accepted')."""
        ...

    def run_changed(self, run_id: str) -> None: ...
    def run_ended(self, run_id: str) -> None: ...
    def released(self, run_id: str) -> None: ...
    def forget(self, run_id: str) -> None: ...
    def fenced(self, run_id: str, term: int) -> bool:
        """A message about a run we own came at ``term``: True if that deposed us."""
        ...

    def redirect(self, msg: Any, conn: bytes) -> bool:
        """Answer a client's request about a run another node owns; False if we know none."""
        ...

    def standbys(self, run_id: str) -> tuple[str, ...]: ...
    def taking_over(self, run_id: str) -> bool: ...
    def held(self, msg: Any, frames: list[bytes], conn: bytes, envelope: Any) -> bool:
        """An executing node's message about a run we are taking over: kept until the run is
        ours (then handed back through ``RunOwner.handle``); False: handle it now."""
        ...

    def knows(self, run_id: str) -> bool:
        """The run exists as far as we know (a replica, or an owner we heard of), though we do
        not own it: a client told 'unknown' by us keeps looking (a takeover may be under way)."""
        ...


class NoReplication:
    """No standbys (a shell on its own, in tests): runs are 'accepted' at once, none is fenced."""

    def run_accepted(self, run_id: str, answer: Callable[[], None]) -> None:
        answer()

    def run_changed(self, run_id: str) -> None:
        pass

    def run_ended(self, run_id: str) -> None:
        pass

    def released(self, run_id: str) -> None:
        pass

    def forget(self, run_id: str) -> None:
        pass

    def fenced(self, run_id: str, term: int) -> bool:
        return False

    def redirect(self, msg: Any, conn: bytes) -> bool:
        return False

    def standbys(self, run_id: str) -> tuple[str, ...]:
        return ()

    def taking_over(self, run_id: str) -> bool:
        return False

    def held(self, msg: Any, frames: list[bytes], conn: bytes, envelope: Any) -> bool:
        return False

    def knows(self, run_id: str) -> bool:
        return False


class RunOwner(Protocol):
    """What replication asks of the owner's shell (``OwnerIO``): adopt a run taken over, drop one
    another owner took from us, hold a run's dispatches while its lease lapsed."""

    def restore_run(self, data: Any, term: int) -> int:
        """Own the run (snapshot format, or the ``RunState`` built from it) at ``term``; returns
        how many dispatches went out."""
        ...

    def run_finished(self, run_id: str) -> None: ...
    def step_down(self, run_id: str) -> bool: ...
    def hold_dispatch(self, run_id: str, held: bool) -> None: ...
    def handle(self, msg: Any, frames: list[bytes], conn: bytes, envelope: Any) -> None:
        """A message as received (replication hands back what it ``held`` meanwhile)."""
        ...

    def flush(self) -> None: ...


class NoOwner:
    """No owner shell (a standby-only shell in a benchmark or test): a takeover cannot restore."""

    def restore_run(self, data: Any, term: int) -> int:
        raise RuntimeError("no owner shell wired (daemon.node.wire sets ReplicationIO.owner)")

    def run_finished(self, run_id: str) -> None:
        pass

    def step_down(self, run_id: str) -> bool:
        return False

    def hold_dispatch(self, run_id: str, held: bool) -> None:
        pass

    def handle(self, msg: Any, frames: list[bytes], conn: bytes, envelope: Any) -> None:
        pass

    def flush(self) -> None:
        pass


class Follower(Protocol):
    """What replication asks of the executing side (``Executor``): the owner it follows per run."""

    @property
    def run_owners(self) -> Mapping[str, tuple[int, str, str]]: ...
    def learn_owner(self, run_id: str, term: int, address: str, name: str = "") -> bool: ...
    def on_reconcile(self, msg: m.ReconcileRun | m.ProbeHoldings) -> m.RunHoldings | None: ...


class NoFollower:
    """A node that executes nothing (a shell on its own, in tests)."""

    run_owners: Mapping[str, tuple[int, str, str]] = {}

    def learn_owner(self, run_id: str, term: int, address: str, name: str = "") -> bool:
        return False

    def on_reconcile(self, msg: m.ReconcileRun | m.ProbeHoldings) -> m.RunHoldings | None:
        return None


def wire(
    scheduler: OwnerScheduler, owner: OwnerIO, replication: ReplicationIO, follower: Follower
) -> None:
    """The links between the shells, all here (``daemon.node`` calls it): each was built from
    its port and the pure parts it drives, in any order, and none reaches into another."""
    owner.replication = replication  # accepted runs, releases, fencing, redirects
    replication.owner = owner  # restore a run taken over, drop one another owner took
    replication.follower = follower  # the owner this node's executor follows, per run
    # The scheduler's one listener (task moves a standby must know): the replication log.
    scheduler.on_change = replication.task_changed
    scheduler.on_changes = replication.tasks_changed  # (a batch's moves in one call)
