"""The upload thread's snapshot of a columns run (``intake_columns.column_snapshot``: the specs'
payloads read once for the snapshot's column and the far test) is what the specs give, to the
byte, far specs included; and ``intake.probes``' shortcut for runs without
collocation groups finds the tasks the walk over every shape finds."""

from __future__ import annotations

import random
from typing import Any

import pytest

import handoffd
from handoffd import upload
from handoffd.config import Limits
from handoffd.daemon import upload_intake as ui
from handoffd.daemon.intake_columns import column_snapshot, snapshot_columns
from handoffd.protocol import messages as m
from handoffd.protocol.codec import Codec, Rows
from handoffd.protocol.messages_submit import COLUMNS_SINCE, TaskColumns, as_sent, as_submission
from handoffd.protocol.snapshot import far_specs, pack_parts
from handoffd.scheduler import intake
from handoffd.scheduler.graph import build_graph
from handoffd.scheduler.run import RunState
from handoffd.spec import RunOptions, TaskSpec
from handoffd.store.chunks import FAR_BYTES

pytestmark = pytest.mark.timeout(120)


def _frames(rng: random.Random, n: int, far: bool) -> list[bytes]:
    """A columns submission of ``n`` functions as a client encodes it, some arguments past
    ``FAR_BYTES`` when ``far``."""
    dag = handoffd.DAG()
    for i in range(n):
        deps = [f"t{rng.randrange(i)}" for _ in range(rng.randrange(3))] if i else []
        arg: Any = b"x" * (FAR_BYTES + 1) if far and rng.random() < 0.2 else i
        dag.add_function(
            handoffd.Function(
                id=f"t{i}",
                code=len,
                args=sorted(set(deps)),
                extra_args=[arg],
                cost=rng.choice(({"cpu": 1}, {"cpu": 2.0}, {"cpu": 1, "memory": 5}, {"cpu": 1})),
                priority=rng.randrange(-2, 3),
            )
        )
    rows, payloads = dag.wire_tasks(
        policy="binpack", max_retries=3, outputs=None, allow_empty=False, packages=()
    )
    request = m.SubmitAndWait(1, "r1", Rows(rows), 3, "binpack", None, 1.0, 1 << 20, True, ())
    sent = as_sent(request, COLUMNS_SINCE)
    return [bytes(f) for f in Codec().encode(sent, sender="c", frames=payloads)]


def _as_specs_give(prepared: ui.Prepared, msg: Any) -> tuple[bytes, bytes]:
    """The snapshot's packed parts with the payloads and far specs read from the specs."""
    run = prepared.run
    assert run is not None and prepared.specs is not None
    far = far_specs(prepared.specs)
    return pack_parts(run, snapshot_columns(msg.tasks, prepared.specs, far))


@pytest.mark.parametrize("seed", range(12))
def test_an_uploads_snapshot_and_far_specs_are_what_its_specs_give(seed: int) -> None:
    rng = random.Random(seed)
    frames = _frames(rng, rng.randint(1, 60), far=seed % 3 == 0)
    codec = Codec(upload.decode_limits(Limits()))
    whole = upload.Whole(bytearray(upload.pack(frames)))
    prepared = ui.prepare(whole, codec, Limits(), None)
    assert prepared.error is None and prepared.run is not None
    msg = prepared.decoded.msg
    assert type(msg.tasks) is TaskColumns
    built = prepared.run.prebuilt
    assert built is not None and built.columns
    assert built.far == far_specs(prepared.specs)
    assert bool(built.far) == any(len(f) > FAR_BYTES for f in frames[1:])
    assert built.packed == _as_specs_give(prepared, msg)
    # A submission that came whole (bytes frames) gives the same.
    decoded = Codec().decode(frames)
    assert decoded is not None
    whole_msg = as_submission(decoded.msg)
    again = ui.prepare_whole(whole_msg, decoded.frames, Limits(), None)
    assert again.run is not None and again.run.prebuilt is not None
    assert again.run.prebuilt.packed == built.packed
    assert again.run.prebuilt.far == far_specs(again.specs)


def test_far_specs_of_a_column_run_are_found_by_its_payloads_lengths() -> None:
    specs = [TaskSpec(f"t{i}", (), {"cpu": 1.0}, b"p" * (FAR_BYTES + i - 1)) for i in range(4)]
    # (lengths FAR_BYTES - 1 .. FAR_BYTES + 2: the two past it are far)
    assert far_specs(specs) == (specs[2], specs[3])
    tasks = _tasks(specs)
    columns, far = column_snapshot(tasks, specs)
    assert far == (specs[2], specs[3])
    assert columns is not None and columns.payloads == (
        specs[0].payload,
        specs[1].payload,
        b"",
        b"",
    )
    assert columns == snapshot_columns(tasks, specs, far_specs(specs))
    specs[2:] = [TaskSpec(f"t{i}", (), {"cpu": 1.0}, b"p" * FAR_BYTES) for i in (2, 3)]
    columns, far = column_snapshot(tasks, specs)
    assert far == () and columns == snapshot_columns(tasks, specs, ())
    assert column_snapshot(list(specs), specs) == (None, far_specs(specs))  # (records)


def _tasks(specs: list[TaskSpec]) -> TaskColumns:
    """A columns submission's ``TaskColumns`` of as many functions as ``specs``."""
    codec = Codec()
    decoded = codec.decode(_frames(random.Random(1), len(specs), far=False))
    assert decoded is not None
    tasks = as_submission(decoded.msg).tasks
    assert type(tasks) is TaskColumns and len(tasks) == len(specs)
    return tasks


def _probes_walked(run: RunState) -> tuple[str, ...]:
    """``intake.probes`` as it was: every task's shape built and looked up."""
    seen: set[Any] = set()
    out = []
    for rec in run.tasks.values():
        if rec.id not in run.group_of:
            shape = (rec.spec.node, rec.cost_items)
            if shape in seen:
                continue
            seen.add(shape)
        out.append(rec.id)
    return tuple(out)


@pytest.mark.parametrize("seed", range(40))
def test_probes_are_the_tasks_the_walk_over_every_shape_finds(seed: int) -> None:
    rng = random.Random(900 + seed)
    grouped = seed % 2 == 0
    specs = []
    for i in range(rng.randrange(1, 80)):
        pin = rng.choice((None, None, "a", "b"))
        cpu = rng.choice((1.0, 1.0, 1.0, 2.0) if rng.random() < 0.5 else (1.0,))
        group = f"t{rng.randrange(i)}" if grouped and i and rng.random() < 0.1 else None
        specs.append(
            TaskSpec(
                f"t{i}",
                (),
                {"cpu": cpu},
                b"p",
                node=pin if group is None else None,
                collocate_with=group,
            )
        )
    run = RunState("r", specs, RunOptions(), graph=build_graph(specs, None, None))
    assert intake.probes(run) == _probes_walked(run)
