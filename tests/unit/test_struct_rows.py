"""Rows of records built without their dataclass machinery per call: the same fields, in order."""

from __future__ import annotations

import dataclasses

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
