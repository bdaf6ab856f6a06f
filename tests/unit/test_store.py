from __future__ import annotations

import subprocess
import sys

import pytest

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


# In a fresh interpreter: free one 2 MiB block (glibc then raises its mmap threshold, so later
# 1 MiB values are heap blocks), put 64 values of 1 MiB in a store with a live 1 MiB block after
# each (so the heap cannot simply shrink from its top), drop the run, print the MiB of dropped
# values still resident and the store's trim count.
TRIM_PROBE = """
import sys
from handoffd.store import store as s

def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

if sys.argv[1] == "off":
    s.TRIM_AFTER_BYTES = 1 << 62
st = s.ResultStore(1 << 40)
first = b"x" * (2 << 20)
del first
live = []
base = rss_mib()
for i in range(64):
    st.put("run", str(i), bytes([i]) * (1 << 20))
    live.append(b"y" * (1 << 20))
st.drop_run("run")
print(rss_mib() - base - 64, st.trims)
"""


def _dropped_still_resident(mode: str) -> tuple[float, int]:
    out = subprocess.run(
        [sys.executable, "-c", TRIM_PROBE, mode], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    resident, trims = out.stdout.split()
    return float(resident), int(trims)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim")
@pytest.mark.timeout(120)
def test_dropping_a_large_run_gives_its_memory_back():
    kept, trims = _dropped_still_resident("off")
    assert trims == 0
    if kept < 16:
        pytest.skip(f"this malloc returned the dropped values by itself ({kept:.1f} MiB kept)")
    kept, trims = _dropped_still_resident("on")
    assert trims == 1
    assert kept < 4, f"{kept:.1f} MiB of 64 MiB dropped values still resident"


def test_small_drops_do_not_trim():
    store = ResultStore(memory_limit=1 << 30)
    for i in range(8):
        store.put("r", str(i), b"v" * 1000)
    store.drop("r", "0")
    store.drop_run("r")
    assert store.trims == 0
    store.close()
