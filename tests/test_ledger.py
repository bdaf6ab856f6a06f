from handoffd.worker.ledger import Ledger


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
