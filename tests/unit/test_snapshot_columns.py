"""A plain run's snapshot with its specs as columns (``RunSnapshot.columns``, protocol 5): sent only
to a standby whose range reaches 5, the spec rows to any other; read back (``decode_run``) into
the same plain data as the rows, a takeover from it building the same run; columns that disagree
refused with a ``SnapshotError`` saying which."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import msgpack
import pytest
from fake_port import FakePort
from scheduler_harness import Cluster, spec

from handoffd.daemon import replication as shell
from handoffd.protocol import columns
from handoffd.protocol.messages import ReplicateRun
from handoffd.protocol.messages_snapshot import SNAPSHOT_COLUMNS_SINCE, SnapshotColumns
from handoffd.protocol.snapshot import (
    SnapshotError,
    decode_run,
    encode_run,
    far_specs,
    pack_parts,
)
from handoffd.replication import log as rlog
from handoffd.scheduler.intake import Prebuilt
from handoffd.scheduler.run import RunState
from handoffd.spec import TaskSpec
from handoffd.store.chunks import FAR_BYTES

pytestmark = pytest.mark.timeout(120)

NODES = ("n1", "n2", "n3")


def _specs(rng: random.Random, n: int) -> list[TaskSpec]:
    out = []
    for i in range(n):
        deps = sorted({f"t{rng.randrange(i)}" for _ in range(rng.randrange(3))}) if i else []
        s = spec(
            f"t{i}",
            *deps,
            cost=rng.choice(({"cpu": 1.0}, {"cpu": 2.0})),
            priority=rng.randrange(-2, 3),
            argument_inclusion=rng.choice(("variadic", "as_list")),
        )
        if rng.random() < 0.1:
            s = dataclasses.replace(s, payload=b"x" * (FAR_BYTES + 1))
        out.append(s)
    return out


def _columns(specs: list[TaskSpec]) -> SnapshotColumns:
    """The columns of ``specs`` (as ``intake_columns.snapshot_columns`` makes them from a
    submission's), built independently of it."""
    costs: list[dict[str, float]] = []
    kinds: list[str] = []
    for s in specs:
        if s.cost not in costs:
            costs.append(s.cost)
        if s.argument_inclusion not in kinds:
            kinds.append(s.argument_inclusion)
    return SnapshotColumns(
        tuple(s.id for s in specs),
        columns.pack("i", [len(s.deps) for s in specs]),
        tuple(d for s in specs for d in s.deps),
        tuple(costs),
        columns.pack("i", [costs.index(s.cost) for s in specs]),
        tuple(kinds),
        columns.pack("B", [kinds.index(s.argument_inclusion) for s in specs]),
        columns.pack("q", [s.priority for s in specs]),
        tuple(b"" if len(s.payload) > FAR_BYTES else s.payload for s in specs),
    )


def _run(seed: int) -> tuple[Cluster, RunState, list[TaskSpec]]:
    rng = random.Random(seed)
    c = Cluster(dict.fromkeys(NODES, 3.0))
    specs = _specs(rng, rng.randint(1, 40))
    c.submit("r", specs)
    run = c.sched.run_state("r")
    assert run is not None
    return c, run, specs


@pytest.mark.parametrize("seed", range(20))
def test_a_columns_snapshot_reads_back_as_the_rows_and_takes_over_the_same(seed: int) -> None:
    _, run, specs = _run(seed)
    rows_frame = encode_run(run)
    run.prebuilt = Prebuilt(pack_parts(run, _columns(specs)), (), far_specs(specs), True)
    frame = encode_run(run, columns=True)
    assert len(msgpack.unpackb(frame)) == 18 and len(msgpack.unpackb(rows_frame)) == 17
    assert encode_run(run) == rows_frame  # (a standby of protocol 4 still gets the rows)
    assert encode_run(run, chunked=True, columns=True) == frame
    data = decode_run(rows_frame)
    assert decode_run(frame) == data
    assert RunState.from_snapshot(decode_run(frame)).snapshot() == (
        RunState.from_snapshot(data).snapshot()
    )


def test_each_standby_gets_the_form_its_protocol_reads() -> None:
    c, run, specs = _run(3)
    port = FakePort(name="owner", address="owner:1")
    port.join("new")
    old = port.join("old")
    port.states["old"] = dataclasses.replace(old, protocol_max=SNAPSHOT_COLUMNS_SINCE - 1)
    replication = shell.ReplicationIO(port, c.sched, replicas=2, grace=0.1)  # type: ignore[arg-type]
    run.prebuilt = Prebuilt(pack_parts(run, _columns(specs)), (), far_specs(specs), True)
    encoded: dict[tuple[str, bool], bytes] = {}
    for node in ("new", "old"):
        replication._send_snapshot(rlog.SendSnapshot("r", node, 0, ("new", "old")), encoded)
    got = {s.address: s.frames[0] for s in port.take(ReplicateRun)}
    assert len(msgpack.unpackb(got["new:1"])) == 18  # (the columns field)
    assert len(msgpack.unpackb(got["old:1"])) == 17  # what protocol 4 reads
    assert decode_run(got["new:1"]) == decode_run(got["old:1"])


def _with_columns(frame: bytes, **change: Any) -> bytes:
    values = list(msgpack.unpackb(frame))
    names = [f.name for f in dataclasses.fields(SnapshotColumns)][: len(values[17])]
    fields = dict(zip(names, values[17], strict=True))  # (a 6th version's fields: no tails)
    fields.update(change)
    values[17] = list(fields.values())
    return msgpack.packb(values, use_bin_type=True)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"payloads": []}, "payloads"),
        ({"dep_counts": b"\x00"}, "dep_counts"),
        ({"cost_of": columns.pack("i", [99] * 5)}, "cost_of"),
        ({"inclusion": b""}, "inclusion"),
        ({"deps": ["t9"]}, "deps"),
    ],
)
def test_columns_that_disagree_are_refused_saying_which(change: dict[str, Any], says: str) -> None:
    _, run, specs = _run(7)
    specs = specs[:5]
    run.specs[:] = specs
    run.prebuilt = Prebuilt(pack_parts(run, _columns(specs)), (), (), True)
    frame = encode_run(run, columns=True)
    decode_run(frame)
    with pytest.raises(SnapshotError, match=says):
        decode_run(_with_columns(frame, **change))


def test_spec_rows_besides_columns_are_refused() -> None:
    _, run, specs = _run(5)
    run.prebuilt = Prebuilt(pack_parts(run, _columns(specs)), (), (), True)
    values = list(msgpack.unpackb(encode_run(run, columns=True)))
    values[11] = list(msgpack.unpackb(encode_run(run)))[11]
    with pytest.raises(SnapshotError, match="spec rows besides"):
        decode_run(msgpack.packb(values, use_bin_type=True))
