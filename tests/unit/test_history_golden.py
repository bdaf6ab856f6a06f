"""What the task-history queries print, pinned on a seeded run (issue 13, helper w1).

``tests/unit/golden/task_history.json`` holds the answers of this build (137ef86: a list of
``(time, old, new, cause)`` tuples per task) for the seeded runs below: each task's transitions
(``RunState.snapshot``), the frozen history of the whole run (``owned.history_of``: ``handoffctl
tasks``, the dashboard) with and without ``since`` and ``brief``, the JSON document of
``handoffctl tasks --json`` and an illegal move's message. Both builds must print exactly that,
whatever keeps the transitions (a columnar log per run was tried: it must print the same).
Regenerate (only on purpose)::

    .venv/bin/python tests/unit/test_history_golden.py --regen
"""

from __future__ import annotations

import importlib
import json
import random
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from handoffd.scheduler import history
from handoffd.scheduler.owned import history_of
from handoffd.spec import RunOptions, TaskSpec

GOLDEN = Path(__file__).with_name("golden") / "task_history.json"
SEEDS = (1, 2, 3, 4, 5, 6)


def _pure_run() -> ModuleType:
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from test_scheduler_builds import pure_run
    finally:
        sys.path.pop(0)
    return pure_run


def _specs(rng: random.Random) -> list[TaskSpec]:
    specs: list[TaskSpec] = []
    for i in range(12):
        deps = tuple(sorted({f"t{j}" for j in rng.sample(range(i), min(i, rng.randint(0, 2)))}))
        specs.append(TaskSpec(f"t{i}", deps, {"cpu": 1.0}, b"p"))
    return specs


def drive(module: ModuleType, seed: int) -> tuple[Any, float]:
    """A seeded run driven through dispatches, starts, errors, retries, node losses, lost
    results (lineage recompute) and, for every third seed, a cancel; the run and its clock."""
    rng = random.Random(seed)
    outputs = None if seed % 2 else ("t11",)
    run = module.RunState("r", _specs(rng), RunOptions(max_retries=2, outputs=outputs))
    run.wall_offset = 1000.0
    now = 0.0
    run.start(now)
    nodes = ("n1", "n2", "n3")
    for _ in range(160):
        now += rng.choice((0.25, 0.5, 1.0))
        rec = rng.choice(run.ordered)
        roll = rng.random()
        if run.state != "RUNNING":
            break
        if rec.state == "READY":
            run.assign(rec, rng.choice(nodes), now)
        elif rec.state == "ASSIGNED" and roll < 0.4:
            run.move(rec, "RUNNING", now, f"started on {rec.node}")
        elif rec.state in ("ASSIGNED", "RUNNING"):
            if roll < 0.6:
                run.succeeded(rec, rec.node, 7, b"v" if roll < 0.3 else None, now)
            elif roll < 0.75:
                rec.failures += 1
                run.make_ready(rec, now, f"error on {rec.node}: retry {rec.failures}", True)
            elif roll < 0.85:
                run.node_lost(rec.node, now)
            else:
                run.make_ready(rec, now, "refused: retry", True)
        elif rec.state == "DONE" and roll < 0.08 and not rec.value:
            run.node_lost(rng.choice(nodes), now)
    if seed % 3 == 0 and run.state == "RUNNING":
        run.end("CANCELLED", None, now + 1.0, active=None)
    return run, now


def scenario(module: ModuleType, seed: int) -> dict[str, Any]:
    """What the history queries answer about ``drive``'s run."""
    run, now = drive(module, seed)
    snap = run.snapshot()
    out: dict[str, Any] = {
        "transitions": {tid: t["history"] for tid, t in snap["tasks"].items()},
        "frozen": [list(map(_plain, t)) for t in history_of(run).tasks],
        "since": [t[0] for t in history_of(run, since=1000.0 + now / 2).tasks],
        "brief": [list(map(_plain, t)) for t in history_of(run, brief=True).tasks],
        "summary": [history.summary(t) for t in history_of(run).tasks],
    }
    done = next((r for r in run.ordered if r.state == "DONE"), None)
    if done is not None:
        with pytest.raises(module.InvalidTransition) as err:
            run.move(done, "RUNNING", now, "illegal")
        out["illegal"] = str(err.value)
    return json.loads(json.dumps(out))


def _plain(x: Any) -> Any:
    return [_plain(y) for y in x] if isinstance(x, (tuple, list)) else x


@pytest.mark.parametrize("build", ["compiled", "pure"])
@pytest.mark.parametrize("seed", SEEDS)
def test_history_queries_print_what_they_printed(build: str, seed: int) -> None:
    module = (
        importlib.import_module("handoffd.scheduler.run") if build == "compiled" else _pure_run()
    )
    golden = json.loads(GOLDEN.read_text())[str(seed)]
    assert scenario(module, seed) == golden


if __name__ == "__main__" and sys.argv[1:] == ["--regen"]:
    run_module = importlib.import_module("handoffd.scheduler.run")
    GOLDEN.write_text(json.dumps({str(s): scenario(run_module, s) for s in SEEDS}, indent=1) + "\n")
    print("wrote", GOLDEN)
