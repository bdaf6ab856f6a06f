"""The hot-path makers of the executing side's records (``executor_intake._task``,
``_records.new_job``, ``_records.ok_outcome``) build them without the dataclass's ``__init__``:
each record must equal, in every slot, the one its constructor builds from the same inputs."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from handoffd.daemon.executor_intake import _task
from handoffd.daemon.executor_records import NO_MISSING, Task
from handoffd.worker._records import Job, Outcome, new_job, ok_outcome

_UNSET = object()
text = st.text(max_size=8)
maybe_float = st.none() | st.floats(allow_nan=False, min_value=0, max_value=1e6)


def slots_of(record: Any) -> dict[str, Any]:
    """Every slot of ``record`` (``_UNSET`` for one not set), type included: a maker that left
    a slot unset or set another value (or type) than the constructor differs here."""
    return {
        f.name: (getattr(record, f.name, _UNSET), type(getattr(record, f.name, _UNSET)))
        for f in fields(record)
    }


@settings(max_examples=200, deadline=None)
@given(
    run_id=text,
    owner=text,
    task_id=text,
    attempt=st.integers(0, 9),
    cost=st.dictionaries(st.sampled_from(["cpu", "memory", "gpu"]), st.floats(0, 64)),
    inclusion=st.sampled_from(["variadic", "packed"]),
    timeout=maybe_float,
    qkey=st.tuples(st.integers(-9, 9), st.floats(-9, 9), st.integers(0, 99)),
    gpus=st.none() | st.lists(st.integers(0, 7), max_size=3),
    frames=st.lists(st.binary(max_size=4), min_size=1, max_size=4),
    flat=st.lists(st.integers(0, 3) | text, max_size=3).map(tuple),
    needs=st.lists(text, max_size=3).map(tuple),
    source=st.none() | st.tuples(st.just("table"), st.integers(0, 9)),
)
def test_task_maker_equals_the_constructor(
    run_id: str,
    owner: str,
    task_id: str,
    attempt: int,
    cost: dict[str, float],
    inclusion: str,
    timeout: float | None,
    qkey: tuple[int, float, int],
    gpus: list[int] | None,
    frames: list[bytes],
    flat: tuple[Any, ...],
    needs: tuple[str, ...],
    source: Any,
) -> None:
    kept = dict(enumerate(frames))
    payload_frame = len(frames) - 1
    head = (task_id, attempt, cost, inclusion, timeout, qkey)
    made = _task(run_id, owner, head, gpus, payload_frame, kept, flat, needs, source)
    built = Task(
        run_id=run_id,
        task_id=task_id,
        attempt=attempt,
        owner_address=owner,
        cost=dict(cost),
        gpus=gpus or [],
        argument_inclusion=inclusion,
        timeout=timeout,
        payload=kept[payload_frame],
        inputs=(),
        frames=kept,
        claimed=gpus is not None,
        payload_frame=payload_frame,
        needs=needs,
        flat=flat,
        source=source,
        qkey=qkey,
    )
    assert slots_of(made) == slots_of(built)
    assert made == built
    # a fresh cost, never the caller's; ``missing`` the shared immutable empty set (a task that
    # waits for a value is given its own set then: ``_gather``)
    assert made.cost is not cost and made.missing is NO_MISSING and type(made.missing) is frozenset


@settings(max_examples=200, deadline=None)
@given(
    key=st.tuples(text, text, st.integers(0, 9)),
    payload=st.binary(max_size=8),
    inputs=st.lists(st.tuples(st.just("value"), st.binary(max_size=4)), max_size=3),
    inclusion=st.sampled_from(["variadic", "packed"]),
    timeout=maybe_float,
    devices=st.none() | text,
    memory=maybe_float,
    title=text,
)
def test_job_maker_equals_the_constructor(
    key: Any,
    payload: bytes,
    inputs: list[Any],
    inclusion: str,
    timeout: float | None,
    devices: str | None,
    memory: float | None,
    title: str,
) -> None:
    made = new_job(key, payload, inputs, inclusion, timeout, devices, memory, title)
    built = Job(key, payload, inputs, inclusion, timeout, None, devices, memory, title)
    assert slots_of(made) == slots_of(built)  # the pool's token, size, cancelling unset in both
    assert made == built


@settings(max_examples=200, deadline=None)
@given(
    key=st.tuples(text, text, st.integers(0, 9)),
    value=st.none() | st.binary(max_size=8) | st.binary(max_size=8).map(bytearray),
    duration=st.floats(0, 1e4),
    output=text,
    pid=st.integers(0, 1 << 22),
)
def test_ok_outcome_equals_the_constructor(
    key: Any, value: bytes | None, duration: float, output: str, pid: int
) -> None:
    made = ok_outcome(key, value, duration, output, pid)
    built = Outcome(key, True, value, duration=duration, output=output, pid=pid)
    assert slots_of(made) == slots_of(built)
    assert made == built
