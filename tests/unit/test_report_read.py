"""The owner's one-pass read of another node's ``ReportColumns`` (``protocol.report_read.read``),
in both builds (compiled from the .py with the .pxd beside it, and the .py run as plain Python),
against the column-by-column reading it replaced (``_read_checked``, ``split_frames``,
``frame_values``): on random report messages as executors build them (successes, failures,
retries, outputs, values packed, sent apart or kept on the node) the two give equal tables and
values, hence equal scheduler events, history rows and latencies; on malformed messages (wrong
lengths, wrong types, states out of range, failures that disagree, frame sizes that do not cover
the frames) both raise the same ``ColumnError``, which the node drops and counts.
"""

from __future__ import annotations

import dataclasses
import random
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from pure_build import check_builds, pure
from test_report_table import RUN, _mix, _new_owner, _old_owner

from handoffd.daemon.executor_records import report_message
from handoffd.protocol import report_read
from handoffd.protocol.column_codes import ColumnError, pack, split_frames
from handoffd.protocol.messages_columns import ReportColumns, ReportFailure

FIELDS = ("task_ids", "attempts", "states", "sizes", "frames", "durations", "pids", "started")
FIELDS += ("ended", "bytes_in", "failures", "outputs")


PURE = pure(report_read, "handoffd_report_read_pure")
BUILDS = (report_read, PURE)


def _old_read(msg: ReportColumns, frames: list[Any]) -> tuple[Any, list[Any]]:
    """The reading before the one pass: each column unpacked and checked alone, then the
    frames split and each report's value looked up."""
    table = report_read.ReportTable.__new__(report_read.ReportTable)
    report_read._read_checked(table, msg)
    split = split_frames(msg.frame_sizes, frames, "ReportColumns")
    return table, report_read.frame_values(table.frames, split)


def _fields(table: Any) -> list[Any]:
    return [getattr(table, f) for f in FIELDS]


def _outcome(read: Any, msg: ReportColumns, frames: list[Any]) -> Any:
    try:
        table, values = read(msg, frames)
    except ColumnError as exc:
        return ("error", str(exc))
    assert all(type(v) is bytes for v in values if v is not None)
    return _fields(table), values


def test_the_compiled_build_is_the_one_imported_when_the_core_was_built() -> None:
    check_builds(report_read, PURE)


@pytest.mark.parametrize("build", BUILDS, ids=("built", "pure"))
@pytest.mark.parametrize("seed", range(40))
def test_one_pass_gives_the_events_history_and_latency_of_the_column_reading(
    build: ModuleType, seed: int
) -> None:
    rng = random.Random(seed)
    # (seed % 3 == 0: all successes, each with its value: the one pass's own case)
    new, old = _mix(rng, 1 if seed % 5 == 0 else 40)
    if seed % 3 == 0:
        kept = [i for i, e in enumerate(new) if e[1] is not None and type(e[0]) is tuple] or [0]
        new, old = [new[i] for i in kept], [old[i] for i in kept]
    ledger = SimpleNamespace(free={"cpu": 1.0}, version=3)
    msg, frames = report_message(RUN, new, ledger)
    if seed % 2:  # (as received: frames the transport hands over, not bytes)
        frames = [memoryview(f) for f in frames]
    if all(type(e[0]) is tuple and e[1] is not None for e in new):  # (the one pass's own)
        assert build._read_at_once(build.ReportTable.__new__(build.ReportTable), msg)
    table, values = build.read(msg, list(frames))
    before, old_values = _old_read(msg, list(frames))
    assert _fields(table) == _fields(before)
    assert values == old_values
    assert _new_owner(table, values, new) == _new_owner(before, old_values, new)
    assert _new_owner(table, values, new) == _old_owner(old)  # (the per-task reports')


def _good(rng: random.Random, n: int) -> tuple[ReportColumns, list[Any]]:
    values = [rng.randbytes(rng.randrange(0, 9)) for _ in range(n)]
    msg = ReportColumns(
        RUN,
        tuple(f"t{i}" for i in range(n)),
        pack("q", [rng.randrange(1, 4) for _ in range(n)]),
        pack("B", [1] * n),
        pack("q", list(map(len, values))),
        pack("i", list(range(n))),
        pack("d", [rng.random() for _ in range(n)]),
        pack("q", [rng.randrange(1, 9999) for _ in range(n)]),
        pack("d", [rng.random() for _ in range(n)]),
        pack("d", [rng.random() for _ in range(n)]),
        pack("q", [rng.randrange(0, 99) for _ in range(n)]),
        (),
        {"cpu": 1.0},
        5,
        (),
        pack("q", list(map(len, values))),
    )
    return msg, [b"".join(values)]


_FAILURE = ReportFailure(0, "error", "ValueError", "bad", "tb")


def _hostile(rng: random.Random, msg: ReportColumns, frames: list[Any]) -> Any:
    """``msg``/``frames`` with one thing wrong, as a forged or broken sender would send them."""
    n = len(msg.task_ids)
    field = rng.choice(FIELDS[1:10] + ("frame_sizes", "frames!", "failures", "outputs"))
    if field == "frames!":  # the frames received disagree with the sizes
        blob = bytes(frames[0])
        return msg, rng.choice([[blob + b"x"], [blob[:-1] or b"y"], [blob, b"extra"], []])
    if field == "failures":
        return dataclasses.replace(msg, failures=(_FAILURE,)), frames
    if field == "outputs":
        return dataclasses.replace(msg, outputs=("o",) * (n + 1)), frames
    data = getattr(msg, field)
    how = rng.randrange(4)
    if how == 0:
        wrong: Any = data[:-1] if data else b"\x00"
    elif how == 1:
        wrong = data + b"\x00" * rng.choice((1, 4, 8))
    elif how == 2:
        wrong = data.decode("latin-1")  # a str where bytes belong
    elif field == "states":
        wrong = bytes([rng.choice((0, 2, 3, 200))]) + data[1:]
    elif field == "frame_sizes":
        wrong = pack("q", [-2] + [0] * (n - 1))
    else:
        wrong = bytearray(data)
    return dataclasses.replace(msg, **{field: wrong}), frames


@pytest.mark.parametrize("build", BUILDS, ids=("built", "pure"))
@pytest.mark.parametrize("seed", range(120))
def test_a_malformed_message_is_the_same_error_either_way(build: ModuleType, seed: int) -> None:
    rng = random.Random(seed)
    msg, frames = _good(rng, rng.randrange(1, 6))
    bad, bad_frames = _hostile(rng, msg, frames)
    try:
        expected: Any = _outcome(_old_read, bad, list(bad_frames))
    except (TypeError, ValueError) as exc:  # (a str column: what the old reading raised)
        with pytest.raises(type(exc)):
            build.read(bad, list(bad_frames))
        return
    assert _outcome(build.read, bad, list(bad_frames)) == expected


@pytest.mark.parametrize("build", BUILDS, ids=("built", "pure"))
def test_the_usual_message_is_read_in_one_pass(build: ModuleType) -> None:
    """The one pass reads the all-DONE packed message itself (no fallback), and gives back the
    values as slices of the one frame, in report order."""
    msg, frames = _good(random.Random(7), 4)
    table = build.ReportTable.__new__(build.ReportTable)
    assert build._read_at_once(table, msg)
    _, values = build.read(msg, frames)
    assert b"".join(values) == frames[0] and len(values) == 4
    failed = dataclasses.replace(msg, states=pack("B", [1, 2, 1, 1]), failures=(_FAILURE,))
    assert not build._read_at_once(table, failed)  # (a FAILED report: the checked reading)
