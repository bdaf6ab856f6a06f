"""The user's own code travels with a run (issue 14, problem 1), on real daemons.

A project in a temp dir (a dag.py, a sibling helpers.py, a package) is submitted from another
directory with ``handoffctl submit``, and from Python scripts run in their own processes: modules
imported from under the caller's directory ship automatically, ``py_modules=``/``working_dir=``
ship the others, a module shipped with nothing says which option ships it, the packages leave the
workers' path when another run's task runs there, and an oversized directory is refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

HELPERS = """
def clean(x):
    return x * 2
"""
PKG_INIT = "from mypkg.stats import total\n"
PKG_STATS = """
def total(*xs):
    return sum(xs) + 1000
"""
DAG = """
import handoffd
import helpers
from mypkg import total

dag = handoffd.DAG()
for i in range(4):
    dag.add_function(handoffd.Function(id=f"c{i}", code=helpers.clean, extra_args=[i]))
dag.add_function(handoffd.Function(id="sum", code=total, args=[f"c{i}" for i in range(4)]))
"""


def _project(root: Path) -> Path:
    proj = root / "proj"
    (proj / "mypkg").mkdir(parents=True)
    (proj / "helpers.py").write_text(HELPERS)
    (proj / "mypkg" / "__init__.py").write_text(PKG_INIT)
    (proj / "mypkg" / "stats.py").write_text(PKG_STATS)
    (proj / "dag.py").write_text(DAG)
    (root / "elsewhere").mkdir()
    return proj


def _env() -> dict[str, str]:
    # The scripts import handoffd from this checkout, nothing else from it.
    repo = str(Path(__file__).resolve().parents[2])
    return dict(os.environ, PYTHONPATH=repo)


def _run(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout
    )


def _script(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body))
    return path


@pytest.fixture
def trio(daemons: Any) -> list[Any]:
    """Three daemons of one cpu each (tasks spread over them: two fetch the code from the owner)."""
    import handoffd
    from handoffd.testing import wait_for

    first = daemons.start(cpu=1, memory=1000)
    rest = [daemons.start(cpu=1, memory=1000, seeds=[first.address]) for _ in range(2)]
    with handoffd.connect(first.address) as client:
        wait_for(
            lambda: [n.status for n in client.nodes().values()] == ["ALIVE"] * 3,
            timeout=30,
            what="three daemons joined",
        )
    return [first, *rest]


def test_handoffctl_submit_ships_the_dag_files_sibling_module_and_package(
    trio: list[Any], tmp_path: Path
) -> None:
    proj = _project(tmp_path)
    out = _run(
        [
            sys.executable,
            "-m",
            "handoffd.cli.ctl",
            "--address",
            trio[0].address,
            "submit",
            str(proj / "dag.py"),
            "--policy",
            "spread",
            "--json",
            "--outputs",
            "c0,c1,c2,c3,sum",
        ],
        cwd=tmp_path / "elsewhere",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert doc["results"] == {"c0": 0, "c1": 2, "c2": 4, "c3": 6, "sum": 1012}
    # Spread over the three nodes: the two that do not own the run fetched the code.
    assert len(set(doc["placement"].values())) == 3

    # --working-dir and --py-module ship what the dag.py does not import itself.
    other = tmp_path / "other"
    (other / "extra").mkdir(parents=True)
    (other / "lazymod.py").write_text("VALUE = 'wd'\n")
    (other / "extra" / "__init__.py").write_text("VALUE = 'pkg'\n")
    (tmp_path / "elsewhere" / "dag2.py").write_text(
        "import handoffd\n"
        "def both():\n"
        "    import extra, lazymod\n"
        "    return lazymod.VALUE + extra.VALUE\n"
        "dag = handoffd.DAG().add_function(handoffd.Function(id='b', code=both))\n"
    )
    ctl = [sys.executable, "-m", "handoffd.cli.ctl", "--address", trio[1].address, "submit"]
    out = _run(
        [*ctl, "dag2.py", "--working-dir", str(other), "--py-module", str(other / "extra")],
        cwd=tmp_path / "elsewhere",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "'wdpkg'" in out.stdout


API = """
import json, sys
import handoffd

