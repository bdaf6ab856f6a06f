"""Shared fixtures: every cluster is closed, every daemon killed by PID, even when a test fails."""

from __future__ import annotations

import os
import sys

import pytest

# Tests import helper functions from each other's modules only by value: worker processes of
# subprocess daemons have no copy of the tests directory.
sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def daemons():
    from handoffd.testing import DaemonCluster

    cluster = DaemonCluster()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture
def is_root() -> bool:
    return os.geteuid() == 0
