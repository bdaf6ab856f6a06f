"""The worker's look for what a job left running (``_contain.child_look``): the compiled
``waitpid`` (``handoffd._core.reap``), the ctypes one and their pure-Python twin (``os.waitpid``)
answer alike for each state a worker can be in after a job: no child at all (-1), a live child
(0), an exited child not yet reaped (its pid, reaped).

Each case runs in a fresh interpreter: ``waitpid(-1)`` in the test process would reap other
tests' children."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)

_SCRIPT = r"""
import os, signal, sys, time
from handoffd.worker import _contain

if sys.argv[1] == "compiled":
    from handoffd._core import reap

    look = _contain.child_look()
    assert look is reap.child_look, "the worker does not take the compiled look"
elif sys.argv[1] == "ctypes":
    look = _contain.child_look_ctypes()
    assert look is not _contain._child_look_os, "no ctypes look on Linux"
else:
    look = _contain._child_look_os

def zombie(pid):
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"

seen = [look(), look()]  # nothing ever started
sleeper = os.fork()
if sleeper == 0:
    time.sleep(120)
    os._exit(0)
seen += [look(), look()]  # one child, alive
quick = os.fork()
if quick == 0:
    os._exit(0)
while not zombie(quick):  # (bounded by the test's timeout)
    time.sleep(0.001)
got = look()  # the exited one, reaped here
seen += [got == quick, look()]  # the sleeper still lives
os.kill(sleeper, signal.SIGKILL)
while not zombie(sleeper):
    time.sleep(0.001)
seen += [look() == sleeper, look()]  # the last one reaped: none left
print(seen)
"""


def _run(which: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, which], capture_output=True, text=True, timeout=50
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the ctypes look is Linux's")
def test_the_ctypes_look_answers_as_os_waitpid_does_in_every_state() -> None:
    expected = "[-1, -1, 0, 0, True, 0, True, -1]"
    assert _run("os") == expected
    assert _run("ctypes") == expected
    assert _run("compiled") == expected
