"""The events and instructions every run makes (a one-task ``execute``'s submission, acceptance,
deadline timer, end, release and free) are plain slotted dataclasses, fast to build, that still
compare, hash and pickle as the frozen ones they were: a frozen slotted dataclass pickles its
fields' values as a list, so a recording pickled before (``bench/owner_replay.py``'s) loads."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import pytest

from handoffd.errors import ValidationError
from handoffd.scheduler import events as ev
from handoffd.scheduler import retention as rt
from handoffd.spec import RunOptions, TaskSpec

SAMPLES: list[Any] = [
    ev.RunSubmitted("r", [TaskSpec("t", (), {"cpu": 1.0}, b"p")], RunOptions(timeout=3.0)),
    ev.ResultsReleased("r"),
    ev.StartTimer(("deadline", "r"), 3.0),
    ev.SubmissionAccepted("r"),
    ev.RunFinished("r", "FAILED", ValidationError("bad", "t", "why")),
    ev.FreeResults("r", ("a", "b")),
    rt.RunEnded("r"),
    rt.ResultsCollected("r"),
    rt.ReleaseResults("r", True),
]


@pytest.mark.parametrize("made", SAMPLES, ids=lambda m: type(m).__name__)
def test_a_runs_event_pickles_compares_and_hashes_as_a_frozen_one(made: Any) -> None:
    cls = type(made)
    values = [getattr(made, f.name) for f in dataclasses.fields(cls)]
    back = pickle.loads(pickle.dumps(made))
    assert type(back) is cls and repr(back) == repr(made)
    assert repr([getattr(back, f.name) for f in dataclasses.fields(cls)]) == repr(values)
    if cls.__module__ == ev.__name__:
        # the frozen slotted format: a list of the fields' values, restored by ``__setstate__``
        assert made.__getstate__() == values
        empty = cls.__new__(cls)
        empty.__setstate__(values)
        assert repr(empty) == repr(made)
    if all(isinstance(v, (str, tuple, float, bool)) for v in values):
        assert back == made and hash(back) == hash(made) == hash(tuple(values))
    assert not hasattr(made, "__dict__")
