"""The replication log's rows built in wire form by the scheduler (``OwnerQueries.delta_rows``,
packed unchecked as ``schema.WireRows``) encode to the very bytes of the checked encoding (the
``TaskDelta`` fields given as ``Rows``, as the owner built them before), in the compiled build and
in the pure-Python one, over random runs driven as tests/unit/test_scheduler_twin.py drives them;
the batch packed as columns straight from the records (``delta_columns``) is those rows' columns
as session 32's packer packed them (``log_pack_v32``)."""

from __future__ import annotations

from typing import Any

import log_pack_v32
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scheduler_harness import CPU
from test_scheduler_twin import cluster, drive, workloads

from handoffd.config import Limits
from handoffd.protocol import messages as m
from handoffd.protocol.codec import Codec
from handoffd.protocol.columns import join_frames
from handoffd.protocol.schema import Rows, WireRows

CODEC = Codec(Limits())


def _checked_rows(run: Any, task_ids: list[str]) -> tuple[Rows, list[Any]]:
    """The rows as the owner's shell built them before ``delta_rows`` (the codec checks them)."""
    frames: list[Any] = []
    deltas = []
    for task_id in task_ids:
        rec = run.tasks.get(task_id)
        if rec is None:
            continue
        frame = -1
        if rec.value is not None and rec.state == "DONE":
            frame = len(frames)
            frames.append(rec.value)
        deltas.append(
            (
                task_id,
                rec.state,
                rec.attempt,
                rec.node,
                rec.size,
                tuple(sorted(rec.locations)),
                rec.failures,
                rec.losses,
                rec.completions,
                frame,
                Rows(list(rec.attempts)),
            )
        )
    return Rows(deltas), frames


def _encoded(run: Any, tasks: tuple[Any, ...], values: list[Any]) -> list[bytes]:
    frame_sizes, frames = join_frames(values)
    msg = m.ReplicateLog("r", 3, 7, ("s1", "s2"), tasks, run.state, False, None, frame_sizes)
    return [bytes(f) for f in CODEC.encode(msg, sender="owner", term=3, frames=frames)]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    workload=workloads(),
    sizes=st.lists(st.sampled_from([1.0, 2.0, 4.0]), min_size=1, max_size=3),
    window=st.sampled_from([1, 4, 32]),
    steps=st.lists(
        st.tuples(
            st.integers(0, 1000),
            st.sampled_from([False, False, False, True]),
            st.sampled_from([0.0001, 0.05]),
            st.sampled_from([1, 2]),
        ),
        max_size=30,
    ),
    pick=st.randoms(use_true_random=False),
)
def test_delta_rows_pack_to_the_checked_bytes_in_both_builds(
    workload: Any, sizes: list[float], window: int, steps: Any, pick: Any
) -> None:
    specs, options = workload
    nodes = {f"n{i}": {CPU: size, "mem": 10.0} for i, size in enumerate(sizes)}
    encoded = []
    every = [s.id for s in specs]
    task_ids = pick.sample(every, k=pick.randint(0, len(every))) + ["unknown"]
    for pure in (False, True):
        c = cluster(pure, nodes, window, None)
        drive(c, specs, options, steps)
        run = c.sched.run_state("r")
        if run is None:  # (an invalid random DAG: refused)
            assert c.sched.delta_rows("r", task_ids) is None
            assert c.sched.delta_columns("r", task_ids) is None
            encoded.append([])
            continue
        batch = c.sched.delta_rows("r", task_ids)
        assert batch is not None
        rows, values = batch
        checked, checked_values = _checked_rows(run, task_ids)
        wire = _encoded(run, WireRows(rows), values)
        assert wire == _encoded(run, checked, checked_values)
        decoded = CODEC.decode(wire)
        assert decoded is not None and len(decoded.msg.tasks) == len(task_ids) - 1
        encoded.append(wire)
        # The same batch packed straight from the records: the columns of these rows.
        assert c.sched.delta_columns("r", task_ids) == (log_pack_v32.pack_columns(rows), values)
    assert encoded[0] == encoded[1]
    assert c.sched.delta_rows("not ours", ["t0"]) is None
    assert c.sched.delta_columns("not ours", ["t0"]) is None


def test_wire_rows_pass_the_codec_unchecked_and_rows_are_checked() -> None:
    """``WireRows`` skip the per-field check (what saves the owner's CPU); ``Rows`` keep it."""
    bad = ("t", "DONE", "not an int", None, 0, (), 0, 0, 0, -1, Rows([]))
    msg = m.ReplicateLog("r", 0, 1, (), Rows([bad]), "RUNNING", False, None)
    try:
        CODEC.encode(msg, sender="owner")
    except TypeError as exc:
        assert "TaskDelta.attempt" in str(exc)
    else:
        raise AssertionError("Rows were not checked")
    msg = m.ReplicateLog("r", 0, 1, (), WireRows([list(bad[:10]) + [[]]]), "RUNNING", False, None)
    (frame,) = CODEC.encode(msg, sender="owner")
    assert CODEC.decode([frame]) is None  # packed as given; the receiver drops it as malformed
