"""An ``Offload`` for unit tests whose jobs run when the test says, as a thread would, later
(``daemon/replication``'s packing off the loop)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Later:
    """Keeps each ``run(fn, done)``; ``finish()`` runs them in order and hands each result to its
    ``done``."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Callable[[], Any], Callable[[Any, Any], None]]] = []

    def run(self, fn: Callable[[], Any], done: Callable[[Any, Any], None]) -> None:
        self.jobs.append((fn, done))

    def finish(self) -> None:
        jobs, self.jobs = self.jobs, []
        for fn, done in jobs:
            done(fn(), None)

    def close(self) -> None:
        pass


def replication_shell(
    monkeypatch: Any, nodes: tuple[str, ...], off_loop: int = 1
) -> tuple[Any, ...]:
    """(cluster, port, later, replication): an owner (``scheduler_harness.Cluster`` of ``nodes``
    of 3 cpu) whose replication shell has one standby "s" and packs every run of ``off_loop``
    tasks or more in a ``Later``."""
    from fake_port import FakePort
    from scheduler_harness import Cluster

    from handoffd.daemon import replication as shell

    monkeypatch.setattr(shell, "PACK_OFF_LOOP", off_loop)
    c = Cluster(dict.fromkeys(nodes, 3.0))
    port = FakePort(name="owner", address="owner:1")
    port.join("s")
    later = Later()
    replication = shell.ReplicationIO(port, c.sched, replicas=1, grace=0.1, offload=later)  # type: ignore[arg-type]
    c.sched.on_change = replication.task_changed
    return c, port, later, replication


def standby_tasks(port: Any, run_id: str = "r") -> Any:
    """The standby's replica of ``run_id``'s tasks from every ReplicateRun and ReplicateLog the
    shell sent so far, each encoded and decoded as the standby reads it."""
    from handoffd.config import Limits
    from handoffd.protocol import messages as m
    from handoffd.protocol.codec import Codec
    from handoffd.protocol.columns import split_frames
    from handoffd.replication.standby import StandbyStore

    sent = [s for s in port.sent if isinstance(s.msg, (m.ReplicateRun, m.ReplicateLog))]
    assert isinstance(sent[0].msg, m.ReplicateRun)
    standby, wire = StandbyStore("s"), Codec(Limits())
    for s in sent:
        decoded = wire.decode(wire.encode(s.msg, sender="owner", frames=s.frames))
        assert decoded is not None
        msg, frames = decoded.msg, list(decoded.frames)
        if isinstance(msg, m.ReplicateRun):
            ack = standby.on_snapshot(
                run_id, msg.term, msg.seq, "owner", "owner:1", msg.standbys, frames[0]
            )
        else:
            frames = split_frames(msg.frame_sizes, frames, "ReplicateLog")
            ack = standby.on_log(msg, "owner:1", frames)
        assert ack is not None and not ack.need_snapshot
    return standby.replicas[run_id].run_data()["tasks"]
