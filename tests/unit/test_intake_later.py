"""A plain run that came as columns is handed to the loop before its snapshot is packed
(``upload_intake.Packing``, ``scheduler.intake.Prebuilt.ready``): the part packed later is the
very bytes the intake packed before the hand-over, read from the submission (its tasks as built,
from their ids) even when the loop has moved the run meanwhile; it is packed once whoever asks;
a failure leaves the snapshot packed from the run; the thread hands the run over first; and the
replication packs an unready run's snapshot off the loop, not on it."""

from __future__ import annotations

import asyncio
import random
import threading
from typing import Any

import pytest

import handoffd
from handoffd import dag_columns
from handoffd.config import Limits
from handoffd.daemon import intake_columns, upload_intake
from handoffd.daemon.replication import ReplicationIO
from handoffd.protocol import messages as m
from handoffd.protocol import snapshot
from handoffd.protocol.codec import Codec
from handoffd.protocol.messages_snapshot import SNAPSHOT_HEADS_SINCE
from handoffd.protocol.messages_submit import (
    COLUMNS_SINCE,
    HEADS_SINCE,
    SubmitColumns,
    as_sent,
    as_submission,
    sent_payloads,
)
from handoffd.scheduler.intake import Prebuilt, probes
from handoffd.scheduler.run import RunState

pytestmark = pytest.mark.timeout(120)

CODEC = Codec()


def _noop(*xs: Any) -> int:
    return len(xs)


def _twice(x: int) -> int:
    return 2 * x


def _received(rng: random.Random, n: int, daemon_max: int, answer: bool) -> tuple[Any, list[Any]]:
    """A plain DAG of ``n`` functions as a daemon of ``daemon_max`` reads the client's columns."""
    dag = handoffd.DAG()
    for i in range(n):
        deps = [f"f{j}" for j in rng.sample(range(i), min(i, rng.randint(0, 2)))]
        code = _noop if deps or rng.random() < 0.5 else _twice
        dag.add_function(handoffd.Function(id=f"f{i}", code=code, args=deps, extra_args=[i]))
    built = dag_columns.plain_columns(
        dag, priority=0, policy="binpack", max_retries=3, outputs=None, packages=()
    )
    assert built is not None
    sent, tails = built[0], built[1]
    if answer:
        msg: Any = m.SubmitAndWait(1, "r1", sent, 3, "binpack", None, 1.0, 1 << 20, True, ())
    else:
        msg = m.SubmitRun(1, "r1", sent, 3, "binpack", None)
    msg = as_sent(msg, daemon_max)
    frames = sent_payloads(sent, tails, daemon_max)
    decoded = CODEC.decode([bytes(f) for f in CODEC.encode(msg, sender="c", frames=frames)])
    assert decoded is not None and type(decoded.msg) is SubmitColumns
    return as_submission(decoded.msg), decoded.frames


def _eager(msg: Any, frames: list[Any], run: RunState) -> tuple[Any, Any, int]:
    """What the intake packed before the run was handed over (the run untouched then)."""
    columns, far = intake_columns.column_snapshot(msg.tasks, run.specs, frames)
    assert columns is not None
    needs = SNAPSHOT_HEADS_SINCE if columns.heads else 1
    return snapshot.pack_parts(run, columns), far, needs


def _fresh(msg: Any, frames: list[Any]) -> RunState:
    prepared = upload_intake.prepare_whole(msg, frames, Limits(), None)
    assert prepared.error is None and prepared.run is not None
    return prepared.run


@pytest.mark.parametrize("seed", range(8))
def test_the_part_packed_later_is_what_the_intake_packed(seed: int) -> None:
    rng = random.Random(seed)
    msg, frames = _received(rng, rng.randint(1, 60), (COLUMNS_SINCE, HEADS_SINCE)[seed % 2], True)
    prepared = upload_intake.prepare_whole(msg, frames, Limits(), None)
    run = prepared.run
    assert prepared.error is None and run is not None and prepared.later is not None
    prebuilt = run.prebuilt
    assert prebuilt is not None and not prebuilt.ready()
    assert prebuilt.probes == probes(run)
    packed, far, needs = _eager(msg, frames, _fresh(msg, frames))
    assert (prebuilt.packed, prebuilt.far, prebuilt.columns) == (packed, far, needs)
    assert prebuilt.ready()
    # The frames a standby gets, spliced from it, are those of a run packed at once.
    for level in (0, COLUMNS_SINCE, SNAPSHOT_HEADS_SINCE):
        again = _fresh(msg, frames)
        again.prebuilt = Prebuilt(packed, probes(again), far, needs)
        assert snapshot.encode_run(run, columns=level) == snapshot.encode_run(again, columns=level)


