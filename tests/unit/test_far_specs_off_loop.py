"""The specs whose payloads a snapshot leaves out (``protocol.snapshot.far_specs``) are worked out
where the run is packed or built, off the loop: the owner's loop no longer walks every spec of a
big run for them when it sends the run's first snapshot (``OwnerPayloads.refs``; the new owner of
a 200,000-task takeover held its loop 127 ms in that walk). Counted, not timed: the loop reads
the payload of no spec but the far ones."""

from __future__ import annotations

import dataclasses

import pytest
from later_offload import replication_shell
from scheduler_harness import spec

from handoffd.protocol.snapshot import far_specs
from handoffd.spec import TaskSpec
from handoffd.store.chunks import FAR_BYTES

NODES = ("n1", "n2", "n3")
FAR = {"t3", "t17"}


class _Counted(TaskSpec):
    """A spec that notes each read of its payload (in ``read``)."""

    read: list[str]

    @property  # type: ignore[misc]
    def payload(self) -> bytes:  # type: ignore[override]
        _Counted.read.append(self.id)
        return self.__dict__["payload"]


def _counted(s: TaskSpec) -> TaskSpec:
    copy = object.__new__(_Counted)
    copy.__dict__.update(s.__dict__)
    return copy


def _specs() -> list[TaskSpec]:
    out = []
    for i in range(30):
        s = spec(f"t{i}", *([f"t{i - 1}"] if i % 3 else []))
        if s.id in FAR:
            s = dataclasses.replace(s, payload=b"x" * (FAR_BYTES + 1))
        out.append(s)
    return out


def _named(port) -> set[str]:  # type: ignore[no-untyped-def]
    from handoffd.protocol.messages_chunks import ReplicaPayloads

    sent = [s.msg for s in port.sent if isinstance(s.msg, ReplicaPayloads)]
    assert len(sent) == 1
    return {ref.task_id for ref in sent[0].far}


def test_far_specs_are_the_specs_a_snapshot_leaves_out() -> None:
    assert [s.id for s in far_specs(_specs())] == ["t3", "t17"]


def test_a_snapshot_packed_off_the_loop_brings_its_far_specs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    c, port, later, replication = replication_shell(
        monkeypatch, NODES, 1
    )  # every run packed off the loop
    c.submit("r", _specs())
    replication.run_accepted("r", lambda: None)
    (fn, done), *_ = later.jobs
    out = fn()  # (the thread)
    run = c.sched.run_state("r")
    assert run is not None
    run.specs[:] = [_counted(s) for s in run.specs]
    _Counted.read = []
    done(out, None)  # (the loop)
    assert _named(port) == FAR
    assert set(_Counted.read) <= FAR  # no walk over every spec on the loop


def test_a_prebuilt_run_s_first_snapshot_uses_its_far_specs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run built by the upload thread (``Prebuilt.far``, worked out there)."""
    from handoffd.protocol.snapshot import pack_parts
    from handoffd.replication import log as rlog
    from handoffd.scheduler.intake import Prebuilt

    c, port, later, replication = replication_shell(monkeypatch, NODES, 1 << 30)
    c.submit("r", _specs())
    run = c.sched.run_state("r")
    assert run is not None
    run.prebuilt = Prebuilt(pack_parts(run), (), far_specs(run.specs))
    run.specs[:] = [_counted(s) for s in run.specs]
    _Counted.read = []
    ins = rlog.SendSnapshot("r", "s", 0, ("s",))
    frames = {("r", True): b"packed", ("r", False): b"packed"}  # (spliced, or packed apart)
    replication._send_snapshot(ins, frames)
    assert _named(port) == FAR
    assert set(_Counted.read) <= FAR


def test_a_prebuilt_run_packed_off_the_loop_takes_its_far_specs_from_its_intake(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A big run that moved on before its first snapshot (packed in the thread): the thread
    takes its far specs from ``Prebuilt.far``, not from a walk over every spec's payload."""
    from handoffd.protocol.snapshot import pack_parts
    from handoffd.scheduler.intake import Prebuilt

    c, port, later, replication = replication_shell(
        monkeypatch, NODES, 1
    )  # every run packed off the loop
    c.submit("r", _specs())
    run = c.sched.run_state("r")
    assert run is not None
    run.prebuilt = Prebuilt(pack_parts(run), (), far_specs(run.specs))
    run.intake = 1  # (moved on: not ``untouched``, so not spliced on the loop)
    assert not run.untouched()
    from handoffd.daemon import replication_rebuild

    monkeypatch.setattr(replication_rebuild, "AS_BUILT_MOVED", -1)  # (nor sent as built)
    replication.run_accepted("r", lambda: None)
    (fn, done), *_ = later.jobs
    run.specs[:] = [_counted(s) for s in run.specs]
    _Counted.read = []
    out = fn()  # (the thread)
    done(out, None)  # (the loop)
    assert _named(port) == FAR
    assert _Counted.read == []