address, proj, other = sys.argv[1], sys.argv[2], sys.argv[3]
out = {}
sys.path.insert(0, proj)  # importable here, but not under this directory: not shipped
import helpers

def probe():
    import os, sys
    root = os.environ.get("HANDOFFD_CODE_DIR", "?")
    return ["helpers" in sys.modules, [p for p in sys.path if p.startswith(root)]]

def lazy():
    import lazymod  # imported only in the worker: only working_dir can ship it
    return lazymod.VALUE

one = handoffd.DAG().add_function(handoffd.Function(id="c", code=helpers.clean, extra_args=[5]))
with handoffd.connect(address) as client:
    try:
        client.execute(one, max_retries=0)
        out["unshipped"] = "ran"
    except handoffd.TaskFailed as exc:
        out["unshipped"] = str(exc)
    out["py_modules_path"] = client.execute(one, py_modules=[proj + "/helpers.py"])["c"]
    out["py_modules_module"] = client.execute(one, py_modules=[helpers])["c"]
    lazy_dag = handoffd.DAG().add_function(handoffd.Function(id="l", code=lazy))
    out["working_dir"] = client.execute(lazy_dag, working_dir=other)["l"]
    probe_dag = handoffd.DAG().add_function(handoffd.Function(id="p", code=probe))
    out["after"] = client.execute(probe_dag)["p"]
    try:
        client.execute(one, working_dir=proj)
        out["too_large"] = "accepted"
    except handoffd.ValidationError as exc:
        out["too_large"] = [exc.kind, str(exc)]
print(json.dumps(out))
"""


def test_py_modules_and_working_dir_ship_what_is_not_under_the_callers_directory(
    daemons: Any, tmp_path: Path
) -> None:
    # One node with one worker: every run's task runs in the same worker process, so the probe
    # run sees whatever the runs before it left on its path.
    node = daemons.start(cpu=1, memory=1000)
    proj = _project(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "lazymod.py").write_text("VALUE = 'from working_dir'\n")
    script = _script(tmp_path / "elsewhere" / "api.py", API)
    out = _run(
        [sys.executable, str(script), node.address, str(proj), str(other)],
        cwd=tmp_path / "elsewhere",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout.splitlines()[-1])
    assert "No module named 'helpers'" in doc["unshipped"]
    assert "py_modules=['helpers']" in doc["unshipped"]
    assert "--working-dir" in doc["unshipped"]
    assert doc["py_modules_path"] == 10
    assert doc["py_modules_module"] == 10
    assert doc["working_dir"] == "from working_dir"
    # The run after them shipped nothing: none of their code is on its worker's path.
    assert doc["after"] == [False, []]
    assert doc["too_large"] == "accepted"


def test_modules_under_the_callers_directory_ship_automatically_and_size_is_limited(
    daemons: Any, tmp_path: Path
) -> None:
    node = daemons.start(cpu=1, memory=1000)
    proj = _project(tmp_path)
    (proj / "data.bin").write_bytes(os.urandom(200_000))
    script = _script(
        proj / "main.py",
        """
        import json, sys
        import handoffd
        import helpers
        from mypkg import total

        if __name__ == "__main__":
            dag = handoffd.DAG()
            dag.add_function(handoffd.Function(id="a", code=helpers.clean, extra_args=[21]))
            dag.add_function(handoffd.Function(id="t", code=total, args=["a"]))
            out = {}
            with handoffd.connect(sys.argv[1]) as client:
                out["auto"] = client.execute(dag)
                try:
                    client.execute(dag, working_dir=".")
                    out["limit"] = "accepted"
                except handoffd.ValidationError as exc:
                    out["limit"] = [exc.kind, str(exc)]
            print(json.dumps(out))
        """,
    )
    env_limit = {"HANDOFFD_MAX_PACKAGE_BYTES": "100000"}
    out = subprocess.run(
        [sys.executable, str(script), node.address],
        cwd=proj,
        env={**_env(), **env_limit},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout.splitlines()[-1])
    assert doc["auto"] == {"a": 42, "t": 1042}
    kind, message = doc["limit"]
    assert kind == "package_too_large"
    assert "HANDOFFD_MAX_PACKAGE_BYTES" in message and "working_dir" in message
