"""``validation.wire_specs`` of a submission of one function that needs nothing (every one-task
``execute``) builds its spec without the general path's views and per-row lists
(``validation._lone_spec``); held equal to the general path over random submissions, refusals
included: whatever the lone spec does not take goes the general way and is refused the same."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from handoffd import validation
from handoffd.errors import ValidationError
from handoffd.protocol import messages as m


def _general(msg: Any, frames: list[bytes], monkeypatch: pytest.MonkeyPatch) -> tuple[str, Any]:
    with monkeypatch.context() as patch:
        patch.setattr(validation, "_lone_spec", lambda *_: None)
        return _outcome(msg, frames)


def _outcome(msg: Any, frames: list[bytes]) -> tuple[str, Any]:
    try:
        specs = validation.wire_specs(msg, frames)
    except ValidationError as exc:
        return "error", (exc.kind, exc.function_id, str(exc))
    # every field, the types of the containers too (a list for a tuple would compare equal)
    return "specs", [(vars(s), type(s.deps), type(s.cost), type(s.payload)) for s in specs]


# A plain one-function submission, then a few of its fields (the function's or the message's)
# replaced by others, valid or not: most cases sit on the lone spec's edge.
_META_VALUES: dict[str, list[Any]] = {
    "id": ["g", "", "a\nb", 7],
    "deps": [("f",), ("g",), ["g"], []],  # (the schema reads only sequences)
    "cost": [
        {},
        {"cpu": 2},
        {"cpu": 1.0, "memory": 512.0},
        {"gpu": 1},
        {"cpu": -1.0},
        {"cpu": float("nan")},
        {"cpu": True},
        {"cpu": "1"},
        {"bogus": 1.0},
        None,
    ],
    "argument_inclusion": ["as_list", "bogus"],
    "node": ["n1"],
    "collocate_with": ["f", "g"],
    "inline": [True],
    "max_retries": [0, 2, -1],
    "timeout": [1.5, -1.0],
    "priority": [-5, 3, 1 << 70, True, 1.5],
}
_MSG_VALUES: dict[str, list[Any]] = {
    "max_retries": [-1, 3, True, None, 1.0],
    "policy": ["spread", "first_fit", "bogus", None],
    "outputs": [(), ("f",), ("g",), ("f", "f"), "f", ["f"]],
    "packages": [("sha",)],
    "release": [False],
}
_META_FIELDS = {k: st.sampled_from(v) for k, v in _META_VALUES.items()}
_MSG_FIELDS = {k: st.sampled_from(v) for k, v in _MSG_VALUES.items()}
_PLAIN = m.TaskMeta("f", (), {"cpu": 1.0}, "variadic", None, None, False, None, None, 0)


_FIELDS = [("meta", k) for k in _META_FIELDS] + [("msg", k) for k in _MSG_FIELDS]


@st.composite
def _submissions(draw: Any) -> Any:
    """Up to two fields changed at once (more: nearly every case is refused for the first)."""
    chosen = draw(st.lists(st.sampled_from(_FIELDS), max_size=2, unique=True))
    meta = dataclasses.replace(
        _PLAIN, **{k: draw(_META_FIELDS[k]) for scope, k in chosen if scope == "meta"}
    )
    tasks = (meta,) if draw(st.integers(0, 5)) else (meta, _PLAIN)
    msg = m.SubmitAndWait(7, "r1", tasks, 0, "binpack", None, 30.0, 1 << 20, True)
    return dataclasses.replace(
        msg, **{k: draw(_MSG_FIELDS[k]) for scope, k in chosen if scope == "msg"}
    )


@settings(max_examples=400, deadline=None)
@given(msg=_submissions(), extra=st.sampled_from([0, 0, 0, -1, 1, 2]), data=st.data())
def test_lone_spec_equals_the_general_path(msg: Any, extra: int, data: Any) -> None:
    frames = [b"code-%d" % i for i in range(max(0, len(msg.tasks) + extra))]
    if frames and data.draw(st.booleans()):
        frames[0] = memoryview(bytearray(frames[0]))  # (a transport may hand over views)
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert _outcome(msg, frames) == _general(msg, frames, monkeypatch)


# Every single change of a plain submission, from the lists the random test draws from.
_SINGLE = [
    (scope, k, v)
    for scope, fields in (("meta", _META_VALUES), ("msg", _MSG_VALUES))
    for k, values in fields.items()
    for v in values
]


@pytest.mark.parametrize("extra", [0, -1, 1])
def test_each_single_change_is_taken_or_refused_as_the_general_path_does(extra: int) -> None:
    assert len(_SINGLE) > 30
    for scope, k, v in _SINGLE:
        meta = dataclasses.replace(_PLAIN, **{k: v}) if scope == "meta" else _PLAIN
        msg = m.SubmitAndWait(7, "r1", (meta,), 0, "binpack", None, 30.0, 1 << 20, True)
        if scope == "msg":
            msg = dataclasses.replace(msg, **{k: v})
        frames = [b"code"] * (1 + extra)
        with pytest.MonkeyPatch.context() as monkeypatch:
            assert _outcome(msg, frames) == _general(msg, frames, monkeypatch), (scope, k, v)


def test_a_plain_one_function_submission_takes_the_lone_spec(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def general(*_: Any) -> Any:
        raise AssertionError("the general checks ran for a plain one-function submission")

    monkeypatch.setattr(validation, "check_submission", general)
    meta = m.TaskMeta("f", (), {"cpu": 1.0}, "variadic", None, None, False, None, None, 3)
    for outputs in (None, (), ("f",)):
        msg = m.SubmitAndWait(7, "r1", (meta,), 0, "spread", outputs, 30.0, 1 << 20, True)
        (spec,) = validation.wire_specs(msg, [b"code"])
        assert (spec.id, spec.deps, spec.cost, spec.payload, spec.priority) == (
            "f",
            (),
            {"cpu": 1.0},
            b"code",
            3,
        )
