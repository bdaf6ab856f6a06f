"""The simulator's ``Calendar`` pops its events in the order a heap of the same ``(at, seq, ...)``
tuples would (issue 20: the calendar replaced that heap; every seeded run depends on the order),
including events pushed into the bucket being popped and pushed after a peek."""

from __future__ import annotations

import heapq
import random
from typing import Any

from handoffd.membership.sim import _NEVER, Calendar


def test_the_calendar_pops_in_heap_order() -> None:
    for seed in range(20):
        rng = random.Random(seed)
        calendar = Calendar(0.001)
        heap: list[tuple[float, int, int, Any]] = []
        now, seq, popped = 0.0, 0, 0
        for _ in range(3000):
            action = rng.random()
            if action < 0.55 or not heap:
                # messages a fraction of a bucket ahead, ticks further, some at the same instant
                ahead = rng.choice((0.0, rng.uniform(0, 0.0012), rng.uniform(0, 0.2)))
                seq += 1
                entry = (now + ahead, seq, 0, None)
                calendar.push(entry)
                heapq.heappush(heap, entry)
            elif action < 0.6:
                calendar.first()  # a peek alone (the run loop's "is the next one past until?")
            else:
                want = heapq.heappop(heap)
                assert calendar.first() == want[0]
                assert calendar.pop() == want
                now = want[0]
                popped += 1
        while heap:
            want = heapq.heappop(heap)
            assert calendar.first() == want[0]
            assert calendar.pop() == want
        assert calendar.first() == _NEVER
        assert popped > 500


def test_a_push_before_the_bucket_being_popped_comes_first() -> None:
    """The run loop peeks past ``until`` (the bucket then becomes current), then a node is
    injected at ``until``: its events are earlier than the current bucket's and must go first."""
    calendar = Calendar(0.001)
    calendar.push((0.0105, 1, 0, "late"))
    assert calendar.first() == 0.0105
    calendar.push((0.0021, 2, 0, "early"))
    calendar.push((0.0105, 3, 0, "tie"))
    assert [calendar.pop()[3] for _ in range(3)] == ["early", "late", "tie"]
