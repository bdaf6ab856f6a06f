"""A big submission's temporaries are let go of in pieces (issue 19 item 7): the last reference
to a dict or list of 1,000,000 items frees them all in one C call, the GIL held, so the upload
thread's checks (``validation``), graph (``scheduler.graph``), snapshot packing
(``protocol.snapshot.pack_parts``) and decoded head (``daemon.upload_intake``) kept the owner's
loop waiting 100-200 ms at each function's return. ``freeing.free`` empties them ``PIECE`` items
at a time; these tests hold it to that, check that each of those steps hands its big temporaries
to it, and that the results are the same as without it."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from handoffd import freeing, validation
from handoffd.daemon import upload_intake
from handoffd.protocol import snapshot
from handoffd.scheduler import graph as graph_mod
from handoffd.scheduler import plain_graph
from handoffd.scheduler.graph import build_graph
from handoffd.scheduler.run import RunState
from handoffd.spec import RunOptions, TaskSpec


class _Item:
    __slots__ = ("__weakref__",)


def test_free_empties_dicts_and_lists_a_piece_at_a_time() -> None:
    n = 3 * freeing.PIECE + 17
    keys = [_Item() for _ in range(n)]
    values = [[_Item()] for _ in range(n)]
    table = dict(zip(keys, values, strict=True))
    items = [(_Item(),) for _ in range(n)]
    refs = [weakref.ref(k) for k in keys] + [weakref.ref(v[0]) for v in values]
    refs += [weakref.ref(t[0]) for t in items]
    del keys, values
    other = (1, 2)
    dead = 0
    steps: Iterator[None] = freeing.pieces(table, items, other)
    for _ in steps:
        now = sum(r() is None for r in refs)
        assert now - dead <= freeing.PIECE, "more than a piece freed in one step"
        dead = now
    assert table == {} and items == [] and other == (1, 2)
    assert all(r() is None for r in refs)


def test_free_of_small_and_empty_containers() -> None:
    small, empty, lst = {"a": [1]}, {}, [1, 2]
    freeing.free(small, empty, lst, None, "text")
    assert small == {} and empty == {} and lst == []


def test_free_hands_only_big_containers_to_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """A container of at most a piece is emptied at once (a one-task run's four calls made a
    generator each); a bigger one still goes a piece at a time, emptied all the same."""
    handed: list[int] = []
    real = freeing.pieces

    def record(*containers: Any) -> Iterator[None]:
        handed.extend(len(c) for c in containers)
        return real(*containers)

    monkeypatch.setattr(freeing, "pieces", record)
    small, edge = {"a": [1]}, list(range(freeing.PIECE))
    big = dict.fromkeys(range(freeing.PIECE + 1))
    freeing.free(small, edge, None)
    assert handed == [] and small == {} and edge == []
    freeing.free(small, big, [1])
    assert handed == [freeing.PIECE + 1] and big == {}


def _chain(n: int) -> list[TaskSpec]:
    return [TaskSpec(f"t{i}", (f"t{i - 1}",) if i else (), {"cpu": 1.0}, b"x") for i in range(n)]


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the containers each step hands to ``free`` (freed for real)."""
    sizes: list[int] = []

    def record(*containers: Any) -> None:
        sizes.extend(len(c) for c in containers if isinstance(c, (dict, list)))
        freeing.free(*containers)

    for module in (graph_mod, plain_graph, validation, snapshot, upload_intake):
        monkeypatch.setattr(module, "free", record)
    return sizes


def test_the_graph_lets_go_of_its_temporaries_in_pieces(recorded: list[int]) -> None:
    """The general walk (an inline function in the run): topological's lists of users, _rank's
    index and inputs to the ranking, build_graph's own maps; the plain functions' one pass
    (``plain_graph``): its in-degrees and index, the ranking's inputs and answer. Each as big as
    the run, each handed to ``free``."""
    n = 5000
    build_graph([*_chain(n), TaskSpec("i", (), {}, b"x", inline=True)], None)
    assert sum(size >= n for size in recorded) >= 10, recorded
    recorded.clear()
    build_graph(_chain(n), None)
    assert sum(size >= n for size in recorded) >= 6, recorded


def test_the_checks_and_the_snapshot_let_go_of_theirs(recorded: list[int]) -> None:
    n = 5000
    links = {f"t{i}": ((f"t{i - 1}",) if i else (), None, None, False) for i in range(n)}
    validation.topological(links)
    assert sum(size >= n for size in recorded) >= 2, recorded  # (its consumers and indegrees)
    recorded.clear()
    specs = _chain(n)
    run = RunState("r", specs, RunOptions(), graph=build_graph(specs, None))
    recorded.clear()
    snapshot.pack_parts(run)
    assert [size for size in recorded if size >= n] == [n, n], recorded  # spec rows, task rows


def test_the_results_are_the_same_as_freed_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """``free`` empties what the caller hands it: nothing it returns may depend on that."""
    specs = _chain(3000) + [
        TaskSpec("fan", tuple(f"t{i}" for i in range(0, 3000, 7)), {"cpu": 2.0}, b"y", priority=3)
    ]
    freed = build_graph(specs, None)
    run = RunState("r", specs, RunOptions(), graph=freed)
    packed = snapshot.pack_parts(run)
    for module in (graph_mod, plain_graph, validation, snapshot, upload_intake):
        monkeypatch.setattr(module, "free", lambda *containers: None)
    kept = build_graph(specs, None)
    assert {f: getattr(freed, f) for f in kept.__slots__} == {
        f: getattr(kept, f) for f in kept.__slots__
    }
    assert snapshot.pack_parts(RunState("r", specs, RunOptions(), graph=kept)) == packed
