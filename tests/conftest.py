"""Shared fixtures: every cluster is closed, every daemon killed by PID, even when a test fails."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile

import pytest

# Tests import helper functions from each other's modules only by value: worker processes of
# subprocess daemons have no copy of the tests directory.
sys.path.insert(0, os.path.dirname(__file__))

# Keyless daemons and clients authenticate with the local key of the runtime dir: each test
# process gets a private one (inherited by the daemons and handoffctl it starts), so the suite
# neither uses nor leaves a key in the user's own /tmp/handoffd-<uid>.
_RUNTIME_DIR = tempfile.mkdtemp(prefix="handoffd-tests-rt-")
os.environ["HANDOFFD_RUNTIME_DIR"] = _RUNTIME_DIR
atexit.register(shutil.rmtree, _RUNTIME_DIR, True)


@pytest.fixture
def daemons():
    from handoffd.testing import DaemonCluster

    cluster = DaemonCluster()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def pair(daemons):
    """Two real daemons with 2 cpu each, the second seeded with the first, both ALIVE."""
    import handoffd
    from handoffd.testing import wait_for

    a = daemons.start(cpu=2, memory=2000)
    b = daemons.start(cpu=2, memory=2000, seeds=[a.address])
    with handoffd.connect(a.address) as client:
        wait_for(
            lambda: [n.status for n in client.nodes().values()] == ["ALIVE", "ALIVE"],
            timeout=30,
            what="two daemons joined",
        )
    return a, b


@pytest.fixture
def is_root() -> bool:
    return os.geteuid() == 0
