"""``OwnedRunStatus`` and ``_Kept`` are frozen dataclasses built by a hand ``__init__`` (made per
run: a one-task run's answer and release); each takes exactly its fields, in their order, with
their defaults, sets each to what it was given and stays frozen."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from handoffd.scheduler.owned import OwnedRunStatus, _Kept


@pytest.mark.parametrize("cls", [OwnedRunStatus, _Kept])
def test_the_hand_init_takes_and_sets_the_fields(cls: type) -> None:
    fields = dataclasses.fields(cls)
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert [p.name for p in params] == [f.name for f in fields]
    assert [p.default for p in params] == [
        inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default for f in fields
    ]
    given = [object() for _ in fields]
    made = cls(*given)
    assert [getattr(made, f.name) for f in fields] == given
    assert made == cls(**{f.name: v for f, v in zip(fields, given, strict=True)})
    assert vars(made).keys() == {f.name for f in fields}
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, fields[0].name, None)
    assert dataclasses.replace(made) == made
