"""The executing node's ledger, and its agreement with the owner's view on what fits."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scheduler_harness import Cluster, placed, spec

from handoffd import resources
from handoffd.scheduler import events as ev
from handoffd.worker.ledger import EPS, Ledger


def test_claims_until_full_then_refuses_and_release_restores():
    ledger = Ledger({"cpu": 4, "memory": 1000})
    assert ledger.try_claim({"cpu": 3, "memory": 500}) == []
    assert ledger.try_claim({"cpu": 2}) is None  # only 1 cpu left
    assert ledger.try_claim({"memory": 600}) is None
    v = ledger.version
    ledger.release({"cpu": 3, "memory": 500}, [])
    assert ledger.version > v
    assert ledger.idle()
    ledger.validate()


def test_a_release_never_frees_past_capacity():
    """A task's end gives back at most the capacity of each kind (a kind the node lacks: 0)."""
    ledger = Ledger({"cpu": 2, "memory": 100})
    assert ledger.try_claim({"cpu": 0.5}) == []
    ledger.release({"cpu": 1.5, "memory": 10, "fpga": 1}, [])
    assert ledger.free == {"cpu": 2, "memory": 100, "fpga": 0.0}
    assert ledger.try_claim({"cpu": 1.25}) == []
    ledger.release({"cpu": 1.0}, [])
    assert ledger.free["cpu"] == 1.75  # below capacity: exactly what came back
    ledger.validate()


def test_gpu_indices_are_distinct_and_returned():
    ledger = Ledger({"cpu": 8, "gpu": 2})
    a = ledger.try_claim({"cpu": 1, "gpu": 1})
    b = ledger.try_claim({"cpu": 1, "gpu": 1})
    assert a is not None and b is not None and sorted(a + b) == [0, 1]
    assert ledger.try_claim({"gpu": 1}) is None
    ledger.release({"cpu": 1, "gpu": 1}, a)
    assert ledger.try_claim({"gpu": 1}) == a
    ledger.validate()


def test_unknown_kind_does_not_fit():
    ledger = Ledger({"cpu": 2})
    assert ledger.try_claim({"fpga": 1}) is None


# -- the owner's view and the ledger agree on "fits" --------------------------------------------

_EDGE = [
    -2 * EPS,
    -1.001 * EPS,
    -0.999 * EPS,
    -EPS / 2,
    0.0,
    EPS / 2,
    0.999 * EPS,
    1.001 * EPS,
    2 * EPS,
]
_COSTS = st.sampled_from([0.1, 0.2, 0.3, 0.25, 1.0 / 3, 0.7, 1.0])


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_the_owner_dispatches_exactly_what_the_ledger_accepts(data):
    """The ledger's free after a few claims and releases (float rounding included) is what the
    node reports; a task costing that much give or take about EPS is dispatched by the owner
    (window 1: only onto free resources) exactly when the ledger then claims it."""
    ledger = Ledger({"cpu": 4.0, "memory": 1000.0})
    held = []
    for _ in range(data.draw(st.integers(0, 8))):
        cost = {"cpu": data.draw(_COSTS), "memory": data.draw(_COSTS) * 300}
        if ledger.try_claim(cost) is not None:
            held.append(cost)
        if held and data.draw(st.booleans()):
            ledger.release(held.pop(data.draw(st.integers(0, len(held) - 1))), [])
    cost = {}
    for kind in data.draw(st.sampled_from([["cpu"], ["memory"], ["cpu", "memory"]])):
        q = ledger.free[kind] + data.draw(st.sampled_from(_EDGE))
        if q > EPS:  # (below that, parse refuses the quantity)
            cost[kind] = q
    owner = Cluster({"n1": dict(ledger.capacity)})  # window 1: only onto free resources
    owner.feed(ev.NodeUpdate("n1", "n1", True, dict(ledger.capacity), dict(ledger.free), 2))
    out = owner.submit("r", [spec("t", cost=cost)])
    assert bool(placed(out)) == (ledger.try_claim(cost) is not None), (ledger.free, cost, out)


def test_a_quantity_within_the_tolerance_is_refused_by_parse():
    assert resources.parse({"cpu": 2 * EPS}) == {"cpu": 2 * EPS}
    with pytest.raises(resources.ResourceError, match="below the scheduler's resolution"):
        resources.parse({"cpu": EPS / 2})
