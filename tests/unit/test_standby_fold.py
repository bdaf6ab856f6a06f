"""A standby folds its oldest kept log batches into ``deltas`` only while that frees memory
(``Replica.keep``, ``FOLD_GROWTH``): a log of one delta a task (W1's) is folded about once, where
each batch past the limit was folded before and all of it dropped at the run's release; a log that
keeps replacing its tasks' deltas keeps the base bound. Exactness across any folding is
``test_standby_packed``'s."""

from __future__ import annotations

from typing import Any

import pytest
from test_standby_packed import OWNER, _packed, _snapshot, _stores

from handoffd.protocol import codec, columns
from handoffd.protocol import messages as m
from handoffd.replication import standby as sb
from handoffd.replication.standby import StandbyStore

BASE = 4_000  # (FOLD_BYTES in these tests; FOLD_SNAPSHOTS 0)


def _batch(seq: int, ids: list[str]) -> list[Any]:
    """Batch ``seq``: each of ``ids`` DONE with a small value, as an owner sends it."""
    values = [f"v{seq}:{task}".encode() for task in ids]
    deltas = tuple(
        m.TaskDelta(task, "DONE", 0, "b", len(v), ("tcp://b:2",), 0, 0, 0, i, ())
        for i, (task, v) in enumerate(zip(ids, values, strict=True))
    )
    sizes, frames = columns.join_frames(values)
    msg = m.ReplicateLog("r", 2, seq, ("b",), deltas, "RUNNING", False, None, sizes)
    return codec.Codec().encode(msg, sender="owner", term=2, frames=frames)


@pytest.fixture
def folds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rows of each batch folded on the way (``Replica.keep``'s calls of ``fold``)."""
    monkeypatch.setattr(sb, "FOLD_BYTES", BASE)
    monkeypatch.setattr(sb, "FOLD_SNAPSHOTS", 0)
    seen: list[int] = []
    fold = sb.fold

    def counted(deltas: Any, values: Any, batches: Any) -> int:
        rows = fold(deltas, values, batches)
        seen.append(rows)
        return rows

    monkeypatch.setattr(sb, "fold", counted)
    return seen


def _standby() -> StandbyStore:
    return _stores(_snapshot(4))[1]


def test_a_log_of_one_delta_a_task_is_folded_about_once(folds: list[int]) -> None:
    store = _standby()
    batches = 120
    for seq in range(1, batches + 1):  # 10 new tasks a batch: ~8 times the base in all
        _packed(store, _batch(seq, [f"n{seq}_{i}" for i in range(10)]))
    replica = store.replicas["r"]
    kept = replica.kept_bytes
    assert kept > 4 * BASE  # (the log outgrew the base bound)
    # each fold found only new tasks: the limit doubled at each, so a few folds, not one a
    # batch past the base (what was folded before: ~100 of the 120)
    assert 1 <= len(folds) <= sb.FOLD_GROWTH
    assert replica.fold_shift == len(folds)
    assert kept <= BASE << replica.fold_shift
    # what a takeover reads: every batch, folded or kept
    deltas, values = replica.settled()
    assert len(deltas) == 10 * batches
    assert values["n7_3"] == b"v7:n7_3"


def test_a_log_that_replaces_its_tasks_keeps_the_base_bound(folds: list[int]) -> None:
    store = _standby()
    ids = [f"t{i}" for i in range(10)]
    biggest = 0
    for seq in range(1, 121):  # the same 10 tasks again and again
        wire = _batch(seq, ids)
        biggest = max(biggest, sum(map(len, wire[1:])) + len(wire[0]))
        _packed(store, wire)
        replica = store.replicas["r"]
        assert replica.fold_shift <= 1  # (the first fold finds its tasks new: ``deltas`` empty)
        assert replica.kept_bytes <= (BASE << replica.fold_shift) + biggest
        if seq > 30:
            assert replica.kept_bytes <= BASE + biggest
    assert len(folds) > 60  # every batch past the base folded: it frees a row a task
    assert store.replicas["r"].fold_shift == 0
    deltas, values = store.replicas["r"].settled()
    assert sorted(deltas) == ids and values["t3"] == b"v120:t3"


def test_replacing_rows_bring_the_bound_back_down(folds: list[int]) -> None:
    store = _standby()
    for seq in range(1, 61):  # new tasks: the limit grows
        _packed(store, _batch(seq, [f"n{seq}_{i}" for i in range(10)]))
    replica = store.replicas["r"]
    grown = replica.fold_shift
    assert grown >= 2
    ids = [f"n{i}_{j}" for i in range(1, 6) for j in range(10)][:10]
    for seq in range(61, 400):  # then only tasks folded already: each fold frees, halves
        _packed(store, _batch(seq, ids))
    assert replica.fold_shift == 0
    assert replica.kept_bytes <= 2 * BASE
    assert replica.settled()[1]["n1_3"] == b"v399:n1_3"


def test_an_ack_for_every_batch_whatever_is_folded(folds: list[int]) -> None:
    """The answers are the batches' own: folding or not never shows in an ack."""
    store = _standby()
    for seq in range(1, 80):
        decoded = codec.Codec(packed={m.ReplicateLog: "tasks"}).decode(
            _batch(seq, [f"n{seq}_{i}" for i in range(10)])
        )
        assert decoded is not None
        ack = store.on_log(decoded.msg, OWNER, decoded.frames, "owner", joined=True)
        assert ack == sb.StandbyAck("r", OWNER, 2, seq, False)
