"""What ``handoffctl submit`` fetches and how a failure reads (issue 14, problem 8), on a real
daemon: by default only the DAG's sinks are fetched for the summary, ``--outputs a,b`` picks
others, ``--output FILE`` still writes every result; a failed task's traceback names the user's
files and lines (a dag.py shipped by value, a helper module shipped as a file) with their source."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

DAG = """
import handoffd
import helpers

def big(n):
    return b"x" * n

def size(blob):
    return len(blob)

def parse(text):
    value = int(text)
    return helpers.strict(value)

dag = handoffd.DAG()
dag.add_function(handoffd.Function(id="blob", code=big, extra_args=[5_000_000]))
dag.add_function(handoffd.Function(id="n", code=size, args=["blob"]))
dag.add_function(handoffd.Function(id="p", code=parse, extra_args=["3"]))
"""
HELPERS = """
def strict(x):
    if x < 0:
        raise ValueError(f"negative input {x}")
    return x
"""


def _ctl(address: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    repo = str(Path(__file__).resolve().parents[2])
    return subprocess.run(
        [sys.executable, "-m", "handoffd.cli.ctl", "--address", address, *args],
        cwd=cwd,
        env=dict(os.environ, PYTHONPATH=repo),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_submit_fetches_the_sinks_unless_told_and_tracebacks_name_user_files(
    daemons: Any, tmp_path: Path
) -> None:
    node = daemons.start(cpu=2, memory=1000)
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "dag.py").write_text(textwrap.dedent(DAG))
    (proj / "helpers.py").write_text(textwrap.dedent(HELPERS))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dag_py = str(proj / "dag.py")

    out = _ctl(node.address, "submit", dag_py, "--json", "-q", cwd=elsewhere)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["results"] == {"n": 5_000_000, "p": 3}  # the sinks only

    out = _ctl(node.address, "submit", dag_py, "--json", "-q", "--outputs", "p", cwd=elsewhere)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["results"] == {"p": 3}

    target = tmp_path / "all.pkl"
    out = _ctl(node.address, "submit", dag_py, "-q", "--output", str(target), cwd=elsewhere)
    assert out.returncode == 0, out.stderr
    written = pickle.loads(target.read_bytes())
    assert set(written) == {"blob", "n", "p"} and len(written["blob"]) == 5_000_000

    bad = _ctl(node.address, "submit", dag_py, "--outputs", "nope", cwd=elsewhere)
    assert bad.returncode == 2 and "nope" in bad.stderr

    (proj / "dag.py").write_text(textwrap.dedent(DAG).replace('["3"]', '["-4"]'))
    out = _ctl(node.address, "submit", dag_py, "--max-retries", "0", "-q", cwd=elsewhere)
    assert out.returncode == 1
    text = out.stdout + out.stderr
    assert f'File "{proj / "dag.py"}", line 13, in parse' in text
    assert "return helpers.strict(value)" in text
    assert f'File "{proj / "helpers.py"}", line 4, in strict' in text
    assert 'raise ValueError(f"negative input {x}")' in text
    assert "<dynamic-code>" not in text
