"""A thread that frees a big structure lets the event loop have the GIL between pieces (issue 19
item 7): the last reference to a big dict or tuple frees all its items in one C call that never
lets the GIL go, and a takeover's rebuild dropping its replica's plain data that way kept the
loop waiting 130-290 ms for 200,000 tasks. Checked without clocks: each item freed is traced
back to the call that freed it, and no call may free more than ``FREE_PIECE`` of them."""

from __future__ import annotations

import random
import sys
from typing import Any

import pytest

from handoffd.daemon import replication_rebuild
from handoffd.protocol import snapshot
from handoffd.protocol.snapshot import decode_run, encode_run, free_in_pieces
from handoffd.replication.standby import Replica
from handoffd.scheduler.run import RunState
from handoffd.spec import RunOptions, TaskSpec

# Per item freed: (the freeing frame's function, which ``items`` list and its length then).
_FREED: list[tuple[str, int, int]] = []


class _Marked(list):  # type: ignore[type-arg]
    """A history row that notes who freed it (a list subclass: the rebuild reads it by index)."""

    def __del__(self) -> None:
        frame = sys._getframe(1)
        items = frame.f_locals.get("items")
        listed = isinstance(items, list)
        _FREED.append((frame.f_code.co_name, id(items), len(items) if listed else -1))


def _pieces() -> dict[tuple[int, int], int]:
    """How many marked items each freeing call freed, by its list and the length it left."""
    sizes: dict[tuple[int, int], int] = {}
    for name, which, left in _FREED:
        assert name == "free_in_pieces", f"an item was freed in {name}, not in pieces"
        sizes[which, left] = sizes.get((which, left), 0) + 1
    return sizes


@pytest.mark.parametrize("seed", range(8))
def test_free_in_pieces_frees_at_most_a_piece_per_call(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    piece = rng.randint(1, 7)
    monkeypatch.setattr(snapshot, "FREE_PIECE", piece)
    lists = [[_Marked([i]) for i in range(rng.randint(0, 40))] for _ in range(rng.randint(1, 4))]
    total = sum(map(len, lists))
    _FREED.clear()
    free_in_pieces(lists)
    assert lists == []
    assert len(_FREED) == total
    assert all(count <= piece for count in _pieces().values())


def _replica(n: int) -> Replica:
    specs = [TaskSpec(f"t{i}", (f"t{i - 1}",) if i else (), {"cpu": 1.0}, b"x") for i in range(n)]
    run = RunState("r", specs, RunOptions())
    return Replica("r", 1, 0, "n0", "127.0.0.1:1", ("n1",), encode_run(run, chunked=True))


@pytest.mark.parametrize("seed", range(5))
def test_rebuild_frees_the_replicas_data_in_pieces(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every task's plain data (here: its history rows, marked) is freed by ``free_in_pieces``,
    at most a piece per call, and the run built is the one built from the data as decoded."""
    rng = random.Random(seed)
    n = rng.randint(20, 120)
    piece = rng.randint(1, 9)
    monkeypatch.setattr(snapshot, "FREE_PIECE", piece)
    replica = _replica(n)
    decoded = replica.run_data

    def marked() -> dict[str, Any]:
        data = decoded()
        for t in data["tasks"].values():
            t["history"] = [_Marked([1.0, "PENDING", "", 0])]
        return data

    monkeypatch.setattr(replica, "run_data", marked)
    _FREED.clear()
    run = replication_rebuild._rebuilt(replica, None)
    assert len(_FREED) == n
    assert all(count <= piece for count in _pieces().values())
    assert [r.history for r in run.ordered] == [[(1.0, "PENDING", "", 0)]] * n
    expected = RunState.from_snapshot(decode_run(replica.snapshot))
    assert [(r.id, r.state, r.order) for r in run.ordered] == [
        (r.id, r.state, r.order) for r in expected.ordered
    ]


def test_decode_run_hands_its_rows_to_free_in_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """The unpacked rows and their structs (specs and tasks: four lists of n) are freed in pieces
    once the plain data is made, not with their tuples when ``decode_run`` returns."""
    handed: list[list[int]] = []
    real = snapshot.free_in_pieces

    def spy(lists: list[list[Any]]) -> None:
        handed.append([len(items) for items in lists])
        real(lists)

    monkeypatch.setattr(snapshot, "free_in_pieces", spy)
    n = 37
    data = decode_run(_replica(n).snapshot)
    assert len(data["tasks"]) == n and len(data["specs"]) == n
    assert handed == [[n, n, n, n]]
