"""A run's snapshot frame with its big fields packed off the loop (``snapshot.pack_parts``) is
byte for byte the frame packed whole, before and after the run was touched."""

from __future__ import annotations

import random

import msgpack

from handoffd.protocol import snapshot
from handoffd.scheduler.intake import Prebuilt
from handoffd.scheduler.run import READY, RunState
from handoffd.spec import RunOptions, TaskSpec


def _run(n: int, seed: int) -> RunState:
    rng = random.Random(seed)
    specs = [
        TaskSpec(
            f"t{i}",
            (f"t{rng.randrange(i)}",) if i and rng.random() < 0.5 else (),
            {"cpu": rng.choice((0.5, 1.0))},
            rng.randbytes(rng.randrange(40)),
            priority=rng.randrange(3),
        )
        for i in range(n)
    ]
    return RunState("r", specs, RunOptions(outputs=(f"t{n - 1}",)))


def test_spliced_frame_is_the_whole_frame() -> None:
    for n, seed in ((1, 0), (15, 1), (16, 2), (17, 3), (2047, 4), (2049, 5), (5000, 6)):
        run = _run(n, seed)
        whole = snapshot.encode_run(run)
        run.prebuilt = Prebuilt(snapshot.pack_parts(run), ())
        assert snapshot.encode_run(run) == whole, n
        run.start(0.0, limit=3)  # touched: the tasks are packed again, the specs still spliced
        assert not run.untouched()
        moved = next(rec for rec in run.tasks.values() if rec.state == READY)
        spliced = snapshot.encode_run(run)
        run.prebuilt = None
        assert spliced == snapshot.encode_run(run), n
        assert snapshot.decode_run(spliced)["tasks"][moved.id]["state"] == READY


def test_rows_packed_in_pieces_are_one_array() -> None:
    rows = [(i, "x" * (i % 7), [i]) for i in range(10_000)]
    for k in (0, 1, 15, 16, 2048, 2049, 10_000):
        assert snapshot._pack_rows(rows[:k]) == msgpack.packb(rows[:k], use_bin_type=True), k
