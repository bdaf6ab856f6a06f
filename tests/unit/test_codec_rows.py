"""codec.Rows: structs given as tuples of their fields encode to the same bytes as the structs."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handoffd.protocol import codec
from handoffd.protocol import messages as m

_TEXT = st.text(max_size=8)
_INT = st.integers(-(1 << 63), (1 << 64) - 1)
_NUMBER = st.one_of(st.floats(allow_nan=False), st.integers(-(1 << 53), 1 << 53))

# TaskMeta's fields, in order, with the loose types the encoder accepts (ints for floats).
_ROW = st.tuples(
    _TEXT,
    st.lists(_TEXT, max_size=4).map(tuple),
    st.dictionaries(_TEXT, _NUMBER, max_size=3),
    _TEXT,
    st.none() | _TEXT,
    st.none() | _TEXT,
    st.booleans(),
    st.none() | _INT,
    st.none() | _NUMBER,
    _INT,
)


def _submit(tasks: Any, outputs: tuple[str, ...] | None) -> m.SubmitAndWait:
    return m.SubmitAndWait(7, "run-1", tasks, 3, "binpack", outputs, 2.0, 1 << 20, True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(_ROW, max_size=6), outputs=st.none() | st.lists(_TEXT).map(tuple))
def test_rows_encode_like_the_structs(rows: list[tuple[Any, ...]], outputs: Any) -> None:
    structs = tuple(m.TaskMeta(*row) for row in rows)
    generic = codec.encode(_submit(structs, outputs), sender="c", frames=[b"p"] * len(rows))
    fast = codec.encode(_submit(codec.Rows(rows), outputs), sender="c", frames=[b"p"] * len(rows))
    assert fast == generic
    decoded = codec.decode(fast)
    assert decoded is not None
    assert decoded.msg.tasks == tuple(
        m.TaskMeta(*r[:2], {k: float(v) for k, v in r[2].items()}, *r[3:8], _float(r[8]), r[9])
        for r in rows
    )


def _float(value: Any) -> Any:
    return None if value is None else float(value)


def _row(**changes: Any) -> tuple[Any, ...]:
    fields = dict(
        id="a",
        deps=("b",),
        cost={"cpu": 1.0},
        argument_inclusion="variadic",
        node=None,
        collocate_with=None,
        inline=False,
        max_retries=None,
        timeout=None,
        priority=0,
    )
    fields.update(changes)
    return tuple(fields.values())


@pytest.mark.parametrize(
    "change",
    [
        {"id": 3},
        {"deps": ["b"]},
        {"deps": ("b", 1)},
        {"cost": {"cpu": "1"}},
        {"cost": {1: 1.0}},
        {"node": 5},
        {"inline": 1},
        {"max_retries": 1 << 64},
        {"timeout": "1"},
        {"priority": True},
    ],
)
def test_a_bad_row_fails_like_the_bad_struct(change: dict[str, Any]) -> None:
    with pytest.raises(TypeError) as generic:
        codec.encode(_submit((m.TaskMeta(*_row(**change)),), None), sender="c")
    with pytest.raises(TypeError) as fast:
        codec.encode(_submit(codec.Rows([_row(**change)]), None), sender="c")
    assert str(fast.value) == str(generic.value)
    assert str(fast.value).startswith("SubmitAndWait.tasks: TaskMeta.")


@pytest.mark.parametrize("row", [_row()[:-1], [*_row()], "abc"])
def test_a_row_of_the_wrong_shape_is_refused(row: Any) -> None:
    with pytest.raises(TypeError, match="row of 10 TaskMeta fields"):
        codec.encode(_submit(codec.Rows([row]), None), sender="c")
