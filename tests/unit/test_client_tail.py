"""The client's side of a run's end: an outcome's values kept as they came and loaded in one pass
when asked in that order (``Run._take``/``_collect``), read by id otherwise."""

from __future__ import annotations

import pickle
import random
from typing import Any

from handoffd.client_run import Run
from handoffd.protocol import messages as m


def outcome(ids: list[str], released: bool = True) -> m.RunOutcome:
    return m.RunOutcome(
        1, "run", "DONE", {"DONE": len(ids)}, {}, "n0", 1, (), None, tuple(ids), (), released
    )


class _Fetching(Run):
    """A Run whose values not carried by an outcome come from here (``_fetch``), counted."""

    def __init__(self, ids: list[str], far: dict[str, Any]) -> None:
        super().__init__(None, "run", "n0", ids, None)  # type: ignore[arg-type]
        self.far = far
        self.fetched: list[str] = []

    def _fetch(self, ids: list[str]) -> dict[str, Any]:
        self.fetched += ids
        return {i: self.far[i] for i in ids}


def test_values_asked_in_the_order_carried_are_loaded_as_by_id() -> None:
    """Each read loads new objects (a mutable result is never shared between reads), the same
    values as the read by id gives, for the outcome's order and any other."""
    rng = random.Random(13)
    for _ in range(30):
        n = rng.randint(1, 40)
        ids = [f"f{i}" for i in range(n)]
        vals: list[Any] = [rng.choice((i, [i], {"k": i}, None, str(i))) for i in range(n)]
        run = _Fetching(ids, {})
        run._take(outcome(ids), [pickle.dumps(v, protocol=5) for v in vals])
        first = run._collect(ids)
        assert list(first) == ids and list(first.values()) == vals
        again = run._collect(ids)
        assert again == first
        pairs = zip(again.values(), first.values(), strict=True)
        assert all(a is not b for a, b in pairs if type(a) is list)
        shuffled = ids[:]
        rng.shuffle(shuffled)
        some = shuffled[: rng.randint(1, n)]
        assert run._collect(some) == {i: vals[ids.index(i)] for i in some}
        assert list(run._collect(some)) == some
        assert run._collect(ids) == first and run.fetched == []
        assert set(run._values) == set(ids)


def test_a_second_outcome_adds_to_the_first_and_the_rest_is_fetched() -> None:
    run = _Fetching(["a", "b", "c", "d"], {"d": "far"})
    run._take(outcome(["a", "b"], released=False), [pickle.dumps(1), pickle.dumps(2)])
    run._take(outcome(["b", "c"], released=False), [pickle.dumps(20), pickle.dumps(3)])
    assert run._values == {"a": pickle.dumps(1), "b": pickle.dumps(20), "c": pickle.dumps(3)}
    assert run._collect(["a", "b", "c", "d"]) == {"a": 1, "b": 20, "c": 3, "d": "far"}
    assert run.fetched == ["d"]


def test_an_outcome_with_fewer_values_than_ids_is_read_by_id() -> None:
    """(The old pairing: values up to the shorter of the two.)"""
    run = _Fetching(["a", "b"], {"b": 2})
    run._take(outcome(["a", "b"]), [pickle.dumps(1)])
    assert run._carried is None
    assert run._collect(["a", "b"]) == {"a": 1, "b": 2} and run.fetched == ["b"]
