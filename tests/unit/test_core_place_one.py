"""The core's one-task kernel ``place_one`` (the owner's one-task free pass in one call) answers
as the calls it replaces: ``fits`` over each node of the pass's free map, then ``place`` on the
candidates with the pin's or preference's index among them (``ClusterView._place_one`` before
it). Random clusters (standard and custom kinds, empty and negative free, float and int
quantities), needs, pins and preferences (candidates, nodes that do not fit, unknown names) and
the three policies; both backends, each against that reference, and their decision counts."""

from __future__ import annotations

import random
from typing import Any

import pytest

from handoffd._core import api as core
from handoffd._core import sched_py as twin

KINDS = ("cpu", "memory", "gpu", "disk", "fpga")


def _map(rng: random.Random, kinds: tuple[str, ...], negative: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in rng.sample(kinds, rng.randint(0, len(kinds))):
        q: Any = rng.choice([0.0, 0.5, 1.0, 2.0, 3.0, 8.0, 1e-10, rng.uniform(0.0, 10.0)])
        if negative and rng.random() < 0.1:
            q = -rng.uniform(0.0, 2.0)
        out[kind] = int(q) if rng.random() < 0.1 and q >= 0 else q
    return out


def _reference(
    kernels: Any, need: Any, free: Any, capacities: Any, pin: Any, pref: Any, policy: str
) -> str | None:
    """What ``ClusterView._place_one`` computed with ``_candidates`` and ``place``."""
    names, frees, caps = [], [], []
    for (name, f), capacity in zip(free.items(), capacities, strict=True):
        if kernels.fits(need, f):
            names.append(name)
            frees.append(f)
            caps.append(capacity)
    if not names:
        return None
    if pin is not None:
        if pin not in names:
            return None
        at, before = names.index(pin), -1
    else:
        at, before = -1, names.index(pref) if pref is not None and pref in names else -1
    n = kernels.place([need], frees, caps, [at], [before], policy)[0]
    return names[n] if n >= 0 else None


def _case(rng: random.Random) -> tuple[Any, ...]:
    kinds = KINDS[: rng.randint(1, len(KINDS))]
    n = rng.randint(0, 12)
    names = [f"n{i}" for i in rng.sample(range(40), n)]
    free = {name: _map(rng, kinds, negative=True) for name in names}
    capacities = [_map(rng, kinds) for _ in names]
    need = _map(rng, kinds) or {kinds[0]: 1.0}
    choices = [None, None, "ghost", *names]
    pin = rng.choice(choices) if rng.random() < 0.3 else None
    pref = rng.choice(choices) if pin is None and rng.random() < 0.5 else None
    return need, free, capacities, pin, pref, rng.choice(core.POLICIES)


@pytest.mark.parametrize("backend", core.BACKENDS)
@pytest.mark.parametrize("seed", range(6))
def test_place_one_answers_as_fits_then_place(backend: str, seed: int) -> None:
    kernels = core.kernels(backend)
    rng = random.Random(seed)
    placed = 0
    for _ in range(400):
        case = _case(rng)
        before = kernels.decisions()
        got = kernels.place_one(*case)
        counted = kernels.decisions()
        expected = _reference(kernels, *case)
        after = kernels.decisions()
        assert got == expected, case
        assert got == twin.place_one(*case), case
        # (the same decisions counted as the calls it replaces)
        for kernel in ("fits", "place"):
            assert counted[kernel] - before[kernel] == after[kernel] - counted[kernel], case
        placed += got is not None
    assert placed > 50, "too few placements to compare"


@pytest.mark.parametrize("backend", core.BACKENDS)
def test_place_one_refuses_unmatched_capacities(backend: str) -> None:
    kernels = core.kernels(backend)
    with pytest.raises(ValueError, match="capacities has 1 entries but free has 2"):
        kernels.place_one({"cpu": 1.0}, {"a": {}, "b": {}}, [{}], None, None)


@pytest.mark.parametrize("backend", core.BACKENDS)
def test_place_one_on_many_nodes_and_kinds(backend: str) -> None:
    # More rows than the compiled kernel keeps on its stack: the heap buffers, the same answer.
    kernels = core.kernels(backend)
    kinds = [f"k{i}" for i in range(6)]
    free = {
        f"n{i}": {k: float(2 + (i * 7 + j) % 5) for j, k in enumerate(kinds)} for i in range(40)
    }
    capacities = [{k: 8.0 for k in kinds} for _ in free]
    need = {k: 2.0 for k in kinds}
    for policy in core.POLICIES:
        got = kernels.place_one(need, free, capacities, None, None, policy)
        assert got == _reference(kernels, need, free, capacities, None, None, policy)
        assert got is not None


def _one_case(rng: random.Random) -> tuple[Any, ...]:
    """A pass with one candidate (the owner's usual one: one node with a freed slot), its maps
    sometimes holding what the kernel's row checks refuse or take apart: int, bool, NaN and
    negative quantities, a key that is not a str."""
    need: dict[Any, Any] = {"cpu": rng.choice([1.0, 0.5, 2.0])}
    if rng.random() < 0.5:
        need["memory"] = rng.choice([0.0, 10.0])
    f: dict[Any, Any] = {"cpu": rng.choice([1.0, 2.0, 4.0]), "memory": 100.0}
    cap: dict[Any, Any] = {"cpu": 4.0, "memory": 100.0}
    odd = rng.choice([None, "int", "bool", "nan", "negative", "key", "zero"])
    target = rng.choice([need, f, cap])
    if odd == "int":
        target["gpu"] = 1
    elif odd == "bool":
        target["gpu"] = True
    elif odd == "nan":
        target["gpu"] = float("nan")
    elif odd == "negative":
        target["gpu"] = -1.0
    elif odd == "key":
        target[7] = 1.0
    elif odd == "zero":
        target["gpu"] = 0.0
    free = {"full": {"cpu": 0.0, "memory": 100.0}, "one": f}
    capacities = [dict(cap), cap]
    pin = rng.choice([None, None, "one", "full", "ghost"])
    pref = rng.choice([None, "one", "full"]) if pin is None else None
    return need, free, capacities, pin, pref, rng.choice(core.POLICIES)


def _outcome(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except Exception as exc:  # noqa: BLE001 (the error itself is compared)
        return type(exc), str(exc)


@pytest.mark.parametrize("backend", core.BACKENDS)
@pytest.mark.parametrize("seed", range(3))
def test_place_one_on_one_candidate_answers_and_refuses_as_place(backend: str, seed: int) -> None:
    # One node fits: the compiled kernel answers without its rows when they hold only str keys
    # and finite floats; any other map takes the rows' checks, which raise as ``place`` does.
    kernels = core.kernels(backend)
    rng = random.Random(seed)
    raised = placed = 0
    for _ in range(300):
        case = _one_case(rng)
        before = kernels.decisions()
        got = _outcome(kernels.place_one, *case)
        counted = kernels.decisions()
        expected = _outcome(_reference, kernels, *case)
        after = kernels.decisions()
        assert got == expected, case
        assert got == _outcome(twin.place_one, *case), case
        for kernel in ("fits", "place"):
            assert counted[kernel] - before[kernel] == after[kernel] - counted[kernel], case
        raised += isinstance(got, tuple)
        placed += got == "one"
    assert raised > 20 and placed > 50, (raised, placed)
