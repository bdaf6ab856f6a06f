"""The lost messages' watch kept one entry a dispatch (``LostMessages.went_out_all``: run, task
ids, when; a task's return writes nothing), checked against the per-task form it replaced, kept
here as the reference ((run, task) -> since, popped on a return): both builds, random blocks
dispatched, tasks sent alone, re-sent, started, returned however they ended, runs dropped and
owned again, the watch read now and then (entries pile up between reads)."""

from __future__ import annotations

import importlib
import random
from types import SimpleNamespace
from typing import Any

import pytest
from test_history_golden import _pure_run
from test_scheduler_builds import pure_build

from handoffd.spec import RunOptions, TaskSpec

_BUILDS = ("compiled", "pure")
_LOST = {"compiled": importlib.import_module("handoffd.scheduler.lost"), "pure": pure_build("lost")}


def _run_module(build: str) -> Any:
    return importlib.import_module("handoffd.scheduler.run") if build == "compiled" else _pure_run()


# -- the watch's per-task form until this one: (run, task) -> since, popped on a return -----------


def _watch(build: str, runs: dict[str, Any]) -> Any:
    lost = _LOST[build]
    out = SimpleNamespace(direct=[], cancels={})
    return lost.LostMessages(
        SimpleNamespace(unacked={}), out, run_of=runs.get, count_loss=None, adopt=None
    )


@pytest.mark.parametrize("build", _BUILDS)
@pytest.mark.parametrize("seed", range(40))
def test_the_watch_by_dispatch_tracks_what_the_per_task_keys_tracked(build: str, seed: int) -> None:
    rng = random.Random(seed)
    module = _run_module(build)
    made = {}
    for run_id in ("r", "s", "u"[: rng.randint(0, 1)]):
        if run_id:
            specs = [TaskSpec(f"t{i}", (), {"cpu": 1.0}, b"p") for i in range(rng.randint(1, 14))]
            made[run_id] = module.RunState(run_id, specs, RunOptions())
    runs = dict(made)
    watch = _watch(build, runs)
    reference: dict[tuple[str, str], float] = {}
    now = 0.0
    for _ in range(rng.randint(20, 120)):
        now += rng.choice((0.0, 0.5, 1.0))
        run_id = rng.choice(list(made))
        run = made[run_id]
        recs = list(run.tasks.values())
        idle = [r for r in recs if r.state not in ("ASSIGNED", "RUNNING")]
        out = [r for r in recs if r.state in ("ASSIGNED", "RUNNING")]
        roll = rng.random()
        if run_id not in runs:  # dropped earlier: owned again, nothing of it out
            if roll < 0.3:
                for rec in out:
                    rec.state = "READY"
                runs[run_id] = run
            continue
        if roll < 0.35 and idle:  # a block dispatched (a re-sent task among them, maybe)
            block = rng.sample(idle, rng.randint(1, len(idle)))
            for rec in block:
                rec.state = "ASSIGNED"
                rec.attempt += 1
                reference[(run_id, rec.id)] = now
            watch.went_out_all(run_id, tuple([rec.id for rec in block]), now)
        elif roll < 0.45 and idle:  # a task sent alone (a takeover, the one-by-one path)
            rec = rng.choice(idle)
            rec.state = rng.choice(("ASSIGNED", "RUNNING"))
            reference[(run_id, rec.id)] = now
            watch.went_out(run_id, rec.id, now)
        elif roll < 0.8 and out:  # some come back, however they ended
            for rec in rng.sample(out, rng.randint(1, len(out))):
                rec.state = rng.choice(("DONE", "READY", "FAILED", "CANCELLED", "PENDING"))
                reference.pop((run_id, rec.id), None)
        elif roll < 0.85 and out:
            rng.choice(out).state = "RUNNING"  # started: still out, nothing told
        elif roll < 0.9:  # the run is not ours any more
            del runs[run_id]
            watch.drop_run(run_id, run.tasks)
            reference = {k: v for k, v in reference.items() if k[0] != run_id}
        if rng.random() < 0.4:  # (read now and then: entries pile up between reads)
            assert list(watch.out_since().items()) == list(reference.items())
            for r in made:
                assert watch.out_of(r) == [t for q, t in reference if q == r]
            watch.validate(set(reference))
    assert list(watch.out_since().items()) == list(reference.items())
    assert len(watch._sent) <= len(reference)  # a read leaves only what is out
