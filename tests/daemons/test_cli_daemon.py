"""The ``handoffd start`` process itself: what it sets up for its own garbage collector."""

from __future__ import annotations

import subprocess
import sys

import pytest

from handoffd.cli.daemon_run import GC_THRESHOLDS

pytestmark = pytest.mark.timeout(120)

PROBE = """
import gc
from handoffd.cli import daemon_run as daemon
frozen_before = gc.get_freeze_count()
daemon.tune_gc()
print(gc.get_threshold(), frozen_before, gc.get_freeze_count() > 1000)
"""


def test_daemon_freezes_start_up_objects_and_collects_the_oldest_generation_less_often():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [*str(GC_THRESHOLDS).split(), "0", "True"]
    young, middle, oldest = GC_THRESHOLDS
    assert (young, middle) == (700, 10)  # CPython's: young collections stay short
    assert oldest > 10
