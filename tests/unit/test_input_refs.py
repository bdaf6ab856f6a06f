"""A dispatch's inputs (``RunState.input_refs``): each regular dependency's ``ValueRef`` made
empty and its slots stored (``RunState._ref``), its locations sorted only when there are two or
more, must be the ``ValueRef`` its constructor makes of the sorted locations: both builds, random
DAGs, locations (none, one, several, out of order), values and inline dependencies."""

from __future__ import annotations

import importlib
import random
from typing import Any

import pytest
from test_scheduler_twin import PURE

from handoffd.scheduler.events import InlineRef, ValueRef
from handoffd.spec import RunOptions, TaskSpec

BUILDS = {
    "compiled": importlib.import_module("handoffd.scheduler.run"),
    "pure": PURE["handoffd.scheduler.run"],
}
NODES = ("n2", "n0", "n1", "n3")


def _reference(run: Any, task_id: str) -> tuple[Any, ...]:
    spec = run.tasks[task_id].spec if task_id in run.tasks else run.inline[task_id]
    out = []
    for dep in spec.deps:
        if dep in run.inline:
            d = run.inline[dep]
            out.append(InlineRef(dep, d.payload, d.argument_inclusion, _reference(run, dep)))
        else:
            rec = run.tasks[dep]
            out.append(ValueRef(dep, tuple(sorted(rec.locations)), rec.value))
    return tuple(out)


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_input_refs_are_the_constructed_refs(build: str) -> None:
    module = BUILDS[build]
    rng = random.Random(13)
    checked = 0
    for _ in range(150):
        specs = []
        for i in range(rng.randint(1, 25)):
            deps = tuple(rng.sample([s.id for s in specs], min(len(specs), rng.randint(0, 3))))
            inline = i > 0 and rng.random() < 0.15
            specs.append(TaskSpec(f"t{i}", deps, {"cpu": 1.0}, b"p%d" % i, inline=inline))
        run = module.RunState("r", specs, RunOptions())
        for rec in run.tasks.values():
            rec.locations = tuple(rng.sample(NODES, rng.randint(0, 4)))
            rec.value = rng.choice((None, b"", b"v"))
        for task_id in run.tasks:
            got = run.input_refs(task_id)
            want = _reference(run, task_id)
            assert got == want, (task_id, got, want)
            for ref in got:
                assert type(ref) in (ValueRef, InlineRef)
                if type(ref) is ValueRef:
                    assert ref.locations == tuple(sorted(ref.locations))
                    assert type(ref.locations) is tuple and hash(ref) == hash(ref)
                    checked += 1
    assert checked > 500
