"""A DONE run's outcome (daemon/results.outcome_values): the values it can carry, the rest
listed as pending; once it is full, the rest are listed without being looked up (a 200,000-task
run's outcome looked up every result in one loop callback at the run's end)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from handoffd.daemon import results


class Scheduler:
    def __init__(self, n: int) -> None:
        self.ids = [f"t{i}" for i in range(n)]
        self.looked_up: list[str] = []

    def run_state(self, run_id: str) -> Any:
        return SimpleNamespace(options=SimpleNamespace(outputs=tuple(self.ids)), tasks={})

    def result_location(self, run_id: str, task_id: str) -> tuple[bytes, tuple[str, ...]]:
        self.looked_up.append(task_id)
        return task_id.encode(), ()


def outcome(sched: Scheduler, max_bytes: int) -> tuple[list[str], list[bytes], list[str]]:
    return results.outcome_values(sched, "me", lambda r, t: None, "r1", max_bytes)  # type: ignore[arg-type]


def test_a_full_outcome_lists_the_rest_without_looking_them_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(results, "OUTCOME_MAX_VALUES", 3)
    sched = Scheduler(10)
    ids, values, pending = outcome(sched, 1 << 20)
    assert ids == ["t0", "t1", "t2"] and values == [b"t0", b"t1", b"t2"]
    assert pending == [f"t{i}" for i in range(3, 10)]
    assert sched.looked_up == ["t0", "t1", "t2"]


def test_an_outcome_whose_byte_budget_is_spent_lists_the_rest_without_looking_them_up() -> None:
    sched = Scheduler(10)
    ids, values, pending = outcome(sched, 4)  # two values of 2 bytes
    assert ids == ["t0", "t1"] and pending == [f"t{i}" for i in range(2, 10)]
    assert sched.looked_up == ["t0", "t1"]


class Unnamed(Scheduler):
    """A run without ``outputs``: every regular task is wanted (``tasks`` holds only those;
    ``inline`` the inline functions, never in an outcome)."""

    def __init__(self, n: int, inline: bool) -> None:
        super().__init__(n)
        self.inline = {"f": SimpleNamespace(inline=True)} if inline else {}

    def run_state(self, run_id: str) -> Any:
        regular = SimpleNamespace(spec=SimpleNamespace(inline=False))
        tasks = {t: regular for t in self.ids}
        return SimpleNamespace(
            options=SimpleNamespace(outputs=None), tasks=tasks, inline=self.inline
        )


@pytest.mark.parametrize("inline", [False, True])
def test_without_outputs_every_regular_task_is_wanted(
    monkeypatch: pytest.MonkeyPatch, inline: bool
) -> None:
    monkeypatch.setattr(results, "OUTCOME_MAX_VALUES", 3)
    ids, _, pending = outcome(Unnamed(8, inline), 1 << 20)
    assert ids == ["t0", "t1", "t2"] and pending == [f"t{i}" for i in range(3, 8)]
