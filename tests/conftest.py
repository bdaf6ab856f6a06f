"""The suite is a pyramid of three directories; a test file lives in the first that fits:

- ``unit/``: pure code, no sockets and no child processes (an asyncio loop only where the code
  under test is async, e.g. the in-memory transport). The fast loop, and most of the tests.
- ``cluster/``: whole nodes in this process (``LocalCluster``, ``ThreadedCluster``, ``Node`` on a
  ``MemoryNetwork``, which is the clusters' default; a client reaches them through a ``mem://``
  address). Their worker processes are real; ``transport="zmq"`` when sockets are the point.
- ``daemons/``: real processes and real sockets are what is tested: ``handoffd start``
  subprocesses, worker pools, ZeroMQ and mDNS sockets, network namespaces, fresh interpreters.
  Every test there is marked ``slow`` (below), so ``pytest -m "not slow"`` is the fast loop.
- ``chaos/``: daemons in network namespaces under a seeded nemesis, judged by a checker (issue
  19); marked ``slow`` too, and skipped with the reason when namespaces are unavailable.

Helper modules sit next to the tests that use them (pytest puts a test file's directory on
``sys.path`` before importing it), so file names must be unique across the three directories.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

_DAEMONS = Path(__file__).parent / "daemons"
_CHAOS = Path(__file__).parent / "chaos"  # issue 19: seeded faults against daemons in namespaces

# Keyless daemons and clients authenticate with the local key of the runtime dir: each test
# process gets a private one (inherited by the daemons and handoffctl it starts), so the suite
# neither uses nor leaves a key in the user's own /tmp/handoffd-<uid>.
_RUNTIME_DIR = tempfile.mkdtemp(prefix="handoffd-tests-rt-")
os.environ["HANDOFFD_RUNTIME_DIR"] = _RUNTIME_DIR
atexit.register(shutil.rmtree, _RUNTIME_DIR, True)


def pytest_configure(config: pytest.Config) -> None:
    # Bytecode for handoffd, once a session (by xdist's controller, whose workers start after
    # it configured, or the one process of a run without xdist): under CI's
    # PYTHONDONTWRITEBYTECODE=1 every daemon, worker process and handoffctl the suite starts
    # compiled every handoffd module it imports from source, thousands of processes a run.
    if "PYTEST_XDIST_WORKER" not in os.environ:
        from handoffd.testing import precompile

        root = Path(__file__).resolve().parent.parent
        for package in ("handoffd", "_core"):  # (handoffd/_core is a symlink: not walked)
            precompile(root / package)


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # By directory, so a test added to daemons/ cannot forget the marker.
    for item in items:
        if _DAEMONS in item.path.parents or _CHAOS in item.path.parents:
            item.add_marker(pytest.mark.slow)
    # Run order by file name across the tiers (a stable sort: each file's tests stay together),
    # as before the suite was split into directories. xdist hands each worker consecutive runs
    # of the collection, starting with a quarter of it each: in directory order one worker got
    # nearly all the daemon tests, most of the suite's time, and ran alone for the last ~30 s.
    # test_wheel.py goes first: its one fixture builds and installs a wheel, minutes on one worker
    # (~10 % of the suite's test time), and where its name sorts it began at ~86 % of the suite
    # while the other worker ran out of tests. `make` runs `--dist worksteal`, which hands each
    # worker half of this order (the wheel's two tests together, at the head of the first) and
    # lets an idle worker take tests the other has not started; xdist's default `--dist load`
    # deals the first items out one by one and would build the wheel on both workers.
    items.sort(key=lambda item: (item.path.name != "test_wheel.py", item.path.name))
