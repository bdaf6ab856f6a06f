from __future__ import annotations

import pytest

from handoffd.store.store import ResultStore, StoreError


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


def test_spills_in_the_order_values_were_last_put(tmp_path):
    """The oldest value spills first, and a value put again counts as new (it spills last):
    the order a plain dict keeps, as the ``OrderedDict`` it replaced did."""
    store = ResultStore(memory_limit=130, spill_dir=str(tmp_path))
    for name in "abc":
        store.put("r", name, name.encode() * 40)
    store.put("r", "a", b"A" * 40)  # "a" again: now the newest
    store.put("r", "d", b"d" * 40)  # 160 bytes: one spills, the oldest ("b")
    assert store.peek(("r", "b")) is None and store.get("r", "b") == b"b" * 40
    assert [store.peek(("r", k)) is not None for k in "acd"] == [True, True, True]
    store.put("r", "e", b"e" * 40)  # then "c", not the re-put "a"
    assert store.peek(("r", "c")) is None and store.peek(("r", "a")) == b"A" * 40
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


def test_a_value_past_the_cap_is_refused_naming_the_limit_and_nothing_is_kept(tmp_path):
    import pytest

    from handoffd.store.store import StoreError

    store = ResultStore(memory_limit=100, spill_dir=str(tmp_path), max_bytes=250)
    store.put("r", "a", b"a" * 120)
    store.put("r", "b", b"b" * 120)  # spilled and in memory count together
    with pytest.raises(StoreError, match=r"cap of 250 bytes .*--limit max_store_bytes="):
        store.put("r", "c", b"c" * 20)
    assert not store.has("r", "c") and store.stats.values == 2
    store.drop_values("r", ["a"])
    store.put("r", "c", b"c" * 20)  # room again
    assert store.get("r", "c") == b"c" * 20
    store.close()


def test_a_failed_spill_names_the_path_and_error_and_keeps_the_store_whole(tmp_path):
    import pytest

    from handoffd.store.store import StoreError

    missing = tmp_path / "gone"
    store = ResultStore(memory_limit=100, spill_dir=str(missing))
    store.put("r", "a", b"a" * 80)
    with pytest.raises(StoreError) as info:
        store.put("r", "b", b"b" * 80)  # spilling "a" fails: the dir does not exist
    text = str(info.value)
    assert str(missing) in text and "ENOENT" in text and "--spill-dir" in text
    assert store.get("r", "a") == b"a" * 80 and not store.has("r", "b")
    assert store.stats.in_memory_bytes == 80 and store.stats.values == 1
    missing.mkdir()  # fixed: the next spill goes through
    store.put("r", "b", b"b" * 80)
    assert store.stats.spills == 1 and store.get("r", "a") == b"a" * 80
    store.close()


def test_a_spill_dir_removed_under_the_store_fails_once_then_is_made_again(tmp_path):
    import shutil

    import pytest

    from handoffd.store.store import StoreError

    store = ResultStore(memory_limit=100, spill_dir=str(tmp_path))
    store.put("r", "a", b"a" * 80)
    store.put("r", "b", b"b" * 80)  # "a" spilled into handoffd-spill-*
    [made] = list(tmp_path.iterdir())
    shutil.rmtree(made)
    with pytest.raises(StoreError, match="ENOENT"):
        store.put("r", "c", b"c" * 80)
    store.put("r", "c", b"c" * 80)  # a new spill dir
    assert store.get("r", "c") == b"c" * 80 and store.get("r", "b") == b"b" * 80
    store.close()


