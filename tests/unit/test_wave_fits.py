"""``fill_passes._some_wave_fits``: the check ``_fill_waves`` makes before it builds the core's
one-wave fill and walks the ready queue. It must say True exactly when that fill would pick a
node for some queued shape (else the pass skips a walk that would have dispatched). Both builds
and both core backends, over random capacities, loads at the ``EPS`` edges, kinds a node lacks,
zero and tiny needs, pins."""

from __future__ import annotations

import random
from types import ModuleType
from typing import Any

import pytest
from pure_build import pure

from handoffd._core import api as core
from handoffd._core.api import EPS
from handoffd.scheduler import fill_passes as built_fill
from handoffd.scheduler.room_index import NodeState

pure_fill = pure(built_fill, "handoffd_fill_passes_pure_wave")

KINDS = ("cpu", "memory", "gpu")
POLICIES = ("binpack", "spread", "first_fit")


def _quantity(rng: random.Random, around: float) -> float:
    return rng.choice(
        [0.0, around, around + EPS / 2, around - EPS / 2, around + 2 * EPS, around - 2 * EPS, 0.5]
    )


def _case(
    rng: random.Random,
) -> tuple[list[NodeState], dict[str, dict[str, float]], dict[Any, int]]:
    nodes = []
    outstanding: dict[str, dict[str, float]] = {}
    for i in range(rng.randrange(1, 5)):
        name = f"n{i}"
        capacity = {k: float(rng.choice([1, 2, 4])) for k in KINDS if rng.random() < 0.7}
        nodes.append(NodeState(name, name, True, capacity, {}, 1))
        if rng.random() < 0.8:
            outstanding[name] = {
                k: max(0.0, q - _quantity(rng, rng.choice([0.0, 1.0, 0.5])))
                for k, q in capacity.items()
                if rng.random() < 0.8
            }
            if rng.random() < 0.2:  # a kind the node lacks, a load above capacity or below 0
                outstanding[name][rng.choice(KINDS)] = rng.choice([0.5, 1.0, 5.0, -0.5])
    shapes: dict[Any, int] = {}
    for _ in range(rng.randrange(1, 4)):
        items = tuple(
            (k, _quantity(rng, rng.choice([1.0, 0.5, EPS / 4])))
            for k in KINDS + ("disk",)
            if rng.random() < 0.5
        )
        pin = rng.choice([None, None, "n0", "n1", "n9"])
        shapes[(pin, items)] = 1
    return nodes, outstanding, shapes


def _core_picks(
    backend: str, nodes: list[NodeState], outstanding: dict[str, dict[str, float]], shapes: Any
) -> bool:
    """What ``_fill_waves`` builds: the wave-open nodes, one that cannot take part carrying the
    largest capacities, a window of one; some queued shape picked to some node by any policy."""
    open_nodes = [n for n in nodes if built_fill._wave_open(n, outstanding)]
    if not open_nodes:
        return False
    top: dict[str, float] = {}
    for n in nodes:
        for k, q in n.capacity.items():
            top[k] = max(q, top.get(k, q))
    capacities = [n.capacity for n in open_nodes] + [top]
    loads = [outstanding.get(n.name, {}) for n in open_nodes] + [dict(top)]
    index = {n.name: i for i, n in enumerate(open_nodes)}
    kernels = core.kernels(backend)
    for policy in POLICIES:
        for pin, items in shapes:
            fill = kernels.window_fill(capacities, loads, 1, None, None)
            at = -1 if pin is None else index.get(pin)
            if at is None:
                continue
            if fill.pick(dict(items), at, policy, 0.0) >= 0:
                return True
    return False


@pytest.mark.parametrize("module", [built_fill, pure_fill], ids=["built", "pure"])
@pytest.mark.parametrize("backend", ["cython", "python"])
def test_some_wave_fits_is_the_core_picking(module: ModuleType, backend: str) -> None:
    rng = random.Random(36)
    said = {True: 0, False: 0}
    for case in range(3000):
        nodes, outstanding, shapes = _case(rng)
        open_nodes = [n for n in nodes if built_fill._wave_open(n, outstanding)]
        if not open_nodes:
            continue
        got = module._some_wave_fits(open_nodes, outstanding, shapes)
        want = _core_picks(backend, nodes, outstanding, shapes)
        assert got == want, (case, [(n.name, n.capacity) for n in open_nodes], outstanding, shapes)
        said[got] += 1
    assert said[True] > 200 and said[False] > 200, said  # both answers well covered


@pytest.mark.parametrize("module", [built_fill, pure_fill], ids=["built", "pure"])
def test_a_need_above_capacity_never_fits(module: ModuleType) -> None:
    """Above the node's capacity no room counts (the core's second bound), even where the books'
    load would leave more (a load below 0: not kept by ``Demand``, read as the core reads it)."""
    node = NodeState("n0", "n0", True, {"cpu": 1.0, "memory": 4.0}, {}, 1)
    outstanding = {"n0": {"cpu": -0.5}}
    assert not module._some_wave_fits([node], outstanding, {(None, (("cpu", 1.2),)): 1})
    assert not _core_picks("cython", [node], outstanding, {(None, (("cpu", 1.2),)): 1})
    assert module._some_wave_fits([node], outstanding, {(None, (("cpu", 1.0),)): 1})
