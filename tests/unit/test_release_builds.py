"""Both builds of a run's release (``scheduler/release.py``, compiled with ``release.pxd``) do the
same: over the same random runs (some nodes lost before the release, so some holders are not
alive; big runs released by slices), a scheduler releasing through the compiled ``Releases`` and
one releasing through the ``.py`` run as plain Python return the same instructions and answer the
same status and history after, slice by slice."""

from __future__ import annotations

import random

import pytest
from scheduler_harness import Cluster, spec
from test_scheduler_builds import pure_build

from handoffd.scheduler import events as ev
from handoffd.scheduler import release as built
from handoffd.scheduler.owned import release_key

pure_release = pure_build("release")


def _cluster(module: object, limit: int, whole: int) -> Cluster:
    c = Cluster({"n1": 2, "n2": 2, "n3": 1})
    s = c.sched
    releases = module.Releases(s._owned, s._view, s._ready, s._out)  # type: ignore[attr-defined]
    releases.limit, releases.whole = limit, whole
    s._releases = releases  # type: ignore[attr-defined]
    return c


def _play(module: object, seed: int) -> list[object]:
    rng = random.Random(seed)
    c = _cluster(module, rng.randint(1, 4), rng.choice([1, 3, 100]))
    seen: list[object] = []
    runs = [f"r{i}" for i in range(rng.randint(1, 4))]
    for run_id in runs:
        n = rng.randint(1, 9)
        c.accept_all(c.submit(run_id, [spec(f"t{i}") for i in range(n)]))
        while c.sched.run_status(run_id).state == "RUNNING":  # type: ignore[union-attr]
            run = c.sched.run_state(run_id)
            assert run is not None
            for rec in list(run.tasks.values()):
                if rec.state in ("ASSIGNED", "RUNNING"):
                    c.accept_all(c.succeed(rec.node, run_id, rec.id, rec.attempt))
        if rng.random() < 0.5:  # (a holder no longer in the view: not told to free)
            c.sched.run_state(run_id).holders.add("gone")  # type: ignore[union-attr]
    if rng.random() < 0.5:  # (a holder lost: not told to free)
        lost = rng.choice(["n1", "n2", "n3"])
        c.alive[lost] = False
        seen.append(c.feed(ev.NodeUpdate(lost, lost, False, {}, {}, 99)))
    for run_id in rng.sample(runs, len(runs)) + [runs[0], "unknown"]:
        seen.append(c.feed(ev.ResultsReleased(run_id)))
        for _ in range(50):  # (the slices of a big run, and the released run's answers)
            seen.append((c.sched.run_status(run_id), c.sched.run_history(run_id)))
            out = c.feed(ev.TimerFired(release_key(run_id)))
            seen.append(out)
            if not out:
                break
    return seen


@pytest.mark.parametrize("seed", range(40))
def test_both_builds_release_the_same(seed: int) -> None:
    assert built.__file__ is not None and pure_release.__file__.endswith(".py")  # type: ignore[union-attr]
    assert repr(_play(built, seed)) == repr(_play(pure_release, seed))
