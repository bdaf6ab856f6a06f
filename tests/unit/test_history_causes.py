"""The causes a run keeps as a code and its arguments (``history.DISPATCHED_TO``, ``INPUTS_READY``,
``STARTED_ON``: built into text only when read) read as the texts the moves built before.

``test_history_golden.py`` pins what the queries print on seeded runs of ``RunState`` alone;
this drives the whole owner (its ``TaskStarted`` path too) through seeded random runs and checks
every transition's text against the facts it names: the attempt row it opened, the node it started
on, the input that finished.
"""

from __future__ import annotations

import random
from types import ModuleType

import pytest
from pure_build import pure
from scheduler_harness import Cluster, dispatches, spec

import handoffd.scheduler.history as built
from handoffd.scheduler import events as ev


def _pure() -> ModuleType:
    return pure(built, "handoffd_history_pure")


@pytest.mark.parametrize("module", [built, _pure()], ids=["compiled", "pure"])
def test_a_code_reads_as_the_text_the_move_built(module: ModuleType) -> None:
    for node, attempt, task in (("n1", 1, "t0"), ("node-b", 1000003, "x(y)")):
        assert module.cause_text(module.DISPATCHED_TO, node, attempt) == (
            f"dispatched to {node} attempt {attempt}"
        )
        assert module.cause_text(module.INPUTS_READY, task, None) == f"inputs ready ({task} done)"
        assert module.cause_text(module.STARTED_ON, node, None) == f"started on {node}"
        assert module.cause_text("node n1 lost (attempt 2)", None, None) == (
            "node n1 lost (attempt 2)"
        )
    flat = [1.0, "READY", "ASSIGNED", module.DISPATCHED_TO, "n1", 3, 2.0, "A", "B", "x", None, None]
    assert module.transitions(flat) == [
        (1.0, "READY", "ASSIGNED", "dispatched to n1 attempt 3"),
        (2.0, "A", "B", "x"),
    ]
    assert module.transitions(module.flat(module.transitions(flat))) == module.transitions(flat)


@pytest.mark.parametrize("seed", range(8))
def test_every_transition_of_a_random_owner_run_names_what_happened(seed: int) -> None:
    rng = random.Random(seed)
    c = Cluster({"n1": 2, "n2": 2})
    specs = []
    for i in range(14):
        deps = sorted({f"t{j}" for j in rng.sample(range(i), min(i, rng.randint(0, 2)))})
        specs.append(spec(f"t{i}", *deps))
    out = c.accept_all(c.submit("r", specs, max_retries=3))
    run = c.sched.run_state("r")
    assert run is not None
    for _ in range(300):
        more = c.accept_all(out) if dispatches(out) else []
        out = more
        active = [r for r in run.ordered if r.state in ("ASSIGNED", "RUNNING")]
        if not active or run.state != "RUNNING":
            break
        rec = rng.choice(active)
        node, attempt, roll = rec.node, rec.attempt, rng.random()
        if rec.state == "ASSIGNED" and roll < 0.5:
            out += c.feed(c.update(node), ev.TaskStarted("r", rec.id, attempt, node))
        elif roll < 0.85:
            out += c.succeed(node, "r", rec.id, attempt)
        else:
            out += c.error(node, "r", rec.id, attempt)
    answer = c.sched.run_history("r")
    assert answer is not None
    deps = {s.id: set(s.deps) for s in specs}
    seen = {"dispatched": 0, "started": 0, "inputs": 0}
    for task_id, _state, _node, rows, transitions, _deps in answer.tasks:
        tried = {(row[0], row[1]) for row in rows}
        nodes = {row[1] for row in rows}
        snapshot = [tuple(h) for h in run.snapshot()["tasks"][task_id]["history"]]
        assert [t[1:] for t in transitions] == [h[1:] for h in snapshot]
        for _t, old, new, cause in transitions:
            if new == "ASSIGNED":
                seen["dispatched"] += 1
                assert any(cause == f"dispatched to {n} attempt {a}" for a, n in tried), cause
            elif new == "RUNNING":
                seen["started"] += 1
                assert any(cause == f"started on {n}" for n in nodes), cause
            elif old == "PENDING" and new == "READY" and deps[task_id]:
                seen["inputs"] += 1
                assert any(cause == f"inputs ready ({d} done)" for d in deps[task_id]), cause
    assert seen["dispatched"] and seen["started"] and seen["inputs"]
