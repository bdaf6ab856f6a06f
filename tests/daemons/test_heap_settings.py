"""The daemon's C heap settings (store/heap.py): one arena for every thread, blocks of a run's
transient buffers' size from the heap rather than their own mappings, and the daemon applies them
at start. Each case runs in a fresh interpreter (the settings are the process's, and glibc's
dynamic threshold depends on what the process freed before), once with ``heap.tune()`` and once
without, so each check also shows that this glibc behaves as the settings assume."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from handoffd.cli import daemon_run
from handoffd.store import heap

pytestmark = pytest.mark.skipif(heap._find_mallopt() is None, reason="glibc mallopt (Linux) only")

# The C heap's own counts (glibc's mallinfo2: mapped blocks) and its arenas (malloc_info's XML
# lists one <heap> per arena), after a thread allocated 4 MiB in blocks of 600 bytes and the main
# thread one block of 1 MiB.
PROBE = """
import ctypes, sys, tempfile, threading
from handoffd.store import heap

if sys.argv[1] == "tuned":
    applied = heap.tune()
    assert heap.tune() is applied  # once
    print(",".join(map(str, applied)))
else:
    print("-")

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
kept = []
worker = threading.Thread(target=lambda: kept.append([bytes(600) for _ in range(7000)]))
worker.start()
worker.join()
mapped = libc.mallinfo2().hblks
block = bytes(1 << 20)
print(libc.mallinfo2().hblks - mapped)
libc.fopen.restype = ctypes.c_void_p
libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
libc.fclose.argtypes = (ctypes.c_void_p,)
with tempfile.NamedTemporaryFile() as f:
    out = libc.fopen(f.name.encode(), b"w")
    libc.malloc_info(0, out)
    libc.fclose(out)
    print(open(f.name).read().count("<heap nr="))
"""


def _probe(mode: str) -> tuple[str, int, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    applied, mapped, arenas = out.stdout.split()
    return applied, int(mapped), int(arenas)


@pytest.mark.timeout(120)
def test_without_the_settings_a_thread_gets_its_own_arena_and_a_big_block_its_own_mapping():
    applied, mapped, arenas = _probe("plain")
    assert applied == "-"
    assert arenas >= 2  # the main arena and the thread's
    assert mapped == 1  # the 1 MiB block: glibc's first threshold is 128 KiB


@pytest.mark.timeout(120)
def test_with_the_settings_every_thread_shares_the_main_arena_and_big_buffers_come_from_it():
    applied, mapped, arenas = _probe("tuned")
    assert applied == "1,1,1,1"  # each mallopt accepted
    assert arenas == 1
    assert mapped == 0
    assert heap.MMAP_THRESHOLD > 1 << 20  # the block the probe allocates is below it


def test_the_daemon_tunes_its_heap_before_anything_else():
    source = inspect.getsource(daemon_run.start)
    body = source.split('"""')[2]  # past the docstring
    assert "heap.tune()" in body
    before = body.split("heap.tune()")[0]
    for starts in ("setup_logging(", "build_config(", "asyncio.run(", "_parent_watch("):
        assert starts not in before
