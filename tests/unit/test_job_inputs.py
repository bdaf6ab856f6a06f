"""A task's Job inputs (``executor_records.job_inputs``): direct values (the one-pass path) and
inline inputs with nested ones (the tree) give the descriptors ``worker.invoke.resolve`` reads."""

from __future__ import annotations

import pytest

from handoffd.daemon.executor_records import Task, job_inputs
from handoffd.protocol import messages as m
from handoffd.store.store import ResultStore


def _task(inputs: tuple[m.InputRef, ...], frames: dict[int, bytes]) -> Task:
    return Task("r", "t", 0, "o:1", {"cpu": 1.0}, [], "variadic", None, b"p", inputs, frames)


def _ref(kind: str, task_id: str, frame: int, parent: int = -1) -> m.InputRef:
    return m.InputRef(kind, task_id, (), frame, "variadic", parent)


def test_direct_values_come_from_frames_and_the_store_in_order() -> None:
    store = ResultStore(memory_limit=1 << 20)
    store.put("r", "a", b"held")
    task = _task(
        (_ref("value", "f", 1), _ref("value", "a", -1), _ref("value", "g", 2)), {1: b"x", 2: b"y"}
    )
    assert job_inputs(task, store) == [("value", b"x"), ("value", b"held"), ("value", b"y")]


def test_an_inline_input_nests_its_own_inputs() -> None:
    store = ResultStore(memory_limit=1 << 20)
    store.put("r", "a", b"held")
    refs = (
        _ref("value", "f", 1),
        _ref("inline", "i", 2),
        _ref("value", "a", -1, parent=1),
        _ref("value", "g", 3),
    )
    task = _task(refs, {1: b"x", 2: b"fn", 3: b"y"})
    assert job_inputs(task, store) == [
        ("value", b"x"),
        ("inline", b"fn", "variadic", [("value", b"held")]),
        ("value", b"y"),
    ]


@pytest.mark.parametrize("nested", [False, True])
def test_a_value_gone_from_the_store_is_a_lookup_error(nested: bool) -> None:
    gone = _ref("value", "gone", -1, parent=1 if nested else -1)
    refs = (_ref("value", "f", 0), _ref("inline", "i", 1), gone) if nested else (gone,)
    with pytest.raises(LookupError):
        job_inputs(_task(refs, {0: b"x", 1: b"fn"}), ResultStore(memory_limit=1 << 20))
