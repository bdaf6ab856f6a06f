"""DaemonCluster's own temporary workdir goes when its process exits; a passed one stays."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import os, sys
from handoffd.testing import DaemonCluster
own = DaemonCluster()
with open(os.path.join(own.workdir, "d0.log"), "w") as f:
    f.write("a daemon's log")
given = DaemonCluster(workdir=sys.argv[1])
own.close()
assert os.path.exists(os.path.join(own.workdir, "d0.log"))  # still readable after close()
print(own.workdir)
"""


def _run(tmp_path: Path, keep: bool) -> tuple[str, Path]:
    given = tmp_path / "given"
    given.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "HANDOFFD_KEEP_WORKDIR"}
    if keep:
        env["HANDOFFD_KEEP_WORKDIR"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(given)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1], given


@pytest.mark.timeout(90)
def test_own_workdir_removed_at_exit_and_a_given_one_kept(tmp_path: Path) -> None:
    workdir, given = _run(tmp_path, keep=False)
    assert os.path.basename(workdir).startswith("handoffd-test-")
    assert not os.path.exists(workdir)
    assert given.is_dir()


@pytest.mark.timeout(90)
def test_keep_workdir_keeps_it(tmp_path: Path) -> None:
    workdir, _ = _run(tmp_path, keep=True)
    try:
        assert (Path(workdir) / "d0.log").read_text() == "a daemon's log"
    finally:
        subprocess.run(["rm", "-rf", workdir], check=False, timeout=30)
