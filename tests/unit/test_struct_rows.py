"""Rows of records built without their dataclass machinery per call: the same fields, in order."""

from __future__ import annotations

import dataclasses

import pytest

from handoffd.protocol.messages_observability import AttemptInfo
from handoffd.protocol.snapshot import attempt_row


def test_an_attempt_row_is_its_fields_in_declared_order():
    a = AttemptInfo(2, "n1", "DONE", 1.5, 2.5, 3.5, 77, 10, 20, "E", "msg", "tb", "ok")
    expected = [getattr(a, f.name) for f in dataclasses.fields(a)]
    assert attempt_row(a) == expected and type(attempt_row(a)) is list
    b = AttemptInfo(3, "n2", "FAILED", 0.0, 0.0, 0.0, 0, 0, 0, "", "", "", "lost")
    assert attempt_row(b)[0] == 3 and attempt_row(b)[-1] == "lost"  # no row of another object


@dataclasses.dataclass(frozen=True, slots=True)
class _One:
    only: str


def test_a_one_field_record_is_a_one_item_row():
    assert attempt_row(_One("x")) == ["x"]


def test_a_fast_constructor_builds_the_same_frozen_record_for_every_struct_and_message():
    from handoffd.protocol.registry import MESSAGES, STRUCTS, maker

    built = 0
    for cls in [*STRUCTS.values(), *MESSAGES.values()]:
        if hasattr(cls, "__post_init__") or any(
            f.default_factory is not dataclasses.MISSING for f in dataclasses.fields(cls)
        ):
            with pytest.raises(TypeError):
                maker(cls)
            continue
        values = [(cls.__name__, i) for i in range(len(dataclasses.fields(cls)))]
        fast, slow = maker(cls)(*values), cls(*values)
        assert type(fast) is cls and fast == slow and hash(fast) == hash(slow), cls
        assert [getattr(fast, f.name) for f in dataclasses.fields(cls)] == values
        with pytest.raises(dataclasses.FrozenInstanceError):
            fast.__setattr__(dataclasses.fields(cls)[0].name, None)
        built += 1
    assert built > 50


def test_a_fast_constructor_takes_the_fields_defaults_and_names():
    from handoffd.protocol import messages as m
    from handoffd.protocol.registry import maker

    make = maker(m.TaskReport)
    head = ("t", 1, "FAILED", 0, -1, "error", "E", "boom", "tb")
    assert make(*head) == m.TaskReport(*head)
    assert make(*head, pid=7, duration=0.5) == m.TaskReport(*head, pid=7, duration=0.5)
    with pytest.raises(TypeError):
        make(*head[:-1])  # a field without a default is required, as in __init__


def test_dispatch_columns_read_back_into_equal_items():
    from handoffd.protocol import columns
    from handoffd.protocol import messages as m

    refs = (
        m.InputRef("value", "a", ("h:1", "h:2"), -1, "variadic", -1),
        m.InputRef("inline", "b", (), 1, "as_list", -1),
        m.InputRef("value", "c", ("h:2",), 2, "variadic", 1),
    )
    items = tuple(
        m.DispatchItem(f"t{i}", i, {"cpu": 1.0}, "variadic", 2.5 if i else None, 0, refs, i, 0.5)
        for i in range(3)
    )
    msg = m.DispatchTasks("r", "owner:1", items, (), ())
    back = columns.dispatch_items(columns.dispatch_columns(msg))
    assert back == msg and all(type(i) is m.DispatchItem for i in back.items)
