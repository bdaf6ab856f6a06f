"""A report naming its inline value's frame is built positionally (``executor_records.with_frame``),
field for field what ``dataclasses.replace`` gave, whatever the report holds."""

from __future__ import annotations

import dataclasses

from hypothesis import given
from hypothesis import strategies as st

from handoffd.daemon.executor_records import report_message, with_frame
from handoffd.protocol import messages as m
from handoffd.protocol.columns import split_frames, tasks_reported_of

_text = st.text(max_size=12)
_reports = st.builds(
    m.TaskReport,
    _text,
    st.integers(1, 9),
    st.sampled_from(["DONE", "FAILED", "RUNNING"]),
    st.integers(0, 1 << 40),
    st.integers(-1, 9),
    _text,
    _text,
    _text,
    _text,
    st.integers(0, 1 << 22),
    st.floats(0, 1e9),
    st.floats(0, 1e9),
    st.integers(0, 1 << 40),
    st.floats(-1, 1e3),
)


@given(report=_reports, frame=st.integers(0, 1000))
def test_with_frame_is_replace(report: m.TaskReport, frame: int) -> None:
    out = with_frame(report, frame)
    assert out == dataclasses.replace(report, frame=frame) and out.frame == frame


class _Ledger:
    free = {"cpu": 1.0}
    version = 3


def test_the_values_frames_are_numbered_in_report_order() -> None:
    base = m.TaskReport("a", 1, "DONE", 2, -1, "", "", "", "", 7, 1.0, 2.0, 0, 0.5)
    entries = [
        (base, b"va", ""),
        (dataclasses.replace(base, task_id="b"), None, "out"),
        (dataclasses.replace(base, task_id="c"), b"vc", ""),
    ]
    columns, sent = report_message("r", entries, _Ledger())
    msg = tasks_reported_of(columns)
    frames = split_frames(columns.frame_sizes, sent, "ReportColumns")
    assert [r.frame for r in msg.reports] == [0, -1, 1] and frames == [b"va", b"vc"]
    assert sent == [b"vavc"]  # the small values packed into one frame
    assert msg.reports[2] == dataclasses.replace(base, task_id="c", frame=1)
    assert msg.outputs == ("", "out", "") and msg.free == {"cpu": 1.0}
