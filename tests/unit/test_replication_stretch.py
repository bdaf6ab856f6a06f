"""``ReplicationLog.tasks_changed`` takes a dispatch block's or a success table's moves as one
entry, the ids a list (``OwnerBooks``), applied with set and dict calls over the list; its log
must be, after every batch and every flush, the one ``changed`` made of the same moves one by one
(``each_move``): the same dirty and held tasks (held in the same order, from the same time), the
same runs waiting, the same kinds told, the same batches sent."""

from __future__ import annotations

import random
from typing import Any

import pytest

from handoffd.replication import log as rlog


def _state(log: rlog.ReplicationLog) -> Any:
    runs = {
        run_id: (list(p.changes.items()), p.run_dirty, p.seq) for run_id, p in log._runs.items()
    }
    return runs, list(log._dirty), list(log._holding), log.due(), log.pending()


def _one_by_one(
    log: rlog.ReplicationLog, changes: list[tuple[str, Any, bool]], now: float
) -> list[bool]:
    kinds: list[bool] = []
    for run_id, task_id, held in rlog.each_move(changes):
        if log.changed(run_id, task_id, now if held else None) and held not in kinds:
            kinds.append(held)
    return kinds


def _batch(rng: random.Random, runs: list[str], tasks: list[str]) -> list[tuple[str, Any, bool]]:
    """Blocks and single moves as the scheduler tells them, with repeats, tasks moving twice in
    a batch, a block next to single moves of its run and kind, and a run the log does not track."""
    changes: list[tuple[str, Any, bool]] = []
    for _ in range(rng.randrange(0, 6)):
        run_id, held = rng.choice(runs), rng.random() < 0.5
        ids = rng.sample(tasks, rng.randrange(1, min(8, len(tasks))))
        if rng.random() < 0.2:
            ids.append(rng.choice(ids))
        if rng.random() < 0.6:
            changes.append((run_id, ids, held))
        else:
            changes += [(run_id, task_id, held) for task_id in ids]
        if rng.random() < 0.2:
            changes.append(changes[rng.randrange(len(changes))])
    return changes


@pytest.mark.parametrize("seed", range(60))
def test_a_batch_of_blocks_leaves_the_log_one_by_one_leaves(seed: int) -> None:
    rng = random.Random(seed)
    hold = rng.choice((0.0, 0.01, rlog.HOLD))
    logs = [rlog.ReplicationLog("owner", 1, hold=hold) for _ in range(2)]
    runs = ["r0", "r1", "gone"]
    tasks = [f"t{i}" for i in range(rng.randrange(3, 30))]
    now = 100.0
    for log in logs:
        for run_id in runs[:2]:
            log.track(run_id, ["owner", "s"], now, accept=False)
    stretched, single = logs
    for _ in range(rng.randrange(10, 60)):
        changes = _batch(rng, runs, tasks)
        assert stretched.tasks_changed(changes, now) == _one_by_one(single, changes, now)
        assert _state(stretched) == _state(single)
        action = rng.random()
        if action < 0.4:
            limit = rng.choice((None, 1, 3, 1024))
            at = rng.choice((None, now, now + hold / 2, now + 2 * hold))
            assert stretched.flush(limit, at) == single.flush(limit, at)
            assert _state(stretched) == _state(single)
        elif action < 0.45:
            run_id = rng.choice(runs[:2])
            for log in logs:
                log.changed(run_id, None)
        now += rng.choice((0.0, 0.001, 0.004, 0.02, 0.06))
    assert stretched.flush() == single.flush()
    assert _state(stretched) == _state(single)


def test_a_task_held_again_after_it_went_keeps_its_new_time() -> None:
    """Held, then done and sent, then held again (a retry): it waits from its second move."""
    log = rlog.ReplicationLog("owner", 1, hold=0.05)
    log.track("r", ["owner", "s"], 0.0, accept=False)
    log.tasks_changed([("r", ["a", "b"], True)], 1.0)
    log.tasks_changed([("r", ["a"], False)], 1.01)
    assert [ins.task_ids for ins in log.flush(None, 1.02)] == [("a",)]
    log.tasks_changed([("r", ["a", "c"], True)], 1.03)
    held = [(task_id, since) for task_id, since in log._runs["r"].changes.items() if since]
    assert held == [("b", 1.0), ("a", 1.03), ("c", 1.03)]
    assert [ins.task_ids for ins in log.flush(None, 1.06)] == [("b",)]
    assert [ins.task_ids for ins in log.flush(None, 1.08)] == [("a", "c")]
