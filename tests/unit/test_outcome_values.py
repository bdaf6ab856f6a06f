"""A DONE run's outcome (daemon/results.outcome_values): the values it can carry, the rest
listed as pending; once it is full, the rest are listed without being looked up (a 200,000-task
run's outcome looked up every result in one loop callback at the run's end)."""

from __future__ import annotations

import random
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


class Held:
    """A run of task records as the scheduler keeps them (state, value, holders), its
    ``result_location`` answered from them as ``OwnedRuns.result_location`` does."""

    def __init__(self, recs: dict[str, Any], outputs: tuple[str, ...] | None) -> None:
        self.recs = recs
        self.outputs = outputs

    def run_state(self, run_id: str) -> Any:
        outputs = SimpleNamespace(outputs=self.outputs)
        return SimpleNamespace(options=outputs, tasks=self.recs, inline={})

    def result_location(self, run_id: str, task_id: str) -> tuple[bytes | None, tuple[str, ...]]:
        rec = self.recs[task_id]
        if rec.state != "DONE":
            return None, ()
        return rec.value, tuple(sorted(rec.locations))


def _random_run(rng: random.Random) -> Held:
    recs = {}
    for i in range(rng.randint(0, 12)):
        state = rng.choice(["DONE"] * 6 + ["RUNNING", "FAILED"])
        value = None if rng.random() < 0.15 else bytes(rng.randint(0, 6))
        recs[f"t{i}"] = SimpleNamespace(
            state=state, value=value, locations=tuple(rng.sample(["me", "b", "c"], 2))
        )
    outputs = None
    if rng.random() < 0.5:
        outputs = tuple(rng.sample([*recs, "unknown"], rng.randint(0, len(recs))))
    return Held(recs, outputs)


@pytest.mark.parametrize("seed", range(200))
def test_an_outcome_taken_at_once_is_the_one_looked_up_task_by_task(
    monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """When the scheduler holds every value and they all fit, the outcome is taken in C-level
    passes (``_all_held``); on random runs, values missing, budgets spent, it is the same as the
    task-by-task loop's."""
    rng = random.Random(seed)
    sched = _random_run(rng)
    max_bytes = rng.choice([0, 1, 5, 12, 30, 1 << 20])
    cap = rng.choice([3, 100])
    monkeypatch.setattr(results, "OUTCOME_MAX_VALUES", cap)
    local = {("r1", t): b"local" for t in sched.recs}

    def outcome_of(held: Held) -> tuple[list[str], list[bytes], list[str]]:
        return results.outcome_values(held, "me", lambda r, t: local.get((r, t)), "r1", max_bytes)  # type: ignore[arg-type]

    fast = outcome_of(sched)
    with monkeypatch.context() as patched:
        patched.setattr(results, "_all_held", lambda *args: None)
        slow = outcome_of(sched)
    assert fast == slow


def test_an_outcome_of_held_values_is_taken_without_a_lookup_a_task() -> None:
    recs = {f"t{i}": SimpleNamespace(state="DONE", value=b"v", locations=()) for i in range(5)}
    sched = Held(recs, None)
    sched.result_location = None  # type: ignore[assignment,method-assign]
    assert outcome(sched, 1 << 20) == (list(recs), [b"v"] * 5, [])  # type: ignore[arg-type]
