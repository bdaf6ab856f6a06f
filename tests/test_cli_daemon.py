"""The ``handoffd start`` process itself: what it sets up for its own memory."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(120)

# In a fresh interpreter: free one 2 MiB block (glibc would raise its mmap threshold to 2 MiB),
# then allocate 64 blocks of 1 MiB, free every other one (the live ones keep the heap from being
# trimmed past them) and print how many MiB of the freed half stayed resident.
PROBE = """
import sys
from handoffd.cli.daemon import _return_large_frees

def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

if sys.argv[1] == "fixed":
    assert _return_large_frees()
first = b"x" * (2 << 20)
del first
base = rss_mib()
big = [b"x" * (1 << 20) for _ in range(64)]
del big[::2]
print(rss_mib() - base - 32)  # the 32 live blocks are not "retained"
"""


def _retained_mib(mode: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return float(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_daemon_process_returns_freed_large_values_to_the_system():
    adaptive = _retained_mib("default")
    if adaptive < 16:
        pytest.skip(f"this malloc returns freed 1 MiB blocks anyway ({adaptive:.1f} MiB kept)")
    assert _retained_mib("fixed") < 4
