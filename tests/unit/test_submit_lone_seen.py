"""A submission of one plain function (every one-task ``execute``) is checked by the owner's shell
in one pass, its bounds with it (``validation.lone_submission``), and a function submitted before
with the same fields is told by a look-up (``validation._lone_seen``). Held to the general path
(``intake.check_submission``, then ``validation.wire_specs``) over random sequences of
submissions, each drawn as a change of one seen before, so the look-up is hit by near misses:
whatever the one pass takes is taken the same, with the same spec, and a near miss of a function
seen before (a bool for an int cost, a control character in the run id, ...) is refused the same
way by the owner."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from fake_port import FakePort
from hypothesis import given, settings
from hypothesis import strategies as st

from handoffd import intake, validation
from handoffd.config import Limits
from handoffd.daemon.owner import OwnerIO
from handoffd.errors import ValidationError
from handoffd.protocol import messages as m
from handoffd.scheduler.owner import OwnerScheduler

_PLAIN = m.TaskMeta("f", (), {"cpu": 1.0}, "variadic", None, None, False, None, None, 0)
_META_VALUES: dict[str, list[Any]] = {
    "id": ["g", "", "a\nb", "x" * 9, "\u00e9t\u00e9", "a\u2028b", 7],
    "deps": [("f",), ["g"], []],
    "cost": [
        {},
        {"cpu": 1},
        {"cpu": True},
        {"cpu": 2},
        {"cpu": 1.0, "memory": 512.0},
        {"memory": 512.0, "cpu": 1.0},
        {"cpu": -1.0},
        {"cpu": float("nan")},
        {"cpu": "1"},
        {"cpu": [1]},
        {"bogus": 1.0},
        None,
    ],
    "argument_inclusion": ["as_list", "bogus", ["variadic"]],
    "node": ["n1"],
    "collocate_with": ["f", "g"],
    "inline": [True, 0],
    "max_retries": [0, 2, -1],
    "timeout": [1.5, -1.0],
    "priority": [-5, 1, True, 1.0, 1 << 70],
}
_MSG_VALUES: dict[str, list[Any]] = {
    "run_id": ["r2", "", "r\x00", "r" * 9, "r\u2028"],
    "max_retries": [-1, 3, True, None, 1.0],
    "policy": ["spread", "bogus", None],
    "outputs": [(), ("f",), ("g",), "f", ["f"]],
    "packages": [("sha",)],
}
_FIELDS = [("meta", k, v) for k, vs in _META_VALUES.items() for v in vs] + [
    ("msg", k, v) for k, vs in _MSG_VALUES.items() for v in vs
]
_LIMITS = Limits(max_id_chars=8)


def _msg(meta: m.TaskMeta, **fields: Any) -> m.SubmitAndWait:
    msg = m.SubmitAndWait(7, "r1", (meta,), 0, "binpack", None, 30.0, 1 << 20, True)
    return dataclasses.replace(msg, **fields)


def _changed(msg: m.SubmitAndWait, changes: list[tuple[str, str, Any]]) -> m.SubmitAndWait:
    meta = msg.tasks[0]
    meta = dataclasses.replace(meta, **{k: v for scope, k, v in changes if scope == "meta"})
    return dataclasses.replace(
        msg, tasks=(meta,), **{k: v for scope, k, v in changes if scope == "msg"}
    )


def _general(msg: Any, frames: list[Any], limits: Limits) -> tuple[str, Any]:
    """What the owner's general path makes of ``msg``: its specs (every stored field and the
    types of the containers) or its refusal."""
    try:
        intake.check_submission(msg.run_id, [t.id for t in msg.tasks], limits)
        specs = validation.wire_specs(msg, frames)
    except ValidationError as exc:
        return "error", (exc.kind, exc.function_id, exc.message)
    return "specs", [(vars(s), type(s.deps), type(s.cost), type(s.payload)) for s in specs]


def _lone(msg: Any, frames: list[Any], limits: Limits) -> tuple[str, Any] | None:
    spec = validation.lone_submission(msg, frames, limits)
    if spec is None:
        return None
    return "specs", [(vars(spec), type(spec.deps), type(spec.cost), type(spec.payload))]


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(0, 7),  # which earlier submission this one changes
            st.lists(st.sampled_from(_FIELDS), max_size=2),
            st.sampled_from([0, 0, 0, -1, 1]),  # frames past (or short of) one
        ),
        min_size=1,
        max_size=12,
    )
)
def test_the_one_pass_takes_what_the_general_path_takes_and_builds_the_same_spec(
    steps: list[tuple[int, list[tuple[str, str, Any]], int]],
) -> None:
    validation._lone_seen.clear()
    seen = [(_msg(_PLAIN), True)]  # (each with whether it is the plain one, unchanged)
    assert _lone(seen[0][0], [b"code"], _LIMITS) is not None  # (the plain function seen once)
    for back, changes, extra in steps:
        base, plain = seen[back % len(seen)]
        msg = _changed(base, changes)
        seen.append((msg, plain and not changes))
        frames: list[Any] = [b"code-%d" % len(seen)] * max(0, 1 + extra)
        lone = _lone(msg, frames, _LIMITS)
        general = _general(msg, frames, _LIMITS)
        if lone is not None:
            assert lone == general, (msg, frames)
        elif plain and not changes and extra == 0:
            raise AssertionError(f"a plain submission went the general path: {msg}")


@pytest.mark.parametrize("extra", [0, -1, 1])
def test_each_single_change_of_a_function_seen_before_is_taken_as_the_general_path_takes_it(
    extra: int,
) -> None:
    assert len(_FIELDS) > 50
    for change in _FIELDS:
        validation._lone_seen.clear()
        plain = _msg(_PLAIN)
        assert _lone(plain, [b"code"], _LIMITS) is not None  # (seen once: a hit from here)
        msg = _changed(plain, [change])
        frames = [b"code-2"] * (1 + extra)
        lone = _lone(msg, frames, _LIMITS)
        if lone is not None:
            assert lone == _general(msg, frames, _LIMITS), change


def test_a_plain_function_seen_before_is_taken_with_its_own_payload_and_cost() -> None:
    validation._lone_seen.clear()
    first = validation.lone_submission(_msg(_PLAIN), [b"one"], _LIMITS)
    again = validation.lone_submission(_msg(_PLAIN, run_id="r2"), [memoryview(b"two")], _LIMITS)
    assert first is not None and again is not None
    assert len(validation._lone_seen) == 1  # (the second a hit)
    assert (again.payload, type(again.payload)) == (b"two", bytes)
    assert again == dataclasses.replace(first, payload=b"two")
    assert again.cost is first.cost  # (one dict, only read: a run's build reads it once)
    entry = next(iter(validation._lone_seen.values()))
    assert entry[-1]["payload"] == b""  # (no payload kept past its run)


def test_a_run_limit_below_one_task_is_told_by_the_general_path() -> None:
    validation._lone_seen.clear()
    msg = _msg(_PLAIN)
    assert _lone(msg, [b"code"], _LIMITS) is not None
    limits = dataclasses.replace(_LIMITS, max_tasks_per_run=0)
    assert _lone(msg, [b"code"], limits) is None
    assert _general(msg, [b"code"], limits)[1][0] == "too_many_tasks"


def test_a_function_seen_under_other_limits_is_checked_under_these() -> None:
    validation._lone_seen.clear()
    msg = _msg(dataclasses.replace(_PLAIN, id="fives"))
    assert _lone(msg, [b"code"], _LIMITS) is not None
    tighter = dataclasses.replace(_LIMITS, max_id_chars=3)
    assert _lone(msg, [b"code"], tighter) is None
    assert _general(msg, [b"code"], tighter)[1][0] == "invalid_function_id"
    short = dataclasses.replace(msg, run_id="r12")
    assert _lone(short, [b"code"], tighter) is None  # (and a run id within them: still refused)


def _owner(port: FakePort) -> OwnerIO:
    class Ledger:
        capacity = {"cpu": 2.0}
        free = {"cpu": 2.0}
        version = 1

    return OwnerIO(
        port,
        OwnerScheduler(port.name, now=port.now()),
        resources=Ledger(),
        local_value=lambda run_id, task_id: None,
        keep_results_s=30.0,
    )


@pytest.mark.parametrize(
    ("scope", "name", "value", "kind"),
    [
        ("meta", "cost", {"cpu": True}, "invalid_cost"),
        ("meta", "priority", True, "invalid_option"),
        ("meta", "inline", 0, None),  # (taken as regular by the general path: 0 == False)
        ("meta", "deps", ("f",), "cycle"),
        ("msg", "run_id", "r\x00", "invalid_run_id"),
        ("msg", "run_id", "r" * 300, "invalid_run_id"),
        ("msg", "outputs", ("g",), "missing_dependency"),
    ],
)
def test_a_near_miss_of_a_function_taken_before_is_refused_as_the_general_path_refuses_it(
    scope: str, name: str, value: Any, kind: str | None
) -> None:
    validation._lone_seen.clear()
    port = FakePort()
    owner = _owner(port)
    # (a priority of 1 and a cost of int 1: True equals both, and hashes as they do)
    plain = _msg(dataclasses.replace(_PLAIN, cost={"cpu": 1}, priority=1), run_id="r2")
    owner.handle(dataclasses.replace(plain, run_id="r1"), [b"code"], b"client", None)
    assert port.take_replies(m.RunRejected) == [] and owner.scheduler.run_state("r1") is not None
    assert len(validation._lone_seen) == 1  # (the function seen once)
    near = _changed(plain, [(scope, name, value)])
    if scope != "msg" or name != "run_id":
        near = dataclasses.replace(near, run_id="r3")
    expected = _general(near, [b"code"], Limits())
    owner.handle(near, [b"code"], b"client", None)
    refused = port.take_replies(m.RunRejected)
    if kind is None:
        assert expected[0] == "specs" and refused == []
        return
    assert expected[0] == "error" and expected[1][0] == kind
    (reply,) = refused
    assert reply.msg.error.validation_kind == kind
    assert reply.msg.error.message == expected[1][2]
