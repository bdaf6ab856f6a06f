"""``WindowFill.count`` and ``follow`` (the window fill's walk as blocks, ``FillPasses._walk``):
``follow`` is ``pick`` of the same need, pin and policy task after task while each goes to the
node the last pick chose, stopping before the first that would not; ``count`` is how many such
picks of the last pick's seconds there would be, and changes nothing. Both backends, each
against its own ``pick``s (``test_core_sched`` holds the two backends' ``pick`` to each other)."""

from __future__ import annotations

import random

from core_strategies import size
from hypothesis import given, settings
from hypothesis import strategies as st
from test_core_sched import window_passes

from handoffd._core import sched as compiled
from handoffd._core import sched_py as twin

SECONDS = [-1.0, 0.0, 0.0001, 0.001, 0.003, 1.0]


@settings(max_examples=150, deadline=None)
@given(case=window_passes(), seed=st.integers(0, 2**32 - 1))
def test_follow_is_picks_while_they_go_to_one_node(case, seed):
    capacities, loads, window, low_water, budgets, picks = case
    # The limits and seconds from one drawn seed (printed with a failing case), not a draw each.
    rng = random.Random(seed)
    for core in (compiled, twin):
        blocks = core.window_fill(capacities, loads, window, low_water, budgets)
        picked = core.window_fill(capacities, loads, window, low_water, budgets)
        for need, pin, policy, seconds in picks:
            chosen = blocks.pick(need, pin, policy, seconds)
            assert chosen == picked.pick(need, pin, policy, seconds)
            limit = size(rng, 0, 40)
            more = blocks.count(limit)
            assert 0 <= more <= limit and (chosen >= 0 or more == 0)
            if rng.random() < 0.5:  # the last pick's seconds: as many as ``count`` said
                secs, n = [seconds] * limit, limit
                took = blocks.follow(n, None)
                assert took == more
            else:
                secs = [rng.choice(SECONDS) for _ in range(size(rng, 0, 40))]
                n = len(secs)
                took = blocks.follow(n, secs)
            # the reference: one pick a task while they go to ``chosen``; the first that does
            # not is picked on both (``follow`` left it)
            one_by_one = 0
            if chosen >= 0:
                for s in secs[:n]:
                    got = picked.pick(need, pin, policy, s)
                    if got != chosen:
                        assert blocks.pick(need, pin, policy, s) == got
                        break
                    one_by_one += 1
            assert took == one_by_one
            assert blocks.left == picked.left
        probe = {"cpu": 0.25}
        for _ in range(8):
            assert blocks.pick(probe, -1, "binpack", 0.0001) == picked.pick(
                probe, -1, "binpack", 0.0001
            )


def test_count_and_follow_without_a_pick_take_nothing():
    for core in (compiled, twin):
        fill = core.window_fill([{"cpu": 1.0}], [{}], 4)
        assert fill.count(10) == 0 and fill.follow(3, None) == 0
        assert fill.pick({"cpu": 2.0}, -1, "binpack") == -1  # beyond its capacity: none
        assert fill.count(10) == 0 and fill.follow(3, None) == 0
        assert fill.left == 1


def test_count_stops_where_the_window_closes():
    for core in (compiled, twin):
        # one 1-cpu node, a window of 4: four 1-cpu tasks, the first picked, three more
        fill = core.window_fill([{"cpu": 1.0}], [{}], 4)
        assert fill.pick({"cpu": 1.0}, -1, "binpack") == 0
        assert fill.count(100) == 3 and fill.count(2) == 2
        assert fill.follow(5, None) == 3 and fill.left == 0
        # two nodes under spread: the picks alternate, so a block is one task
        fill = core.window_fill([{"cpu": 1.0}, {"cpu": 1.0}], [{}, {}], 4)
        assert fill.pick({"cpu": 1.0}, -1, "spread") == 0
        assert fill.count(100) == 0
        # a budget: 1 ms of 0.4 ms tasks on one node takes 3 (the third spends it below 0)
        fill = core.window_fill([{"cpu": 1.0}], [{}], 64, None, [0.001])
        assert fill.pick({"cpu": 1.0}, -1, "binpack", 0.0004) == 0
        assert fill.count(100) == 2
        assert fill.follow(3, [0.0004, 0.0001, 0.0001]) == 3  # (0.4 + 0.4 + 0.1 + 0.1 ms)
