"""The result store gives a dropped run's memory back to the OS (glibc malloc_trim), measured in a
fresh interpreter so nothing else this test process allocated blurs the resident size."""

from __future__ import annotations

import subprocess
import sys

import pytest

# In a fresh interpreter ("tuned": with the daemon's heap settings first): free one 2 MiB block
# (glibc then raises its mmap threshold, so later 1 MiB values are heap blocks), put 64 values of
# 1 MiB in a store with a live 1 MiB block after each (so the heap cannot simply shrink from its
# top), drop the run, print the MiB of dropped values still resident and the store's trim count.
TRIM_PROBE = """
import sys
from handoffd.store import store as s

def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

if sys.argv[1] == "off":
    s.TRIM_AFTER_BYTES = 1 << 62
if sys.argv[1] == "tuned":  # the daemon's heap settings (store/heap.py), as at its start
    from handoffd.store import heap
    assert heap.tune() == (1, 1, 1, 1)
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


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim")
@pytest.mark.timeout(120)
def test_a_dropped_run_is_given_back_with_the_daemons_heap_settings():
    """The daemon's settings keep up to ``heap.TRIM_THRESHOLD`` free at the heap's top and take
    1 MiB values from the heap: a dropped run is still given back whole."""
    kept, trims = _dropped_still_resident("tuned")
    assert trims == 1
    assert kept < 4, f"{kept:.1f} MiB of 64 MiB dropped values still resident"
