from __future__ import annotations

from handoffd.store.store import ResultStore


def test_put_get_and_drop_run():
    store = ResultStore(memory_limit=1 << 20)
    store.put("r1", "a", b"x" * 10)
    store.put("r1", "b", b"y")
    store.put("r2", "a", b"z")
    assert store.get("r1", "a") == b"x" * 10
    assert store.size("r1", "a") == 10
    assert store.drop_run("r1") == 2
    assert store.get("r1", "a") is None
    assert store.get("r2", "a") == b"z"
    assert store.stats.values == 1
    store.close()


def test_spills_oldest_past_the_limit_and_reads_back(tmp_path):
    store = ResultStore(memory_limit=100, spill_dir=str(tmp_path))
    for i in range(5):
        store.put("r", str(i), bytes([i]) * 40)
    assert store.stats.in_memory_bytes <= 100
    assert store.stats.spills >= 3
    for i in range(5):
        assert store.get("r", str(i)) == bytes([i]) * 40
    spill_files = list(tmp_path.rglob("*"))
    assert any(p.is_file() for p in spill_files)
    store.drop_run("r")
    assert store.stats.values == 0 and store.stats.spilled_bytes == 0
    assert not any(p.is_file() for p in tmp_path.rglob("*"))
    store.close()


def test_overwrite_keeps_accounting_right():
    store = ResultStore(memory_limit=1000)
    store.put("r", "a", b"1" * 100)
    store.put("r", "a", b"2" * 50)
    assert store.stats.in_memory_bytes == 50
    assert store.stats.values == 1
    assert store.get("r", "a") == b"2" * 50


def test_small_drops_do_not_trim():
    store = ResultStore(memory_limit=1 << 30)
    for i in range(8):
        store.put("r", str(i), b"v" * 1000)
    store.drop("r", "0")
    store.drop_run("r")
    assert store.trims == 0
    store.close()
