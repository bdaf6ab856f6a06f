"""The chain size the executor's ``_ended`` keeps per outcome (``_half_chain``, computed in line
with comparisons) is always ``_chain_target() // 2`` of the mean duration it keeps, for
durations that clamp it at either end and between."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from test_executor_state import RUN, dispatch, item, make

from handoffd.daemon.executor_events import TaskEnded
from handoffd.worker.pool import Outcome

durations = st.floats(0, 2.0) | st.floats(0, 1e-5) | st.floats(1e-4, 5e-3)


@settings(max_examples=100, deadline=None)
@given(ends=st.lists(st.tuples(durations, st.sampled_from(["", "error", "timeout"])), min_size=1))
def test_half_chain_follows_the_mean_duration(ends: list[tuple[float, str]]) -> None:
    state = make({"cpu": 2.0})
    dispatch(state, [item(f"t{i}") for i in range(len(ends))])
    for i, (duration, kind) in enumerate(ends):
        ok = kind == ""
        outcome = Outcome((RUN, f"t{i}", 1), ok, b"v" if ok else None, kind=kind, duration=duration)
        state.handle(TaskEnded(outcome), 0.0)
        assert state._half_chain == state._chain_target() // 2


near_cap = st.floats(0, 1e-5) | st.floats(1.4e-4, 1.7e-4) | st.floats(1e-4, 2e-4)


@settings(max_examples=60, deadline=None)
@given(
    ends=st.lists(st.tuples(near_cap, st.sampled_from(["", "", "error", "timeout"])), min_size=30)
)
def test_half_chain_at_and_near_the_chain_cap(ends: list[tuple[float, str]]) -> None:
    """Many short attempts bring the mean under the cap's bound (``_ended`` then takes the cap's
    half chain with no division) and around it: the half chain is still the mean's."""
    state = make({"cpu": 2.0})
    dispatch(state, [item(f"t{i}") for i in range(len(ends))])
    for i, (duration, kind) in enumerate(ends):
        ok = kind == ""
        outcome = Outcome((RUN, f"t{i}", 1), ok, b"v" if ok else None, kind=kind, duration=duration)
        state.handle(TaskEnded(outcome), 0.0)
        assert state._half_chain == state._chain_target() // 2