def test_a_big_value_is_spilled_by_a_thread_and_readable_meanwhile(tmp_path, monkeypatch):
    """Writing a 1.1 GiB result to its spill file held the daemon's loop ~8 s: a value of
    SPILL_AWAY_BYTES or more is written by a thread. ``put`` returns while the write is held; the
    value is read from memory meanwhile and from its file once the thread is done."""
    import threading

    from handoffd.store import store as store_mod

    gate, entered = threading.Event(), threading.Event()
    real_write = store_mod._write_file

    def held_write(directory: str, value: bytes) -> str:
        entered.set()
        assert gate.wait(30)
        return real_write(directory, value)

    monkeypatch.setattr(store_mod, "_write_file", held_write)
    big = bytes(range(256)) * (store_mod.SPILL_AWAY_BYTES // 256)
    store = ResultStore(memory_limit=100, spill_dir=str(tmp_path))
    putter = threading.Thread(target=store.put, args=("r", "big", big))
    putter.start()
    putter.join(10)
    assert not putter.is_alive(), "put waited for the spill file to be written"
    assert entered.wait(10)
    assert store.get("r", "big") == big and bytes(store.read("r", "big", 5, 3)) == big[5:8]
    assert store.stats.in_memory_bytes == len(big) and store.stats.spills == 0
    store.put("r", "small", b"s" * 10)  # no second write of the value under way
    gate.set()
    store.wait_spills(30)
    assert store.stats.spills == 1 and store.stats.in_memory_bytes == 10
    assert store.stats.spilled_bytes == len(big)
    assert store.get("r", "big") == big and bytes(store.read("r", "big", 5, 3)) == big[5:8]
    store.close()


def test_a_value_dropped_while_its_spill_is_written_leaves_no_file(tmp_path, monkeypatch):
    import threading

    from handoffd.store import store as store_mod

    gate = threading.Event()
    real_write = store_mod._write_file
    monkeypatch.setattr(store_mod, "_write_file", lambda d, v: (gate.wait(30), real_write(d, v))[1])
    store = ResultStore(memory_limit=100, spill_dir=str(tmp_path))
    store.put("r", "big", b"b" * store_mod.SPILL_AWAY_BYTES)
    assert store.drop_run("r") == 1
    gate.set()
    store.wait_spills(30)
    assert store.stats.values == 0 and store.stats.spilled_bytes == 0
    assert store.stats.in_memory_bytes == 0 and store.get("r", "big") is None
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
    store.close()


def test_a_failed_background_spill_keeps_the_value_and_says_why(tmp_path, caplog):
    from handoffd.store import store as store_mod

    missing = tmp_path / "gone"
    store = ResultStore(memory_limit=100, spill_dir=str(missing))
    big = b"b" * store_mod.SPILL_AWAY_BYTES
    store._spill_dir = str(missing)  # as if made, then removed under the store
    store.put("r", "big", big)
    store.wait_spills(30)
    assert store.get("r", "big") == big and store.stats.spills == 0
    assert str(missing) in caplog.text and "--spill-dir" in caplog.text
    with pytest.raises(StoreError) as refused:  # the next value that needs a spill: refused
        store.put("r", "next", b"n" * 10)
    assert str(missing) in str(refused.value) and not store.has("r", "next")
    missing.mkdir()
    store.put("r", "small", b"s")  # the next spill makes its dir again and moves it
    store.wait_spills(30)
    assert store.stats.spills == 1 and store.get("r", "big") == big
    store.close()


def test_peek_is_a_value_in_memory_only(tmp_path):
    store = ResultStore(memory_limit=100, spill_dir=str(tmp_path))
    store.put("r", "old", b"o" * 60)
    store.put("r", "new", b"n" * 60)  # over the limit: the oldest is spilled
    store.settle()
    assert store.peek(("r", "new")) == b"n" * 60
    assert store.peek(("r", "old")) is None and store.get("r", "old") == b"o" * 60
    store.drop("r", "new")
    assert store.peek(("r", "new")) is None
    store.close()


def test_drop_run_takes_every_kind_of_value_out_and_counts_them(tmp_path, monkeypatch):
    """A run's values in memory (an empty one and an assembled ``mmap`` among them) and spilled
    all go, the counts follow, the ``mmap`` is handed to the unmapping thread, another run's
    values stay."""
    import mmap

    from handoffd.store import store as store_mod

    doomed: list = []
    monkeypatch.setattr(store_mod, "unmap_later", doomed.append)
    store = ResultStore(memory_limit=100, spill_dir=str(tmp_path))
    store.put("r", "old", b"o" * 60)  # spilled by the next puts
    store.put("r", "empty", b"")
    assembled = mmap.mmap(-1, 8)
    store.put("r", "mapped", assembled)
    store.put("other", "x", b"x" * 5)
    store.put("r", "new", b"n" * 30)
    assert store.stats.spills == 1 and store.stats.values == 5
    assert store.drop_run("r") == 4
    assert doomed == [assembled]
    assert (store.stats.values, store.stats.in_memory_bytes, store.stats.spilled_bytes) == (1, 5, 0)
    assert store.get("other", "x") == b"x" * 5 and store.runs() == ["other"]
    assert not any(p.is_file() for p in tmp_path.rglob("*"))
    assert store.drop_run("r") == 0 and store.stats.values == 1
    store.close()


def test_a_run_of_one_value_drops_it_of_any_kind_and_trims_as_a_bigger_run(tmp_path, monkeypatch):
    """``drop_run`` of a run that holds one value (a one-task call's: its own short path) takes
    it out whether it is in memory, empty, an assembled ``mmap`` or spilled, keeps the counts and
    another run's values, and trims when the run held ``TRIM_AFTER_BYTES`` (its value and what
    ``drop_values`` freed of it before) as a run of many values does."""
    import mmap

    from handoffd.store import store as store_mod

    doomed: list = []
    trims: list = []
    monkeypatch.setattr(store_mod, "unmap_later", doomed.append)
    monkeypatch.setattr(store_mod, "release_free_memory", lambda: trims.append(1) or 1)
    monkeypatch.setattr(store_mod, "TRIM_AFTER_BYTES", 50)
    assembled = mmap.mmap(-1, 8)
    for value in (b"v" * 10, b"", assembled, b"s" * 60):
        store = ResultStore(memory_limit=100, spill_dir=str(tmp_path))
        store.put("r", "one", value)
        store.put("other", "x", b"x" * 5)
        if len(value) == 60:  # (the oldest: spilled by the next put)
            store.put("other", "y", b"y" * 45)
        assert store.stats.spills == (len(value) == 60)
        assert store.drop_run("r") == 1
        assert store.get("r", "one") is None and store.runs() == ["other"]
        others = 2 if len(value) == 60 else 1
        assert store.stats.values == others and store.stats.spilled_bytes == 0
        assert store.stats.in_memory_bytes == 5 + 45 * (others - 1)
        assert not any(p.is_file() for p in tmp_path.rglob("*"))
        store.close()
    assert doomed == [assembled]
    assert trims == []  # (none held 50 bytes in memory: a spilled value is not trimmed for)
    store = ResultStore(memory_limit=1 << 20)
    store.put("r", "a", b"a" * 30)
    store.put("r", "b", b"b" * 30)
    store.drop_values("r", ["a"])  # (30 freed, counted towards the run's trim)
    assert store.drop_run("r") == 1 and trims == [1] and store.trims == 1
    assert store.stats.values == 0 and store.stats.in_memory_bytes == 0
    store.close()
