"""The scheduling-at-scale harness (``bench/scale_owner.py``, issue 20) runs a run to its end.

The harness drives the real ``OwnerScheduler`` on a virtual clock; it must carry out every
instruction the daemon would, or the table it prints describes a run that never ends. It once
dropped ``StartTimer``, so the scheduler's sliced intake (``scheduler/intake.py``: a big run's ready
tasks enter ``SLICE`` at a time, each next slice on a timer) stopped after the first slice and the
bench spun on background events forever. Bounds here are virtual time, not wall clock.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from handoffd.scheduler.intake import SLICE

BENCH = Path(__file__).resolve().parents[2] / "bench" / "scale_owner.py"


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("handoffd_bench_scale_owner", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(120)
@pytest.mark.parametrize("window", [32, 1])
def test_a_run_bigger_than_an_intake_slice_finishes(window: int) -> None:
    so = _harness()
    tasks = 3 * SLICE + 7
    sim = so.ScaleSim(12, window=window, gossip_delay=0.1, seed=3)
    r = sim.run(tasks)
    assert "run" in sim.finished
    assert sim.accepted == tasks  # each task accepted once: none lost, none placed twice
    assert r["makespan"] >= r["ideal"]
    # 12 nodes x 4 cpu, a quarter busy with background work: well within twice the ideal
    assert r["makespan"] < 2.0 * r["ideal"] + 5.0, r
    assert r["refused_pct"] == 0.0


@pytest.mark.timeout(120)
def test_an_owner_that_stops_placing_is_reported_not_spun_on() -> None:
    so = _harness()

    class DropsTimers(so.ScaleSim):  # type: ignore[name-defined,misc]
        def push(self, at: float, kind: str, payload: object) -> None:
            if kind != "timer":
                super().push(at, kind, payload)

    sim = DropsTimers(6, window=32, gossip_delay=0.1, seed=3)
    with pytest.raises(RuntimeError, match="stopped placing") as caught:
        sim.run(2 * SLICE)
    assert "'PENDING'" in str(caught.value)
    assert sim.dispatched == SLICE  # the first slice only: the rest waited for a timer
