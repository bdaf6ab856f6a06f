"""The namespace lab cleans up after a process killed with SIGTERM (fixture teardown never runs
then): its processes die and its namespaces are deleted."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from netns import NetnsLab, list_namespaces, wait

from handoffd.cli.daemon_run import _running

_REASON = NetnsLab.unavailable()
pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(_REASON is not None, reason=f"netns tests skipped: {_REASON}"),
]

_CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from netns import NetnsLab
    lab = NetnsLab(2).start()
    sleeper = lab.run(1, ["sleep", "300"])
    print(" ".join(lab._created), sleeper.pid, flush=True)
    time.sleep(300)
    """
)


def test_sigterm_closes_open_labs() -> None:
    here = str(Path(__file__).resolve().parent)
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, here],
        stdout=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    namespaces: list[str] = []
    sleeper = 0
    try:
        assert child.stdout is not None
        line = child.stdout.readline().split()
        assert line, "the child printed nothing: it failed to build its lab"
        namespaces, sleeper = line[:-1], int(line[-1])
        assert set(namespaces) <= list_namespaces()
        assert _running(sleeper)
        child.send_signal(signal.SIGTERM)
        child.wait(30)
        # The handler re-raises SIGTERM after cleaning up: the exit status still says "killed".
        assert child.returncode == -signal.SIGTERM
        left = set(namespaces) & list_namespaces()
        assert not left, f"namespaces left behind after SIGTERM: {sorted(left)}"
        wait(lambda: not _running(sleeper), 10, "the lab's process to die")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        for ns in namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