@pytest.mark.parametrize("seed", range(6))
def test_the_tasks_part_is_read_from_the_ids_while_the_loop_moves_the_run(seed: int) -> None:
    rng = random.Random(100 + seed)
    msg, frames = _received(rng, rng.randint(2, 60), HEADS_SINCE, seed % 2 == 0)
    run = _fresh(msg, frames)
    run.start(0.0)  # (the loop took it in before the thread packed it)
    assert not run.untouched() and not run.prebuilt.ready()
    built = _fresh(msg, frames)  # untouched: its tasks as built
    assert run.prebuilt.packed[1] == snapshot._pack_rows(snapshot._task_rows(built))
    # A run that moved on is not spliced its tasks as built: the same frame as packed from it.
    plain = _fresh(msg, frames)
    plain.start(0.0)
    plain.prebuilt = Prebuilt(run.prebuilt.packed[:1] + (b"",), (), run.prebuilt.far, 0)
    plain.prebuilt._columns = run.prebuilt.columns
    for chunked in (False, True):
        got = snapshot.encode_run(run, chunked=chunked, columns=SNAPSHOT_HEADS_SINCE)
        assert got == snapshot.encode_run(plain, chunked=chunked, columns=SNAPSHOT_HEADS_SINCE)
        assert (
            snapshot.decode_run(got)["tasks"]
            == snapshot.decode_run(snapshot.encode_run_data(run.snapshot(history=False)))["tasks"]
        )


def test_it_is_packed_once_whoever_asks() -> None:
    calls: list[str] = []
    release = threading.Event()

    def make() -> tuple[Any, Any, int]:
        calls.append(threading.current_thread().name)
        release.wait(30)
        return (b"s", b"t"), (), 1

    packing = upload_intake.Packing(make)
    got: list[Any] = []
    threads = [threading.Thread(target=lambda: got.append(packing())) for _ in range(3)]
    for t in threads:
        t.start()
    release.set()
    for t in threads:
        t.join(30)
    assert len(calls) == 1 and got == [((b"s", b"t"), (), 1)] * 3
    assert packing() == ((b"s", b"t"), (), 1) and len(calls) == 1


def test_a_failed_packing_leaves_the_snapshot_packed_from_the_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    msg, frames = _received(random.Random(5), 30, HEADS_SINCE, False)
    run = _fresh(msg, frames)

    def broken() -> tuple[Any, Any, int]:
        raise ValueError("packing broke")

    run.prebuilt = Prebuilt(None, probes(run), later=upload_intake.Packing(broken))
    assert run.prebuilt.packed is None and run.prebuilt.far is None
    assert run.prebuilt.columns == 0 and run.prebuilt.ready()
    assert "packing a run's snapshot at its intake failed" in caplog.text
    bare = _fresh(msg, frames)
    bare.prebuilt = None
    assert snapshot.encode_run(run, columns=SNAPSHOT_HEADS_SINCE) == snapshot.encode_run(
        bare, columns=SNAPSHOT_HEADS_SINCE
    )


def test_the_thread_hands_the_run_over_before_it_packs() -> None:
    msg, frames = _received(random.Random(9), 40, HEADS_SINCE, True)
    release = threading.Event()
    seen: list[Any] = []

    def job() -> upload_intake.Prepared:
        prepared = upload_intake.prepare_whole(msg, frames, Limits(), None)
        assert prepared.later is not None
        make = prepared.later._make
        assert make is not None

        def slow() -> tuple[Any, Any, int]:
            release.wait(30)
            return make()

        prepared.later._make = slow
        return prepared

    async def main() -> None:
        loop = asyncio.get_running_loop()
        handed = loop.create_future()

        def done(prepared: upload_intake.Prepared) -> None:
            prebuilt = prepared.run.prebuilt  # type: ignore[union-attr]
            seen.append((prepared.later, prebuilt.ready()))
            release.set()
            handed.set_result(prebuilt)

        preparer = upload_intake.Preparer()
        preparer._run(loop, job, done)
        prebuilt = await asyncio.wait_for(handed, 30)
        while not prebuilt.ready():  # (the thread packs it after the hand-over)
            await asyncio.sleep(0.005)
        assert prebuilt.columns == SNAPSHOT_HEADS_SINCE and prebuilt.far == ()
        assert preparer._pool is not None
        preparer._pool.shutdown(wait=True)

    asyncio.run(main())
    assert seen == [(None, False)]  # handed over once, before its snapshot was packed


def test_an_unready_run_is_packed_off_the_loop() -> None:
    msg, frames = _received(random.Random(3), 20, HEADS_SINCE, False)
    run = _fresh(msg, frames)
    assert len(run.tasks) < 4096 and run.untouched()
    assert ReplicationIO._off_loop(run)  # (its intake packs it still: the thread waits for it)
    assert run.prebuilt.packed is not None
    assert not ReplicationIO._off_loop(run)  # small, untouched, packed: spliced on the loop
